"""The settings of jobs and runners, and the one place they are validated: code, profile,
CLI and `background_runner` all go through the rules declared on the dataclass fields."""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from pgsched.cron import check_schedule, get_zone
from pgsched.errors import ConfigError, CronError

__all__ = [
    "DURATION_SETTINGS",
    "SETTING_NAMES",
    "SYNCED_SETTINGS",
    "Isolation",
    "JobSettings",
    "Misfire",
    "Overlap",
    "RunnerSettings",
    "check_setting",
    "merge_runner_settings",
    "merge_settings",
    "parse_duration",
]

Overlap = Literal["skip", "queue", "allow"]
Misfire = Literal["skip", "once", "all"]
Isolation = Literal["thread", "process"]  # process: a killable worker (pgsched.isolation)
Kind = Literal["schedule", "timezone", "bool", "duration", "count", "choice", "tags", "text"]


@dataclass(frozen=True)
class Rule:
    """What a setting accepts, how it is shown, and whether sync writes it to pgsched.jobs:
    every entry point (code, profile, CLI, `background_runner`) validates through this, and
    the lists of synced, shown and duration settings are read from it."""

    kind: Kind
    minimum: float = 0  # durations and counts
    strict: bool = False  # durations: must be > minimum
    optional: bool = False  # None is a value (off, unset)
    maximum: float | None = None  # counts
    choices: tuple[str, ...] = ()
    synced: bool = True  # JobSettings: a column of pgsched.jobs, shown by `jobs show`

    def expected(self) -> str:
        """The words for "expected ..." in an error."""
        if self.kind == "duration":
            bound = f"{'>' if self.strict else '>='} {self.minimum:g}"
            words = f"{_DURATION_HELP}, {bound}"
        elif self.kind == "count":
            words = f"a whole number >= {self.minimum:g}"
            if self.maximum is not None:
                words += f" and <= {self.maximum:g}"
        elif self.kind == "choice":
            words = "one of " + ", ".join(repr(c) for c in self.choices)
        else:
            words = _EXPECTED[self.kind]
        return f"{words}, or null" if self.optional else words


def _setting(default: object, rule: Rule) -> Any:
    return field(default=default, metadata={"rule": rule})


_OVERLAP = Rule("choice", choices=get_args(Overlap))
_MISFIRE = Rule("choice", choices=get_args(Misfire))
_ISOLATION = Rule("choice", choices=get_args(Isolation))


@dataclass(frozen=True)
class JobSettings:
    """Everything about a job that the profile may override; the defaults are the safe choice."""

    schedule: str | None = _setting(None, Rule("schedule", optional=True))  # None: manual only
    enabled: bool = _setting(True, Rule("bool"))
    # None = the profile's scheduler.timezone, else UTC
    timezone: str | None = _setting(None, Rule("timezone", optional=True))
    timeout: float | None = _setting(None, Rule("duration", strict=True, optional=True))
    max_attempts: int = _setting(1, Rule("count", minimum=1))
    retry_backoff: float = _setting(5.0, Rule("duration", strict=True))  # exponential base
    overlap: Overlap = field(default="skip", metadata={"rule": _OVERLAP})
    misfire: Misfire = field(default="once", metadata={"rule": _MISFIRE})
    misfire_grace: float = _setting(60.0, Rule("duration"))  # late by more: missed
    misfire_cap: int = _setting(100, Rule("count", minimum=1))  # missed ticks recorded/run
    tags: tuple[str, ...] = _setting((), Rule("tags"))
    isolation: Isolation = field(default="thread", metadata={"rule": _ISOLATION})


def rules(settings: type[Any]) -> dict[str, Rule]:
    """Each setting of a settings dataclass with its rule, in declaration order."""
    return {f.name: f.metadata["rule"] for f in dataclasses.fields(settings)}


JOB_RULES: dict[str, Rule] = rules(JobSettings)
SETTING_NAMES: frozenset[str] = frozenset(JOB_RULES)
# What sync writes to pgsched.jobs and `jobs show`/the dashboard list, in order.
SYNCED_SETTINGS: tuple[str, ...] = tuple(n for n, r in JOB_RULES.items() if r.synced)
DURATION_SETTINGS: frozenset[str] = frozenset(
    n for n, r in JOB_RULES.items() if r.kind == "duration"
)

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_DURATION = re.compile(r"(?:\s*\d+(?:\.\d+)?\s*(?:ms|s|m|h|d))+\s*")
_DURATION_HELP = 'seconds as a number, or a duration like "30s", "5m", "2h", "1h30m", "500ms"'
_EXPECTED = {
    "schedule": "a cron string such as '0 */15 * * * *'",
    "timezone": "an IANA timezone name such as 'Europe/Berlin'",
    "bool": "true or false",
    "tags": "a list of non-empty strings, e.g. ['nightly', 'billing']",
    "text": "non-empty text",
}


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


