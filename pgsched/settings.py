"""Per-job settings, validated the same way whether they come from code or from the profile."""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from pgsched.cron import check_schedule, get_zone
from pgsched.errors import ConfigError, CronError

__all__ = [
    "SETTING_NAMES",
    "Isolation",
    "JobSettings",
    "Misfire",
    "Overlap",
    "check_setting",
    "merge_settings",
    "parse_duration",
]

Overlap = Literal["skip", "queue", "allow"]
Misfire = Literal["skip", "once", "all"]
Isolation = Literal["thread", "process"]  # process: a killable worker (pgsched.isolation)


@dataclass(frozen=True)
class JobSettings:
    """Everything about a job that the profile may override; the defaults are the safe choice."""

    schedule: str | None = None  # None = manual runs only
    enabled: bool = True
    timezone: str | None = None  # None = the profile's scheduler.timezone, else UTC
    timeout: float | None = None  # seconds; None = no timeout
    max_attempts: int = 1
    retry_backoff: float = 5.0  # seconds, base of the exponential backoff
    overlap: Overlap = "skip"
    misfire: Misfire = "once"
    misfire_grace: float = 60.0  # seconds a tick may be late before it counts as missed
    misfire_cap: int = 100  # at most this many missed ticks are recorded/run
    tags: tuple[str, ...] = ()
    isolation: Isolation = "thread"


SETTING_NAMES: frozenset[str] = frozenset(f.name for f in dataclasses.fields(JobSettings))

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_DURATION = re.compile(r"(?:\s*\d+(?:\.\d+)?\s*(?:ms|s|m|h|d))+\s*")
_DURATION_HELP = 'seconds as a number, or a duration like "30s", "5m", "2h", "1h30m", "500ms"'


def parse_duration(value: object) -> float:
    """Seconds from a number or a "1h30m"-style string; ValueError says what was expected."""
    if isinstance(value, bool):
        raise ValueError(f"expected {_DURATION_HELP}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        try:
            seconds = float(text)
        except ValueError:
            if not _DURATION.fullmatch(text):
                raise ValueError(f"expected {_DURATION_HELP}") from None
            seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION_PART.findall(text))
    else:
        raise ValueError(f"expected {_DURATION_HELP}")
    if not math.isfinite(seconds):
        raise ValueError(f"expected a finite duration: {_DURATION_HELP}")
    return seconds


def _bad(where: str, name: str, value: object, expected: str) -> ConfigError:
    return ConfigError(f"{where}: setting {name!r}: invalid value {value!r}, expected {expected}")


def _duration(name: str, value: object, where: str, *, minimum: float, strict: bool) -> float:
    bound = f"{'>' if strict else '>='} {minimum:g}"
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise _bad(where, name, value, f"{str(exc).removeprefix('expected ')}, {bound}") from None
    if seconds < minimum or (strict and seconds == minimum):
        raise _bad(where, name, value, f"a duration {bound} seconds")
    return seconds


def _int(name: str, value: object, where: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _bad(where, name, value, f"a whole number >= {minimum}")
    return value


def _choice(name: str, value: object, where: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise _bad(where, name, value, "one of " + ", ".join(repr(c) for c in choices))
    return value


def suggest(name: str, known: frozenset[str] | set[str]) -> str:
    """A "did you mean" hint plus the full list, for unknown keys everywhere."""
    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{hint}Known: {', '.join(sorted(known))}"


def check_setting(name: str, value: object, *, where: str, timezone: str | None = None) -> object:
    """Validate and normalise one setting value, naming `where` in any error.

    `timezone` is the zone the schedule will run in, when the caller knows it.
    """
    if name not in SETTING_NAMES:
        raise ConfigError(f"{where}: unknown setting {name!r}; {suggest(name, SETTING_NAMES)}")
    if name == "schedule":
        if value is None:
            return None
        if not isinstance(value, str):
            raise _bad(where, name, value, "a cron string such as '0 */15 * * * *', or null")
        try:
            check_schedule(value, timezone or "UTC")
        except CronError as exc:
            raise CronError(f"{where}: setting 'schedule': {exc}") from None
        return value
    if name == "enabled":
        if not isinstance(value, bool):
            raise _bad(where, name, value, "true or false")
        return value
    if name == "timezone":
        if value is None:
            return None
        if not isinstance(value, str):
            raise _bad(where, name, value, "an IANA timezone name such as 'Europe/Berlin'")
        try:
            get_zone(value)
        except CronError as exc:
            raise CronError(f"{where}: setting 'timezone': {exc}") from None
        return value
    if name == "timeout":
        if value is None:
            return None
        return _duration(name, value, where, minimum=0.0, strict=True)
    if name == "retry_backoff":
        return _duration(name, value, where, minimum=0.0, strict=True)
    if name == "misfire_grace":
        return _duration(name, value, where, minimum=0.0, strict=False)
    if name == "max_attempts":
        return _int(name, value, where, minimum=1)
    if name == "misfire_cap":
        return _int(name, value, where, minimum=1)
    if name == "overlap":
        return _choice(name, value, where, get_args(Overlap))
    if name == "misfire":
        return _choice(name, value, where, get_args(Misfire))
    if name == "isolation":
        return _choice(name, value, where, get_args(Isolation))
    assert name == "tags"
    if not isinstance(value, list | tuple) or not all(isinstance(t, str) and t for t in value):
        raise _bad(where, name, value, "a list of non-empty strings, e.g. ['nightly', 'billing']")
    return tuple(dict.fromkeys(value))


def merge_settings(
    base: JobSettings, overrides: Mapping[str, object], *, where: str
) -> JobSettings:
    """Apply overrides on top of `base`; every value is validated before any is applied."""
    zone = overrides.get("timezone", base.timezone)
    timezone = zone if isinstance(zone, str) else None
    values = {
        name: check_setting(name, value, where=where, timezone=timezone)
        for name, value in overrides.items()
    }
    return dataclasses.replace(base, **values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class RunnerSettings:
    """How a runner paces itself: the profile's `runner:` section, the CLI's options and
    `background_runner`'s keywords all fill this one object, so there is one set of
    defaults."""

    concurrency: int = 10  # runs at once in this process
    poll_interval: float = 5.0  # seconds; the safety net when no NOTIFY arrives
    heartbeat_interval: float = 2.0
    lease_timeout: float = 15.0  # a runner silent this long is dead
    grace_period: float = 30.0  # how long shutdown waits for running jobs
    listen: bool = True  # False = poll only (PgBouncer transaction pooling)
    prefetch: int | None = None  # runs claimed ahead of free slots; None = concurrency
    lookahead: float = 0.5  # seconds: claim ticks this early, start them at their time
    prefetch_hold: float = 1.0  # a prefetched run not started by then goes back to pending
    block_warning: float = 1.0  # an async job blocking its event loop this long is named
    flush_interval: float = 0.005  # results wait this long to be written in one batch
    max_held_results: int = 100_000  # results kept while the database is away; then no claims
    max_tasks_per_child: int | None = None  # isolation="process": runs per worker, None = any
    metrics_port: int | None = None  # serve /metrics, /healthz, /readyz here; None = don't
    metrics_bind: str = "127.0.0.1"  # the address the metrics server listens on
    job_pool_timeout: float = 10.0  # seconds a job waits for a connection of ctx.pool/apool

    @property
    def prefetch_runs(self) -> int:
        return self.concurrency if self.prefetch is None else self.prefetch
