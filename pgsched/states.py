"""The words pgsched's tables use, as types: each matches a CHECK constraint of sql/schema.sql."""

from __future__ import annotations

from typing import Final, Literal, get_args

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

RUN_STATUSES: Final[tuple[str, ...]] = get_args(RunStatus)
FINAL_STATUSES: Final[frozenset[str]] = frozenset(get_args(FinalStatus))

__all__ = [
    "FINAL_STATUSES",
    "RUN_STATUSES",
    "FinalStatus",
    "OutcomeStatus",
    "RunStatus",
    "TickStatus",
    "Trigger",
]