def check_value(name: str, rule: Rule, value: object, *, where: str, timezone: str = "UTC") -> Any:
    """`value` validated and normalised by `rule` (durations to seconds, tags to a tuple);
    a ConfigError names `where`, the setting, the value and what it accepts."""
    if value is None and rule.optional:
        return None
    kind = rule.kind
    if kind == "duration":
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise _bad(where, name, value, rule.expected()) from None
        if seconds < rule.minimum or (rule.strict and seconds == rule.minimum):
            raise _bad(where, name, value, rule.expected())
        return seconds
    if kind == "count":
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < rule.minimum
            or (rule.maximum is not None and value > rule.maximum)
        ):
            raise _bad(where, name, value, rule.expected())
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise _bad(where, name, value, rule.expected())
        return value
    if kind == "choice" or kind == "text":
        if (
            not isinstance(value, str)
            or not value
            or (kind == "choice" and value not in rule.choices)
        ):
            raise _bad(where, name, value, rule.expected())
        return value
    if kind == "tags":
        if not isinstance(value, list | tuple) or not all(isinstance(t, str) and t for t in value):
            raise _bad(where, name, value, rule.expected())
        return tuple(dict.fromkeys(value))
    if not isinstance(value, str):
        raise _bad(where, name, value, rule.expected())
    try:
        if kind == "schedule":
            check_schedule(value, timezone)
        else:
            get_zone(value)
    except CronError as exc:
        raise CronError(f"{where}: setting {name!r}: {exc}") from None
    return value


def suggest(name: str, known: frozenset[str] | set[str]) -> str:
    """A "did you mean" hint plus the full list, for unknown keys everywhere."""
    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{hint}Known: {', '.join(sorted(known))}"


def check_setting(name: str, value: object, *, where: str, timezone: str | None = None) -> object:
    """Validate and normalise one job setting, naming `where` in any error.

    `timezone` is the zone the schedule will run in, when the caller knows it.
    """
    if name not in JOB_RULES:
        raise ConfigError(f"{where}: unknown setting {name!r}; {suggest(name, SETTING_NAMES)}")
    return check_value(name, JOB_RULES[name], value, where=where, timezone=timezone or "UTC")


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


def _positive(default: float) -> Any:
    return _setting(default, Rule("duration", strict=True))


@dataclass(frozen=True)
class RunnerSettings:
    """How a runner paces itself: the profile's `runner:` section, the CLI's options and
    `background_runner`'s keywords all fill this one object, so there is one set of defaults
    and one validation (`__post_init__`: no entry point can start a runner that the claim
    loop would trip over)."""

    concurrency: int = _setting(10, Rule("count", minimum=1))  # runs at once in this process
    poll_interval: float = _positive(5.0)  # seconds; the safety net when no NOTIFY arrives
    heartbeat_interval: float = _positive(2.0)
    lease_timeout: float = _positive(15.0)  # a runner silent this long is dead
    grace_period: float = _positive(30.0)  # how long shutdown waits for running jobs
    listen: bool = _setting(True, Rule("bool"))  # False = poll only (PgBouncer transactions)
    # runs claimed ahead of free slots; None = concurrency
    prefetch: int | None = _setting(None, Rule("count", optional=True))
    lookahead: float = _setting(0.5, Rule("duration"))  # claim ticks this early, start on time
    prefetch_hold: float = _positive(1.0)  # a prefetched run not started by then goes back
    block_warning: float = _positive(1.0)  # an async job blocking its loop this long is named
    flush_interval: float = _positive(0.005)  # results wait this long to be written together
    # results kept while the database is away; then no claims
    max_held_results: int = _setting(100_000, Rule("count", minimum=1))
    # isolation="process": runs per worker, None = any
    max_tasks_per_child: int | None = _setting(None, Rule("count", minimum=1, optional=True))
    # serve /metrics, /healthz, /readyz on this port; None = don't
    metrics_port: int | None = _setting(None, Rule("count", maximum=65535, optional=True))
    metrics_bind: str = _setting("127.0.0.1", Rule("text"))  # the metrics server's address
    job_pool_timeout: float = _positive(10.0)  # seconds a job waits for ctx.pool/apool

    def __post_init__(self) -> None:
        _check_runner(self, {}, where="runner settings")

    @property
    def prefetch_runs(self) -> int:
        return self.concurrency if self.prefetch is None else self.prefetch


RUNNER_RULES: dict[str, Rule] = rules(RunnerSettings)


def _check_runner(settings: RunnerSettings, origins: Mapping[str, str], *, where: str) -> None:
    """Every field valid (normalised in place: "5s" becomes 5.0), and the lease longer than
    the heartbeat; `origins` says where a value came from (a profile line), else `where`."""
    for name, rule in RUNNER_RULES.items():
        place = origins.get(name, where)
        value = check_value(name, rule, getattr(settings, name), where=place)
        object.__setattr__(settings, name, value)  # frozen: normalised once, at creation
    if settings.lease_timeout <= settings.heartbeat_interval:
        place = origins.get("lease_timeout") or origins.get("heartbeat_interval") or where
        raise ConfigError(
            f"{place}: setting 'lease_timeout': lease_timeout ({settings.lease_timeout:g}s) "
            f"must be longer than heartbeat_interval ({settings.heartbeat_interval:g}s); "
            "otherwise live runners would be declared dead: use several heartbeats"
        )


def merge_runner_settings(
    base: RunnerSettings,
    overrides: Mapping[str, object],
    *,
    where: str,
    origins: Mapping[str, str] | None = None,
) -> RunnerSettings:
    """`base` with `overrides` applied, validated as a whole; errors name `where` (or the
    override's own origin) and the setting."""
    if unknown := sorted(set(overrides) - set(RUNNER_RULES)):
        hint = suggest(unknown[0], set(RUNNER_RULES))
        raise ConfigError(f"{where}: unknown runner setting {unknown[0]!r}; {hint}")
    merged = dict(dataclasses.asdict(base), **overrides)
    settings = object.__new__(RunnerSettings)
    for name, value in merged.items():
        object.__setattr__(settings, name, value)
    _check_runner(settings, origins or {}, where=where)
    return settings
