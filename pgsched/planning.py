"""Decide the fate of due ticks: run now, queue, or record as skipped — with the reason.

Pure functions of what the claim read from the database (including its clock) and of what
the claiming runner knows of its own outages, so the misfire and overlap policies, and the
reason a missed tick gives, are unit-tested without a server.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from .cron import CronSchedule, next_tick, schedule_for
from .errors import CronError
from .states import TickStatus


@dataclass(frozen=True)
class DueJob:
    """A locked, due schedule (a row of pgsched.schedules, with its job's policies) as the
    claim read it. Overlap and misfire apply per schedule: `busy` and `queued` are runs of
    this schedule."""

    name: str
    schedule: str
    timezone: str
    next_run_at: datetime
    overlap: str
    misfire: str
    misfire_grace: float
    misfire_cap: int
    busy: bool  # a run of the schedule is running
    db_now: datetime
    queued: bool = False  # runs of the schedule are waiting to start
    key: str = "default"  # pgsched.schedules.key
    # What tells why ticks were missed, read only when the claim is late enough to miss one:
    # the live runner defining the job that started first, and when the job or schedule row
    # last changed (a resume, an edit).
    alive_runner: str | None = None
    alive_since: datetime | None = None
    changed_at: datetime | None = None


@dataclass(frozen=True)
class Outage:
    """The claiming runner's last database outage, on the database clock: from its first
    failed attempt to the first that succeeded again."""

    runner: str
    lost: datetime
    back: datetime


@dataclass(frozen=True)
class PlannedTick:
    job_name: str
    tick: datetime
    status: TickStatus
    message: str | None = None


@dataclass(frozen=True)
class JobPlan:
    """One schedule's ticks to record and its next tick."""

    job_name: str
    next_run_at: datetime | None  # None stops the schedule firing (it is unreadable: `error`)
    ticks: tuple[PlannedTick, ...]
    key: str = "default"
    error: str | None = None


def _fmt(t: datetime) -> str:
    return t.isoformat(timespec="seconds")


def _missed_cause(due: DueJob, tick: datetime, outage: Outage | None) -> str | None:
    """What happened to one missed tick, from the facts the claim has: never a list of
    guesses. None: a runner was alive and the claim came late (said per group of ticks)."""
    if outage is not None and outage.lost <= tick <= outage.back:
        return (
            f"the database was unreachable from {_fmt(outage.lost)} to {_fmt(outage.back)} "
            f"(runner {outage.runner} could not reach it)"
        )
    if due.alive_since is None:  # not read: no live runner defining it had registered
        return "no runner that defines this job was alive then"
    if due.alive_since > tick:
        return (
            f"no runner that defines this job was alive then (the first live one, "
            f"{due.alive_runner}, started at {_fmt(due.alive_since)})"
        )
    if due.changed_at is not None and due.changed_at > tick:
        return (
            f"the job or this schedule was changed at {_fmt(due.changed_at)} (paused until "
            f"then, or edited) while runner {due.alive_runner} was alive"
        )
    return None


def _late(due: DueJob, first: datetime) -> str:
    assert due.alive_since is not None
    late = (due.db_now - first).total_seconds()
    return (
        f"the claim came {late:.1f} s late: runner {due.alive_runner} alive since "
        f"{_fmt(due.alive_since)} (a busy machine or a slow database)"
    )


def _missed_reasons(
    due: DueJob, missed: list[datetime], overflow: bool, outage: Outage | None
) -> list[str]:
    """One reason per missed tick: consecutive ticks with the same cause share a message
    that counts them (a downtime that ends in a late claim says both)."""
    causes = [_missed_cause(due, t, outage) for t in missed]
    reasons: list[str] = []
    start = 0
    for end in range(1, len(missed) + 1):
        if end < len(missed) and causes[end] == causes[start]:
            continue
        group = missed[start:end]
        count = f"{len(group)}{'+' if overflow and start == 0 else ''}"
        cause = causes[start] or _late(due, group[0])
        reason = (
            f"missed: {count} tick(s) from {_fmt(group[0])} to {_fmt(group[-1])} did not run "
            f"at their time: {cause}"
        )
        if overflow:
            reason += f"; only the last misfire_cap={due.misfire_cap} are recorded"
        reasons += [reason] * len(group)
        start = end
    return reasons


def _misfire(
    due: DueJob, missed: list[datetime], on_time: bool, reasons: list[str]
) -> list[PlannedTick]:
    """The fate of the ticks that did not run at their time (downtime, a pause, an outage,
    or simply a later tick already due): only the latest due tick can be on time. With
    misfire=once the latest due tick's run stands for all of them; when it is on time the
    caller adds it. `reasons`: one per missed tick."""
    ticks = list(zip(missed, reasons, strict=True))
    if due.misfire == "skip":
        return [PlannedTick(due.name, t, "skipped", f"{r}; misfire=skip") for t, r in ticks]
    if due.misfire == "all":
        return [PlannedTick(due.name, t, "pending", f"{r}; misfire=all") for t, r in ticks]
    skipped = [
        PlannedTick(due.name, t, "skipped", f"{r}; misfire=once runs only the latest")
        for t, r in (ticks if on_time else ticks[:-1])
    ]
    if on_time:
        return skipped
    last = PlannedTick(
        due.name, missed[-1], "pending", f"{_summary(reasons)}; misfire=once: this run"
    )
    return [*skipped, last]


def _summary(reasons: list[str]) -> str:
    """The distinct reasons of a catch-up, oldest first, for the one run that stands for it."""
    return "; ".join(dict.fromkeys(reasons))


def _assign(due: DueJob, planned: list[PlannedTick], free: int) -> tuple[list[PlannedTick], int]:
    """Overlap policy and free slots: the first runnable tick may start here and now; the
    others wait as pending (run one after another unless overlap=allow). A tick finding
    runs of its job queued (a misfire=all catch-up, a request) lines up behind them rather
    than being skipped: a backlog must not push later ticks out."""
    busy = due.busy  # a run was already running when the claim looked
    queued = due.queued  # earlier runs wait: this tick lines up behind them
    out: list[PlannedTick] = []
    for p in planned:
        if p.status == "skipped":
            out.append(p)
        elif due.busy and not due.queued and due.overlap == "skip":
            reason = "previous run still running (overlap=skip)"
            out.append(PlannedTick(p.job_name, p.tick, "skipped", reason))
        elif free > 0 and (due.overlap == "allow" or not (busy or queued)):
            out.append(PlannedTick(p.job_name, p.tick, "running", p.message))
            free -= 1
            queued = True
        else:
            out.append(PlannedTick(p.job_name, p.tick, "pending", p.message))
            queued = True
    return out, free


def plan_job(due: DueJob, free: int, outage: Outage | None = None) -> tuple[JobPlan, int]:
    """The rows to write for one due job, its next tick, and the slots left for other jobs.
    `outage`: the claiming runner's last one, which may explain missed ticks."""
    start = due.next_run_at
    following = next_tick(due.schedule, due.timezone, start)
    if following > due.db_now:  # the common case: exactly one tick is due
        ticks = [start]
        next_run_at = following
    else:
        cron = schedule_for(due.schedule, due.timezone)
        ticks = sorted({start, *cron.ticks_between(start, due.db_now, due.misfire_cap + 1)})
        next_run_at = cron.next_after(due.db_now)
    overflow = len(ticks) > due.misfire_cap
    if overflow:  # keep the newest ticks: misfire=once must run the latest one
        hint = ticks[due.misfire_cap] - ticks[0]
        ticks = _newest_ticks(cron, start, due.db_now, due.misfire_cap, hint)
    latest = ticks[-1]
    on_time = (due.db_now - latest).total_seconds() <= due.misfire_grace
    missed = ticks[:-1] if on_time else ticks
    planned: list[PlannedTick] = []
    note = None
    if missed:
        reasons = _missed_reasons(due, missed, overflow, outage)
        planned = _misfire(due, missed, on_time, reasons)
        note = f"{_summary(reasons)}; misfire=once: this run" if due.misfire == "once" else None
    if on_time:
        planned.append(PlannedTick(due.name, latest, "pending", note))
    assigned, free = _assign(due, planned, free)
    return JobPlan(due.name, next_run_at, tuple(assigned), due.key), free


def _newest_ticks(
    cron: CronSchedule, start: datetime, end: datetime, count: int, hint: timedelta
) -> list[datetime]:
    """The newest `count` ticks in [start, end]: a window ending at `end`, `hint` long at
    first (what `count` ticks spanned at the start of the gap), doubled until it holds them
    (schedules are not evenly spaced: business hours after a weekend), read page by page."""
    span = max(hint, timedelta(seconds=1))
    while True:
        low = max(start, end - span)
        newest: deque[datetime] = deque(maxlen=count)
        cursor = low
        while page := cron.ticks_between(cursor, end, _PAGE):
            newest.extend(page)
            if len(page) < _PAGE:
                break
            cursor = page[-1] + timedelta(microseconds=1)
        if len(newest) >= count or low <= start:
            return list(newest)
        span *= 2


_PAGE = 1000


def plan_ahead(due: DueJob) -> JobPlan | None:
    """A tick not due yet (claimed within the lookahead) is claimed to start at its time, or
    left for the claim at its time when that must decide a skip or a queue."""
    if due.overlap != "allow" and (due.busy or due.queued):
        return None
    following = next_tick(due.schedule, due.timezone, due.next_run_at)
    tick = PlannedTick(due.name, due.next_run_at, "running")
    return JobPlan(due.name, following, (tick,), due.key)


def plan_claim(
    due_jobs: list[DueJob], free: int, ahead: int = 0, outage: Outage | None = None
) -> list[JobPlan]:
    """Plans for the locked schedules. `free`: due runs this runner may take on; `ahead`: how
    many ticks that are not due yet it may claim besides (to start at their time). Schedules
    beyond either are left alone, for a claim with room. `outage`: the claiming runner's
    last database outage, if it had one."""
    plans: list[JobPlan] = []
    for due in due_jobs:
        try:
            if due.next_run_at > due.db_now:
                if ahead > 0 and (early := plan_ahead(due)) is not None:
                    plans.append(early)
                    ahead -= 1
                continue
            if free <= 0:
                continue
            plan, free = plan_job(due, free, outage)
        except Exception as exc:  # one schedule must never stop the runner
            # A schedule pgsched cannot read got past validation (a row edited with
            # next_run_at set by hand), or the planner failed on it: stop the schedule
            # (next_run_at NULL, `error`) and say so in its history, rather than fail every
            # claim and, after ten, the runner.
            where = f"schedule {due.key!r} of job {due.name!r}"
            restore = (
                "run `pgsched sync` to restore it"
                if due.key == "default"
                else f"UPDATE {due.key!r}'s cron in pgsched.schedules"
            )
            if isinstance(exc, CronError):
                reason = f"{where}: {exc}; {restore}"
            else:
                reason = (
                    f"{where}: pgsched could not plan its ticks ({exc!r}); it is stopped: "
                    f"{restore}, and report this"
                )
            failed = PlannedTick(due.name, due.next_run_at, "failed", reason)
            plan = JobPlan(due.name, None, (failed,), due.key, reason)
        plans.append(plan)
    return plans
