"""Schedules as rows: one job, many schedules, each with its own params.

Pure definitions-layer code, no database: what a schedule row is (`Schedule`, with its
`next_fire_times` preview), validation that names the job, the key and the expression, and
`resolve`, which turns rows written by plain SQL into their first tick or the reason they
cannot fire. The SQL is in sql/queries.sql; the runner's validation duty is
pgsched.runner.validating, the application API pgsched.api.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from .cron import CronSchedule, parse_schedule
from .errors import CronError

ScheduleSource = Literal["code", "profile", "runtime"]
ScheduleState = Literal["enabled", "paused", "disabled", "validating", "error"]
IfExists = Literal["error", "replace", "keep"]
DEFAULT_KEY = "default"  # the code/profile schedule's key; sync owns that row


def schedule_state(row: Mapping[str, Any]) -> ScheduleState:
    """One word for a schedule row on its own (its job may still be paused or disabled):
    `error` when a runner found it cannot fire, `validating` while a row written by SQL waits
    for a runner to compute its first tick."""
    if row.get("error"):
        return "error"
    if not row.get("enabled"):
        return "disabled"
    if row.get("paused"):
        return "paused"
    return "enabled" if row.get("next_run_at") else "validating"


@dataclass(frozen=True)
class Schedule:
    """A row of pgsched.schedules."""

    job_name: str
    key: str
    cron: str
    timezone: str | None  # None: the job's timezone (`zone` is the one in effect)
    zone: str
    params: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True
    paused: bool = False
    source: ScheduleSource = "runtime"
    next_run_at: datetime | None = None
    error: str | None = None
    id: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def next_fire_times(self, n: int, after: datetime | None = None) -> list[datetime]:
        """The next `n` ticks after `after` (default: now), in UTC: a preview computed here,
        before anything fires. Raises CronError for a schedule that cannot fire."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        cron = check_schedule_row(self.job_name, self.key, self.cron, self.zone)
        moment = after or datetime.now(UTC)
        ticks: list[datetime] = []
        for _ in range(n):
            moment = cron.next_after(moment)
            ticks.append(moment)
        return ticks

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Schedule:
        return cls(
            job_name=row["job_name"],
            key=row["key"],
            cron=row["cron"],
            timezone=row["timezone"],
            zone=row["zone"],
            params=dict(row["params"] or {}),
            enabled=row["enabled"],
            paused=row["paused"],
            source=row["source"],
            next_run_at=row["next_run_at"],
            error=row["error"],
            id=row["id"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )


def check_schedule_row(job_name: str, key: str, cron: str, zone: str) -> CronSchedule:
    """The schedule, validated; CronError names the job, the key and the expression."""
    if not isinstance(key, str) or not key:
        raise CronError(f"job {job_name!r}: a schedule key must be a non-empty string")
    try:
        return parse_schedule(cron, zone)
    except CronError as exc:
        raise CronError(f"schedule {key!r} of job {job_name!r}: {exc}") from None


@dataclass(frozen=True)
class Resolved:
    """What validation found for one row: its first tick, or why it cannot fire."""

    id: int
    next_run_at: datetime | None
    error: str | None


# (expression, zone) -> (computed after, first tick after it) or the reason it is invalid. A
# tick computed after `t0` is the first after any moment in [t0, tick): a million rows over
# ten thousand expressions cost ten thousand computations, not a million.
_known: dict[tuple[str, str], tuple[datetime, datetime] | str] = {}
_KNOWN_MOST = 50_000


def resolve(rows: Iterable[Mapping[str, Any]], now: datetime) -> list[Resolved]:
    """First tick after `now` for each row (id, job_name, key, cron, zone), or the error to
    store: the expression, and what is wrong with it."""
    out = []
    for row in rows:
        tick = first_tick(row["cron"], row["zone"], now)
        if isinstance(tick, str):
            out.append(Resolved(row["id"], None, _error(row, tick)))
        else:
            out.append(Resolved(row["id"], tick, None))
    return out


def first_tick(cron: str, zone: str, now: datetime) -> datetime | str:
    """The first tick after `now` of (cron, zone), or why it is invalid: the one computation
    of first ticks, for rows written by SQL (`resolve`) and for a sync's code schedules alike,
    each (expression, zone) computed once while its answer holds."""
    if len(_known) > _KNOWN_MOST:
        _known.clear()
    known = _known.get((cron, zone))
    if isinstance(known, str):
        return known
    if known is not None and known[0] <= now < known[1]:
        return known[1]
    try:
        tick = parse_schedule(cron, zone).next_after(now)
    except CronError as exc:
        _known[(cron, zone)] = str(exc)
        return str(exc)
    _known[(cron, zone)] = (now, tick)
    return tick


def _error(row: Mapping[str, Any], reason: str) -> str:
    return (
        f"schedule {row['key']!r} of job {row['job_name']!r}: {reason}; it does not fire: "
        "UPDATE its cron (or timezone), or delete the row"
    )
