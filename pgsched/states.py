"""The words pgsched's tables use, as types (each matches a CHECK constraint of
sql/schema.sql), and the one word for a job's state that the CLI and the dashboard show."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal, get_args

RunStatus = Literal["pending", "running", "succeeded", "failed", "skipped", "cancelled"]
"""`pgsched.runs.status`."""

FinalStatus = Literal["succeeded", "failed", "skipped", "cancelled"]
"""A run in one of these states is history: nothing changes it any more."""

OutcomeStatus = Literal["succeeded", "failed", "cancelled"]
"""What a run that executed may end as: a job ends as succeeded or failed, a cancelled run as
cancelled; anything else a job returns fails its run."""

Trigger = Literal["schedule", "manual", "retry"]
"""`pgsched.runs.trigger`: why the run exists."""

TickStatus = Literal["running", "pending", "skipped", "failed"]
"""The states a tick claim writes a run in."""

JobState = Literal["enabled", "paused", "disabled", "orphaned", "invalid"]
"""What the scheduler will do with a job: `jobs list`'s STATE, the dashboard's badge."""

RUN_STATUSES: Final[tuple[str, ...]] = get_args(RunStatus)
FINAL_STATUSES: Final[frozenset[str]] = frozenset(get_args(FinalStatus))
JOB_STATES: Final[tuple[JobState, ...]] = get_args(JobState)


def schedule_problem(expression: str | None, timezone: str) -> str | None:
    """Why a job's schedule cannot fire (NULL schedule: manual only, not a problem)."""
    from .cron import schedule_error  # croniter loads only when a schedule is read

    return schedule_error(expression, timezone)


def job_state(row: Mapping[str, Any]) -> JobState:
    """One word for what the scheduler will do with a job; orphaned wins over everything."""
    if row.get("orphaned"):
        return "orphaned"
    if schedule_problem(row.get("schedule"), row.get("timezone") or "UTC"):
        return "invalid"
    if not row.get("enabled"):
        return "disabled"
    return "paused" if row.get("paused") else "enabled"


__all__ = [
    "FINAL_STATUSES",
    "JOB_STATES",
    "RUN_STATUSES",
    "FinalStatus",
    "JobState",
    "OutcomeStatus",
    "RunStatus",
    "TickStatus",
    "Trigger",
    "job_state",
    "schedule_problem",
]
