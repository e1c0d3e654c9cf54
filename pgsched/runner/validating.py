"""Validate schedules written by plain SQL: each gets its first tick, or `error` with the
expression and what is wrong (it never fires). Woken by the NOTIFY of an INSERT or edit into
pgsched.schedules; the slow poll is the safety net (and the only way behind a transaction
pooler). Rows written by pgsched itself (sync, `add_schedule`, the CLI) are valid already.

Every runner does it, in batches locked with SKIP LOCKED, so runners split a bulk insert;
what it costs follows the rows to validate (a partial index), not the schedules that exist.
"""

from __future__ import annotations

from typing import Any

from ..settings import RunnerSettings
from ..store import Store
from .duty import Duty

BATCH = 5000  # rows per transaction: a million rows are 200 short transactions
_SHOWN = 5  # errors logged per batch by name; the rest are counted


class ScheduleCheck(Duty):
    name = "validate"

    def __init__(self, store: Store, settings: RunnerSettings, log: Any) -> None:
        super().__init__()
        self.store = store
        self.settings = settings
        self.log = log

    async def step(self) -> float | None:
        valid, errors = await self.store.validate_schedules(BATCH)
        for error in errors[:_SHOWN]:
            self.log.warning("schedule cannot fire", error=error)
        if len(errors) > _SHOWN:
            self.log.warning("more schedules cannot fire", count=len(errors) - _SHOWN)
        if valid or errors:
            return 0.0  # there may be more
        return self.settings.poll_interval
