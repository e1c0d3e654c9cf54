"""structlog set-up: key-value events, JSON when stderr is not a terminal."""

from __future__ import annotations

import functools
import logging
import sys
from typing import Any

# structlog is imported with the first logger, not with this module: a CLI command that never
# logs (`jobs list`) starts ~10 ms sooner. `configure_logging` before that only records the wish.
_wanted: tuple[str, bool | None] | None = None  # a lazy configure_logging's arguments


def configure_logging(level: str = "info", json: bool | None = None, *, lazy: bool = False) -> None:
    """Set structlog up for pgsched (and for jobs that use structlog themselves); `lazy`
    (the CLI): only when the first logger is made, or user code is loaded."""
    global _wanted
    if not lazy or _base.cache_info().currsize:
        _apply(level, json)
    else:
        _wanted = (level, json)


def _apply(level: str, json: bool | None) -> None:
    import structlog

    if json is None:
        json = not sys.stderr.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info
            if json
            else structlog.processors.StackInfoRenderer(),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


@functools.cache
def _base() -> Any:
    """The pgsched logger, resolved once: binding per run stays cheap."""
    import structlog

    if _wanted is not None:
        _apply(*_wanted)
    return structlog.get_logger("pgsched")


def get_logger(**bound: Any) -> Any:
    return _base().bind(**bound)


class LazyLogger:
    """Bound on first use: most runs never log, and binding a structlog logger costs more than
    the rest of a no-op run's bookkeeping."""

    __slots__ = ("_bound", "_logger")

    def __init__(self, **bound: Any) -> None:
        self._bound = bound
        self._logger: Any = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # an unset slot, or copy/pickle probing before __init__
            raise AttributeError(name)
        if self._logger is None:
            self._logger = get_logger(**self._bound)
        return getattr(self._logger, name)
