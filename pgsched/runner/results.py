"""The one path every outcome takes to the database: an outbox, written in batches.

While the database is away the outbox holds the results (bounded by
`max_held_results`; the claimer stops claiming when it is full) and writes them when it is
back. Each write is guarded by the run's lease token, so a runner that lost its lease can
never overwrite a final state; a result the database refuses is explained in the log by what
the database holds for that run instead.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import OrderedDict, deque
from dataclasses import replace
from typing import Any

from ..errors import DatabaseRefusedError, DatabaseUnavailableError
from ..runs import RunOutcome
from ..settings import RunnerSettings
from ..store import Store
from .duty import Backoff, Duty

BATCH = 1000
RECENT = 10_000  # written results kept, to write again to a database that lost them


class Results(Duty):
    name = "results"

    def __init__(self, store: Store, settings: RunnerSettings, log: Any) -> None:
        super().__init__()
        self.store = store
        self.settings = settings
        self.log = log
        self.outbox: deque[RunOutcome] = deque()
        # Results written lately. After a failover to a standby that had not received them,
        # the new primary still shows those runs `running` under this runner's lease: they
        # are written again (Reaper) instead of being failed as stranded.
        self.recent: OrderedDict[int, RunOutcome] = OrderedDict()

    def add(self, outcome: RunOutcome) -> None:
        self.outbox.append(outcome)
        self.wake()

    @property
    def full(self) -> bool:
        return len(self.outbox) >= self.settings.max_held_results

    def pending_ids(self) -> list[int]:
        return [o.run_id for o in self.outbox]

    async def step(self) -> float | None:
        if not self.outbox:
            return None
        await asyncio.sleep(self.settings.flush_interval)  # gather a batch
        while self.outbox:
            await self.write_batch()
        return None

    async def write_batch(self) -> None:
        batch = list(itertools.islice(self.outbox, BATCH))
        try:
            written = await self.store.finish(batch)
        except DatabaseRefusedError:
            written = await self._one_by_one(batch)
        for _ in batch:
            self.outbox.popleft()
        for outcome in batch:
            if outcome.run_id in written:
                self.recent[outcome.run_id] = outcome
        while len(self.recent) > RECENT:
            self.recent.popitem(last=False)
        if refused := [o for o in batch if o.run_id not in written]:
            await self._explain_refused(refused)

    def rewrite(self, run_ids: list[int]) -> list[int]:
        """Send again the results of these runs, if written lately; returns those sent."""
        again = [i for i in run_ids if i in self.recent]
        for run_id in again:
            self.add(self.recent.pop(run_id))
        return again

    async def _one_by_one(self, batch: list[RunOutcome]) -> set[int]:
        """The database refused a batch (not a connection problem): find the result it cannot
        store and record the run as failed with the reason, so one bad result never blocks the
        others."""
        written: set[int] = set()
        for outcome in batch:
            try:
                written |= await self.store.finish([outcome])
            except DatabaseRefusedError as exc:
                self.log.error("result could not be stored", run_id=outcome.run_id, error=str(exc))
                replacement = replace(
                    outcome,
                    status="failed",
                    data=None,
                    stats=None,
                    error=None,
                    message=f"result could not be stored: {exc}"[:2000],
                )
                try:
                    written |= await self.store.finish([replacement])
                except DatabaseRefusedError as again:  # never block the outbox on one run
                    self.log.error(
                        "result dropped: even a plain failure could not be stored; the "
                        "stranded-run sweep will end the run",
                        run_id=outcome.run_id,
                        error=str(again),
                    )
        return written

    async def _explain_refused(self, refused: list[RunOutcome]) -> None:
        """Say why the lease check refused each result, from what the database holds now."""
        rows = await self.store.run_states([o.run_id for o in refused])
        for outcome in refused:
            row = rows.get(outcome.run_id)
            if row is None:
                why = (
                    "the run does not exist in this database (lost with the old primary in a "
                    "failover, or deleted)"
                )
            elif row["status"] == "running":
                why = f"the run was claimed again, by runner {row['runner']}"
            else:
                why = (
                    f"the run was already finished ({row['status']}: {row['message'] or '-'}), "
                    "since this runner's lease was lost"
                )
            self.log.warning(
                f"result discarded: {why}", run_id=outcome.run_id, status=outcome.status
            )

    async def write_all(self, within: float) -> None:
        """Shutdown: write what is held, trying for up to `within` seconds."""
        end = time.monotonic() + within
        backoff = Backoff()
        while self.outbox and time.monotonic() < end:
            try:
                await self.write_batch()
            except DatabaseUnavailableError:
                await self.pause(min(backoff.next(), max(0.0, end - time.monotonic())))
        if self.outbox:
            self.log.error(
                "results not written before exit; leases will mark them lost",
                count=len(self.outbox),
            )
