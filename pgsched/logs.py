"""pgsched's logging: structlog events, which go one of two ways.

- pgsched owns the process (the CLI, a worker process for `pgsched runner`): `configure_logging`
  sets structlog up to print key-value lines to stderr, JSON when stderr is not a terminal.
- pgsched is a guest (`background_runner`, `create_app`, the API; anything that never called
  `configure_logging`): each event becomes a record of the standard library's `logging`, on a
  logger under `pgsched` (`pgsched.runner`, `pgsched.jobs`, ...), so the host's handlers,
  levels and formats apply. Nothing is installed on the host's loggers and structlog's global
  configuration is not touched: a host that uses structlog itself keeps its own.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Mapping
from typing import Any, TextIO

# structlog is imported with the first logger, not with this module: a CLI command that never
# logs (`jobs list`) starts ~10 ms sooner. `configure_logging` before that only records the wish.
_wanted: tuple[str, bool | None] | None = None  # a lazy configure_logging's arguments
_owned = False  # configure_logging was called: pgsched prints its own lines

JOBS = "pgsched.jobs"  # what a run logs, its job's own lines (ctx.log) and pgsched's about it
RUNNER = "pgsched.runner"  # a runner's control plane


def configure_logging(level: str = "info", json: bool | None = None, *, lazy: bool = False) -> None:
    """Print pgsched's lines (and those of jobs that use structlog themselves) to stderr: for a
    process pgsched owns, as this configures structlog globally; `lazy` (the CLI): only when the
    first logger is made, or user code is loaded."""
    global _wanted, _owned
    _owned = True
    if not lazy or _base.cache_info().currsize:
        _apply(level, json)
    else:
        _wanted = (level, json)


def owned() -> bool:
    """Whether pgsched prints its own lines here (else they are the host's `logging` records)."""
    return _owned


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


@functools.cache
def _guest(name: str) -> Any:
    """A structlog logger of pgsched's own over the stdlib logger `name` (structlog.stdlib
    integration, without `structlog.configure`), resolved once per name."""
    import structlog

    return structlog.wrap_logger(
        logging.getLogger(name),
        processors=_to_stdlib(),
        wrapper_class=structlog.stdlib.BoundLogger,
        context_class=dict,
        cache_logger_on_first_use=True,
    ).bind()


def _to_stdlib() -> list[Any]:
    """The processors that make an event a stdlib record."""
    import structlog

    return [
        structlog.stdlib.filter_by_level,  # the host's levels, before any work
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.PositionalArgumentsFormatter(),
        _to_record,
    ]


def get_logger(name: str = "pgsched", /, **bound: Any) -> Any:
    """A logger with `bound` key/values; `name` is its stdlib logger's when pgsched is a guest."""
    if _owned:
        return _base().bind(**bound)
    return _guest(name).bind(**bound)


def _to_record(logger: logging.Logger, method: str, event_dict: Any) -> dict[str, Any]:
    """The stdlib call's keyword arguments (structlog's `render_to_log_kwargs`), with the
    key/values also in the message: a host's plain `%(message)s` shows which job failed, and a
    structured handler reads them off the record (`record.event`, `record.job`, ...)."""
    import structlog

    kwargs = dict(structlog.stdlib.render_to_log_kwargs(logger, method, event_dict))
    event, fields = str(kwargs["msg"]), kwargs["extra"]
    kwargs["msg"] = _message(event, fields)
    kwargs["extra"] = {"event": event, **_record_fields(fields)}
    if type(logger).findCaller is logging.Logger.findCaller:  # else it skips structlog itself
        kwargs["stacklevel"] = _stacklevel() + kwargs.get("stacklevel", 1) - 1
    return kwargs


def _message(event: str, fields: Mapping[str, Any]) -> str:
    """`run raised job=nightly run_id=7 error="boom: it broke"`: the event, then logfmt."""
    if not fields:
        return event
    import structlog

    try:
        pairs = structlog.processors.LogfmtRenderer(bool_as_flag=False)(None, "", dict(fields))
    except ValueError:  # a key logfmt cannot spell (it has a space)
        pairs = " ".join(f"{key!r}={value!r}" for key, value in fields.items())
    return f"{event} {pairs}"


def _record_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """`fields` as `extra` for a LogRecord: a key that is one of the record's own attributes
    (`name`, `thread`, `process`, ...) gets a trailing underscore, as `logging` refuses it."""
    taken = _record_attributes()
    return {f"{key}_" if key in taken else key: value for key, value in fields.items()}


def _record_attributes() -> set[str]:
    record = logging.getLogRecordFactory()("", logging.INFO, "", 0, "", (), None)
    return {*vars(record), "message", "asctime"}


def _stacklevel() -> int:
    """The stdlib `stacklevel` that names the line that logged (the record's pathname, lineno,
    funcName) instead of structlog's frames, which call the stdlib logger."""
    # 0 here, 1 _to_record, 2 structlog running the processors, 3 the structlog frame that
    # calls the stdlib logger: stacklevel=1 for that one, one more for each structlog frame up.
    frame = sys._getframe(3)
    level = 1
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith("structlog"):
        frame = frame.f_back
        level += 1
    return level


class LazyLogger:
    """Bound on first use: most runs never log, and binding a structlog logger costs more than
    the rest of a no-op run's bookkeeping."""

    __slots__ = ("_bound", "_logger", "_name")

    def __init__(self, name: str = "pgsched", /, **bound: Any) -> None:
        self._name = name
        self._bound = bound
        self._logger: Any = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # an unset slot, or copy/pickle probing before __init__
            raise AttributeError(name)
        if self._logger is None:
            self._logger = get_logger(self._name, **self._bound)
        return getattr(self._logger, name)


# --- a worker process's records, relayed to its runner's process -----------------------------
# A guest runner's worker processes (isolation="process") are pgsched's own, but their lines
# belong in the host's logging: each record goes to the worker's stderr as one line, RELAY and
# its attributes in JSON (the logging cookbook's way across processes, `makeLogRecord` at the
# other end), and the runner hands it to the host's logger of the same name.

RELAY = "pgsched-record: "


def host_levels() -> dict[str, int]:
    """The levels set on this process's loggers, by name ("" the root): a worker applies them,
    so that it sends only records the host keeps (as they stood when it started)."""
    loggers = dict(logging.Logger.manager.loggerDict)  # a copy: other threads add loggers
    levels = {"": logging.getLogger().level}
    for name, logger in loggers.items():
        if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET:
            levels[name] = logger.level
    return levels


class _RelayHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes each record as a RELAY line: its attributes, the message and any traceback as
    text (the other end has no exception object)."""

    def format(self, record: logging.LogRecord) -> str:
        attributes = dict(vars(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        attributes.update(msg=record.getMessage(), args=None, exc_info=None)
        attributes["exc_text"] = record.exc_text
        attributes.pop("message", None)
        return RELAY + json.dumps(attributes, default=repr)


def relay_logging(levels: Mapping[str, int], stream: TextIO | None = None) -> None:
    """In a worker process of a guest runner (a process of pgsched's own, so it may): all
    records, pgsched's and the job's own, go to the runner's process, at the host's levels; a
    job's structlog events become records too (the host's structlog set-up is not here)."""
    import structlog

    logging.getLogger().addHandler(_RelayHandler(stream or sys.stderr))
    for name, level in levels.items():
        logging.getLogger(name or None).setLevel(level)
    structlog.configure(
        processors=_to_stdlib(),
        logger_factory=structlog.stdlib.LoggerFactory(),  # named after the job's module
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def replay(line: str) -> str | None:
    """A RELAY line's record handed to this process's logger of its name; returns its text,
    or None when the line is not a record."""
    try:
        attributes = json.loads(line[len(RELAY) :])
    except ValueError:
        return None
    if not (
        isinstance(attributes, dict)
        and isinstance(attributes.get("name"), str)
        and isinstance(attributes.get("levelno"), int)
        and isinstance(attributes.get("msg"), str)
    ):
        return None
    record = logging.makeLogRecord(attributes)
    text = record.getMessage()
    logger = logging.getLogger(record.name)
    if logger.isEnabledFor(record.levelno):
        logger.handle(record)
    return text
