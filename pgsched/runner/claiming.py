"""The only place a run is claimed: due ticks of scheduled jobs, then pending runs (manual
requests, retries, queued ticks). Read top to bottom, a claim round is:

1. ticks: lock the due jobs → plan each job's ticks (misfire and overlap policies, next
   tick) → record one row per tick and advance `next_run_at`, in one short transaction;
2. pending runs: one statement claims those of jobs that allow overlap; runs of the others
   start in a second transaction that holds their job rows, one run per job at a time;
3. hand what was claimed to the slots, and work out how long to sleep: until the earliest
   due tick or pending run by the database clock, or the safety-net poll.

The planner runs between the lock and the record, inside the transaction: the plan needs
the locked rows and what is running *after* the lock (so the overlap policy cannot race), and
it is pure computation (croniter, microseconds), never user code or I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from ..planning import DueJob, Outage, plan_claim
from ..runs import ClaimedRun
from ..settings import RunnerSettings
from ..store import Store
from .duty import Backoff, Duty, Health
from .results import Results
from .slots import Slots


class Claimer(Duty):
    name = "claim"

    def __init__(
        self,
        store: Store,
        runner_id: str,
        code_version: str,
        settings: RunnerSettings,
        slots: Slots,
        results: Results,
        health: Health | None = None,
    ) -> None:
        super().__init__()
        self.health = health  # its last outage explains ticks missed meanwhile
        self.store = store
        self.runner_id = runner_id
        self.code_version = code_version  # only jobs this code defines are claimed
        self.settings = settings
        self.slots = slots
        self.results = results
        self._ticks_due_at = 0.0  # monotonic time before which no scheduled tick is due
        self._ticks_checked_at = 0.0
        self._idle = Backoff(first=0.005, most=1.0)  # waits for work locked elsewhere
        self.on_round: Callable[[float], None] | None = None  # seconds a claim round took

    def ticks_changed(self) -> None:
        """A schedule changed (NOTIFY 'jobs'), or notifications may have been missed."""
        self._ticks_due_at = 0.0
        self.wake()

    async def pause(self, delay: float | None) -> bool:
        timed_out = await super().pause(delay)
        if timed_out:
            self._ticks_due_at = 0.0  # a timer ran out: ticks may be due (or it is the poll)
        return timed_out

    async def step(self) -> float | None:
        free = self.slots.capacity()
        if not self.slots.worth_claiming(free) or self.results.full:
            return None  # a finished run (or a written result) wakes us
        began = time.perf_counter()
        claimed = await self._claim_ticks(free) if self._ticks_may_be_due() else []
        if len(claimed) < free:  # ticks are started already: a failure below cannot strand them
            claimed += await self._claim_pending(free - len(claimed))
        if self.on_round is not None:
            self.on_round(time.perf_counter() - began)
        if claimed:
            self._idle.reset()  # the wait for work locked elsewhere starts short next time
            return None if len(claimed) >= free else 0.0  # there may be more: look again
        return await self._sleep_until_due()

    def _ticks_may_be_due(self) -> bool:
        now = time.monotonic()
        if now < min(self._ticks_due_at, self._ticks_checked_at + self.settings.poll_interval):
            return False
        self._ticks_checked_at = now  # the safety net also covers a missed NOTIFY
        return True

    async def _claim_ticks(self, free: int) -> list[ClaimedRun]:
        ahead = self.slots.ahead()
        settings = self.settings
        async with self.store.tick_claim(self.runner_id, self.code_version) as claim:
            due = await claim.lock_due_jobs(free, ahead, settings.lookahead, settings.lease_timeout)
            if due:
                await claim.record(plan_claim(due, free, ahead, self._last_outage(due)))
        self.slots.accept(claim.claimed)
        return claim.claimed

    def _last_outage(self, due: list[DueJob]) -> Outage | None:
        """This runner's last outage on the database clock, anchored at the claim just read
        (good to its round trip)."""
        window = self.health.last_outage if self.health is not None else None
        if window is None:
            return None
        now_mono, db_now = time.monotonic(), due[0].db_now
        lost, back = (db_now - timedelta(seconds=now_mono - m) for m in window)
        return Outage(self.runner_id, lost, back)

    async def _claim_pending(self, limit: int) -> list[ClaimedRun]:
        pending = await self.store.claim_pending(self.runner_id, limit, self.code_version)
        self.slots.accept(pending.started)  # committed: start them before anything else
        claimed = list(pending.started)
        if pending.exclusive:
            exclusive = await self.store.start_exclusive(self.runner_id, pending.exclusive)
            self.slots.accept(exclusive)
            claimed += exclusive
        return claimed

    async def _sleep_until_due(self) -> float | None:
        looked_at = time.monotonic()
        tick_in, pending_in = await self.store.seconds_until_due(self.code_version)
        ticks_in = tick_in
        if ticks_in is not None and self.slots.ahead():
            ticks_in -= self.settings.lookahead  # its claim may begin that much earlier
        self._ticks_due_at = looked_at + ticks_in if ticks_in is not None else float("inf")
        due_in = min((s for s in (ticks_in, pending_in) if s is not None), default=None)
        if due_in is None:
            return self.settings.poll_interval
        if due_in <= 0:
            # Due, but nothing claimable: locked by another runner's claim (it commits within
            # milliseconds), or waiting for a running run of its job. Look again soon, backing
            # off so a long wait does not become a busy loop, but never past the next tick.
            if tick_in is not None and tick_in > 0:
                return min(self._idle.next(), tick_in)
            return self._idle.next()
        self._idle.reset()
        return min(due_in, self.settings.poll_interval)


class GiveBack(Duty):
    """Prefetched runs held too long behind slow runs go back to `pending` for any runner."""

    name = "give-back"

    def __init__(self, store: Store, settings: RunnerSettings, slots: Slots, log: Any) -> None:
        super().__init__()
        self.store = store
        self.settings = settings
        self.slots = slots
        self.log = log

    async def step(self) -> float | None:
        if stale := self.slots.take_stale(self.settings.prefetch_hold):
            # Never put them back in the queue on failure: the release may have committed
            # with its reply lost, and another runner may already be running them. If it did
            # not commit, the stranded-run sweep ends them (failed, retried if allowed).
            released = await self.store.release(stale)
            self.log.info("released prefetched runs", runs=released)
        return self.settings.heartbeat_interval

    async def give_back_all(self) -> None:
        """Shutdown: what never started goes back as if this runner had never claimed it."""
        prefetched, ahead = self.slots.take_all()
        try:
            if prefetched:
                released = await self.store.release(prefetched)
                self.log.info("released prefetched runs", runs=released)
        finally:
            if ahead:  # given back as if never claimed
                unclaimed = await self.store.unclaim_ticks(ahead)
                self.log.info("gave back ticks claimed ahead", runs=unclaimed)
