"""The runs a runner holds before they start: prefetched runs waiting for a slot, and ticks
claimed ahead waiting for their time. Decides how much to claim, and starts runs as slots
free up; `Executor` holds the runs that have started.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from ..runs import ClaimedRun
from ..settings import RunnerSettings
from .executing import Executor

# Ticks claimed ahead go to the executor this long before their time and start at it there
# (`Crew.call`'s not_before): what an instant's thousand starts cost on the control loop, and
# its timer's lateness, is then spent before the tick instead of after it.
HANDOVER_LEAD = 0.005


class Slots:
    def __init__(self, settings: RunnerSettings, executor: Executor) -> None:
        self.settings = settings
        self.executor = executor
        self.prefetched: deque[ClaimedRun] = deque()  # claimed, waiting for a slot
        self.waiting: dict[int, tuple[ClaimedRun, asyncio.TimerHandle]] = {}  # tick not due
        self.starting = True  # False once shutdown's grace period is over: nothing starts
        self._no_prefetch_until = 0.0  # after giving runs back, claim only for free slots
        self._fill_scheduled = False

    # --- how much to claim ----------------------------------------------------------------

    def capacity(self) -> int:
        """How many more runs this runner may hold: its slots plus the prefetch allowance."""
        held = len(self.executor) + len(self.prefetched) + len(self.waiting)
        prefetch = self.settings.prefetch_runs if time.monotonic() >= self._no_prefetch_until else 0
        return self.settings.concurrency + prefetch - held

    def worth_claiming(self, free: int) -> bool:
        """Claim in batches, as db-scheduler's lower and upper fetch limits do: while claimed
        runs wait here for a slot (every slot is busy then), claim again only once the queue
        is down to half the prefetch allowance, not for every place that frees up (a
        transaction per run or two during a drain). With nothing queued, any free slot is
        worth a claim."""
        if free <= 0:
            return False
        return not self.prefetched or 2 * free >= self.settings.prefetch_runs

    def ahead(self) -> int:
        """How many ticks this runner may claim before their time, to start them then: up to
        twice its allowance when its slots are idle, scaled down by the slots busy now (a
        tick claimed ahead should find a slot at its time), less what already waits here;
        the claim also keeps it to its fair share of the ticks due then. Many jobs often share
        a second, and a tick claimed at its time starts a claim round late (bench/: p99 30.7
        ms instead of 7.9 for 100 jobs, 3 runners of 10 slots)."""
        if not self.settings.lookahead:
            return 0
        concurrency = self.settings.concurrency
        idle = concurrency - len(self.executor)
        queued = len(self.prefetched) + len(self.waiting)
        allowance = 2 * (concurrency + self.settings.prefetch_runs) * idle // concurrency
        return max(0, allowance - queued)

    # --- holding and starting -------------------------------------------------------------

    def accept(self, claimed: list[ClaimedRun]) -> None:
        """Runs just claimed: start what is due while slots are free, time the rest, one
        timer for the ticks of one instant (a thousand schedules share a second)."""
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        instants: dict[float, list[ClaimedRun]] = {}
        for run in claimed:
            if run.start_mono > now:  # claimed ahead of its tick
                instants.setdefault(run.start_mono, []).append(run)
            else:
                self.prefetched.append(run)
        for start, runs in instants.items():
            ids = [run.id for run in runs]
            handover = max(0.0, start - HANDOVER_LEAD - now)
            timer = loop.call_at(loop.time() + handover, self._due, ids)
            for run in runs:
                self.waiting[run.id] = (run, timer)
        self.fill()

    def _due(self, run_ids: list[int]) -> None:
        """Ticks claimed ahead are (nearly) due: they go first in the queue for a slot (those
        taken back meanwhile are no longer waiting), and start at their time."""
        due = [w[0] for run_id in run_ids if (w := self.waiting.pop(run_id, None)) is not None]
        if due:
            self.prefetched.extendleft(reversed(due))
            self.fill()

    def fill_soon(self) -> None:
        """A slot is free: fill it once the loop's current callback is done. The outcomes of
        a batch free their slots one by one; the runs waiting for them then start together,
        in one hand-over, rather than one by one between the outcomes."""
        if not self._fill_scheduled:
            self._fill_scheduled = True
            asyncio.get_running_loop().call_soon(self._fill_scheduled_now)

    def _fill_scheduled_now(self) -> None:
        self._fill_scheduled = False
        self.fill()

    def fill(self) -> None:
        """Start prefetched runs, oldest first, while slots are free."""
        while self.starting and self.prefetched and len(self.executor) < self.settings.concurrency:
            self.executor.start(self.prefetched.popleft())

    # --- giving back ----------------------------------------------------------------------

    def take_stale(self, older_than: float) -> list[ClaimedRun]:
        """Prefetched runs that waited longer than `older_than` seconds (queued since their
        claim, or since their tick for a tick claimed ahead), to give back so a runner busy
        with slow runs does not sit on work others could do."""
        cutoff = time.monotonic() - older_than
        stale: list[ClaimedRun] = []
        while (
            self.prefetched
            and max(self.prefetched[0].claimed_mono, self.prefetched[0].start_mono) <= cutoff
        ):
            stale.append(self.prefetched.popleft())
        if stale:
            self._no_prefetch_until = time.monotonic() + 5 * max(self.settings.prefetch_hold, 1.0)
        return stale

    def take_all(self) -> tuple[list[ClaimedRun], list[ClaimedRun]]:
        """Shutdown: (prefetched runs, ticks claimed ahead) that never started. The timers
        are cancelled before anything awaits, so none can start a tick meanwhile."""
        self.starting = False
        ahead = [run for run, _ in self.waiting.values()]
        for _, timer in self.waiting.values():
            timer.cancel()
        self.waiting.clear()
        prefetched = list(self.prefetched)
        self.prefetched.clear()
        return prefetched, ahead

    def forget_all(self) -> None:
        """This runner lost its lease: what it holds was failed elsewhere."""
        for _, timer in self.waiting.values():
            timer.cancel()
        self.waiting.clear()
        self.prefetched.clear()

    def take(self, run_id: int) -> ClaimedRun | None:
        """Remove one held run that has not started (it was cancelled)."""
        if (waiting := self.waiting.pop(run_id, None)) is not None:
            return waiting[0]  # its instant's timer, shared, finds it gone
        for run in self.prefetched:
            if run.id == run_id:
                self.prefetched.remove(run)
                return run
        return None

    def known(self) -> list[int]:
        return [*self.executor.running, *self.waiting, *(run.id for run in self.prefetched)]
