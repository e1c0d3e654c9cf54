"""What a runner holds and what it writes back: the claimed run and its outcome, as plain
data. The executor, worker processes, metrics and the store share these; none of them needs
the database to make or read one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .states import OutcomeStatus, Trigger

__all__ = ["ClaimedRun", "RunOutcome"]


# Not frozen: a frozen dataclass sets each field through object.__setattr__, and one of these
# (and one RunOutcome) is made per run: a few µs a run in a drain.
@dataclass(slots=True)
class ClaimedRun:
    """A run this runner holds under `lease` and must finish."""

    id: int
    job_name: str
    trigger: Trigger
    scheduled_for: datetime | None
    attempt: int
    params: dict[str, Any]
    lease: str
    claimed_at: float  # the database clock (epoch seconds) while the claim statement ran
    claimed_mono: float  # time.monotonic() just before that statement was sent
    start_mono: float = 0.0  # a tick claimed ahead: time.monotonic() when it is due
    schedule_key: str = "default"  # the schedule it belongs to (requests: the default one)


@dataclass(slots=True)
class RunOutcome:
    """A final state to write for a claimed run."""

    run_id: int
    lease: str
    status: OutcomeStatus
    started_at: float | None  # epoch seconds on the database clock (see Execution._at)
    finished_at: float | None
    message: str | None = None
    error: dict[str, Any] | None = None
    stats: dict[str, int] | None = None
    data: dict[str, Any] | None = None
