"""Where user code runs, away from the control plane: never on the loop that heartbeats.

- `async def` jobs run on the *job loop*, an event loop in a thread of its own. A job that
  blocks it (a `time.sleep` in async code, the most common asyncio mistake) delays other
  async jobs, never a heartbeat, a claim or a result write; `LoopWatch` names it in the log.
- Plain `def` jobs run in the job threads (`crew.Crew`): one without a timeout is executed
  whole in its thread, its outcome handed back in a batch; one with a timeout is awaited by a
  task on the control loop, which records the timeout (a thread cannot be killed).
- Jobs with `isolation = "process"` run in worker processes that can be killed (see
  `pgsched.isolation`); the control loop drives the pool, so a hard timeout needs no help
  from the job.

Runs cross between the control loop and the job loop in batches (one thread hop per batch,
not per run), and every run ends in exactly one call of `on_finished` on the control loop.

A run starts where it runs, maybe later than it was handed over (a job loop blocked by
another job, a worker process still importing the app): right before its callable, each lane
asks `Executor._begin`, and a run whose outcome the control loop decided meanwhile (timed out
before it could start, cancelled, forgotten with a lost lease) never starts. Its retry may
already be running elsewhere.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from ..execution import Execution, NotStarted, UserPools
from ..isolation import ProcessPool, WorkerSpec
from ..registry import JobDefinition, Registry
from ..runs import ClaimedRun, RunOutcome
from ..settings import RunnerSettings
from .crew import Crew
from .duty import Duty

# How long past its timeout an async job that blocks the job loop (so that its own timeout
# cannot fire) may hold its slot before the control loop records the timeout itself.
TIMEOUT_MARGIN = 1.0


class JobLoop:
    """An asyncio loop in a daemon thread, for `async def` jobs only."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="pgsched-jobs", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, callback: Callable[..., Any], *args: Any) -> None:
        self.loop.call_soon_threadsafe(callback, *args)

    async def run(self, coro: Any, timeout: float) -> Any:
        """Await `coro` on the job loop from another loop; gives up after `timeout` (the job
        loop may be blocked by a job)."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout)

    def stop(self, timeout: float) -> None:
        if not self._thread.is_alive():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.loop.close()


@dataclass(slots=True)
class Running:
    """A run in a slot: its execution, and what can stop it."""

    execution: Execution
    on_job_loop: bool
    in_process: bool = False  # isolation = "process": in a worker process of the pool
    in_thread: bool = False  # a sync job without a timeout, executed whole in a job thread
    cancelled_by: str | None = None  # someone asked to cancel it: it ends `cancelled`
    # Its callable started (`Executor._begin`, in the lane), or the control loop took it back
    # first (`_take_back`: its outcome is decided) and it never starts. Both, and
    # started_mono, change under Executor._handover.
    started: bool = False
    abandoned: bool = False
    started_mono: float | None = None
    task: asyncio.Task[Any] | None = None  # the task it runs in (job loop or control loop)
    deadline: asyncio.TimerHandle | None = None  # control-side timeout (async jobs only)


class Executor:
    """Starts claimed runs where they belong and reports each outcome once."""

    def __init__(
        self,
        registry: Registry,
        pools: UserPools,
        runner_id: str,
        settings: RunnerSettings,
        on_finished: Callable[[RunOutcome, ClaimedRun | None], None],
        log: Any,
        worker_spec: WorkerSpec | None = None,
    ) -> None:
        self.registry = registry
        self.pools = pools
        self.runner_id = runner_id
        self.settings = settings
        self.log = log
        # (outcome, the claimed run if it held a slot here; None: its slot was freed already)
        self._on_finished = on_finished
        self.running: dict[int, Running] = {}
        self.job_loop = JobLoop()
        self.threads = Crew("pgsched-job", on_drained=self._signal_thread_outcomes)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outbound: list[Running] = []  # async runs to hand to the job loop in one hop
        self._inbound: deque[tuple[int, RunOutcome]] = deque()  # outcomes from the job loop
        self._inbound_signalled = False
        # outcomes of sync runs executed whole in job threads (`_run_in_thread`)
        self._thread_outcomes: deque[tuple[Running, RunOutcome]] = deque()
        self._thread_outcomes_signalled = False
        self._handover = threading.Lock()  # Running.started / .abandoned, across the threads
        self._prewarm: asyncio.Task[None] | None = None
        self.processes = (
            ProcessPool(
                worker_spec,
                max_workers=settings.concurrency,
                max_tasks_per_child=settings.max_tasks_per_child,
            )
            if worker_spec is not None
            else None
        )

    def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.job_loop.start()
        isolated = [d for d in self.registry if d.settings.isolation == "process"]
        if isolated and self.processes is not None:  # the first run need not wait for imports
            self._prewarm = self._loop.create_task(self._prewarm_workers(), name="prewarm")

    async def _prewarm_workers(self) -> None:
        assert self.processes is not None
        try:
            await self.processes.start(prewarm=1)
        except Exception as exc:  # the first process-isolated run will say why, too
            self.log.warning("could not start a worker process ahead of time", error=repr(exc))

    def __len__(self) -> int:
        return len(self.running)

    # --- starting ---------------------------------------------------------------------------

    def start(self, claimed: ClaimedRun) -> None:
        """Start one claimed run (control loop). Never raises for the run's sake."""
        assert self._loop is not None
        definition = self.registry.get(claimed.job_name)
        execution = Execution(claimed, definition, self.pools, self.runner_id)
        in_process = definition is not None and definition.settings.isolation == "process"
        on_job_loop = not in_process and definition is not None and definition.is_async
        running = Running(execution, on_job_loop, in_process)
        self.running[claimed.id] = running
        if in_process:
            assert definition is not None
            running.task = self._loop.create_task(
                self._run_in_process(running, definition), name=f"run-{claimed.id}"
            )
        elif on_job_loop:
            if not self._outbound:
                self._loop.call_soon(self._hand_over)
            self._outbound.append(running)
            timeout = definition.settings.timeout if definition is not None else None
            if timeout is not None:  # counted from the start; `_overdue` moves it there
                wait = max(0.0, claimed.start_mono - time.monotonic()) + timeout + TIMEOUT_MARGIN
                running.deadline = self._loop.call_later(wait, self._overdue, claimed.id, timeout)
        elif definition is not None and definition.settings.timeout is None:
            running.in_thread = True
            call = contextvars.copy_context().run
            try:
                self.threads.call(
                    functools.partial(self._run_in_thread, running, call), claimed.start_mono
                )
            except RuntimeError:  # the pool is shut down (the runner is closing)
                self._finish(claimed.id, execution.outcome("failed", "runner shutting down"))
        else:
            running.task = self._loop.create_task(self._run_here(running), name=f"run-{claimed.id}")

    def _run_in_thread(self, running: Running, call: Callable[..., Any]) -> None:
        """In a job thread: the whole run, then one hop back for all that finish meanwhile."""
        execution = running.execution
        if not self._begin(running):
            return  # ended before its time came (shutdown, lease lost): it never starts
        try:
            outcome = execution.run_in_this_thread(call)
        except Exception as exc:  # a bug of ours must not leave the run `running` forever
            outcome = execution.outcome("failed", f"internal error recording the result: {exc!r}")
        self._thread_outcomes.append((running, outcome))
        if not self.threads.queued:  # else the thread that takes the last one signals
            self._signal_thread_outcomes()

    def _signal_thread_outcomes(self) -> None:
        """Wake the control loop for the outcomes handed back so far, once for all of them:
        while runs of the same instant still wait for a thread, their outcomes wait too, so
        the control loop does not take the GIL from the threads starting them."""
        if self._thread_outcomes and not self._thread_outcomes_signalled:
            self._thread_outcomes_signalled = True
            assert self._loop is not None
            with suppress(RuntimeError):  # the control loop is closed: nothing to record to
                self._loop.call_soon_threadsafe(self._collect_thread_outcomes)

    def _collect_thread_outcomes(self) -> None:
        self._thread_outcomes_signalled = False  # first: a later outcome signals again
        while self._thread_outcomes:
            running, outcome = self._thread_outcomes.popleft()
            if self.running.get(running.execution.claimed.id) is running:
                self._finish(running.execution.claimed.id, outcome)
            # else: aborted, forgotten or timed out already; its late result is not recorded

    async def _run_here(self, running: Running) -> None:
        """A sync job with a timeout (in a job thread) or an unknown one: awaited on the
        control loop."""
        execution = running.execution
        try:
            await _not_before(execution.claimed)
            outcome = await execution.run(self.threads, functools.partial(self._begin, running))
        except NotStarted:
            return  # its outcome was decided before it could start
        except asyncio.CancelledError:
            outcome = execution.outcome("failed", _reason(execution, "cancelled"))
        except Exception as exc:  # a bug of ours must not leave the run `running` forever
            self.log.exception("internal error running a job", run_id=execution.claimed.id)
            outcome = execution.outcome("failed", f"internal error recording the result: {exc!r}")
        self._finish(execution.claimed.id, outcome)

    async def _run_in_process(self, running: Running, definition: JobDefinition) -> None:
        """isolation = "process": in a worker process; its timeout is a hard one there."""
        execution = running.execution
        if self.processes is None:
            outcome = execution.outcome(
                "failed",
                f'job {execution.name!r} has isolation="process", but this runner was started '
                "without import paths for its workers (a background_runner given objects): "
                "pass the app as 'module:attr' strings, or use isolation='thread'",
            )
        else:
            try:
                await _not_before(execution.claimed)
                gate = functools.partial(self._begin, running)
                outcome = await self.processes.run(execution.claimed, definition, gate)
            except NotStarted:
                return  # its outcome was decided while it waited for a worker
            except asyncio.CancelledError:  # shutdown: the pool retires (kills) the worker
                outcome = execution.outcome("failed", _reason(execution, "cancelled"))
        self._finish(execution.claimed.id, outcome)

    def _hand_over(self) -> None:
        batch, self._outbound = self._outbound, []
        self.job_loop.call(self._start_on_job_loop, batch)

    # --- on the job loop ----------------------------------------------------------------

    def _start_on_job_loop(self, batch: list[Running]) -> None:
        loop = asyncio.get_running_loop()
        for running in batch:
            if running.abandoned:  # timed out or cancelled while it waited for this loop
                continue
            running.task = loop.create_task(
                self._run_on_job_loop(running), name=f"run-{running.execution.claimed.id}"
            )

    def _begin(self, running: Running) -> bool:
        """In the run's lane, right before its callable: True if it may start (and it has
        started); False if the control loop decided its outcome first."""
        with self._handover:
            if running.abandoned:
                return False
            running.started = True
            running.started_mono = time.monotonic()
            # The process lane times its own copy of the execution; an outcome written from
            # this side (abort, shutdown) must still say the run started, and when.
            if running.execution.started_mono is None:
                running.execution.started_mono = running.started_mono
            return True

    def _take_back(self, running: Running) -> bool:
        """A run whose callable has not started yet never will: True if so."""
        with self._handover:
            if not running.started:
                running.abandoned = True
            return running.abandoned

    async def _run_on_job_loop(self, running: Running) -> None:
        execution = running.execution
        try:
            await _not_before(execution.claimed)
            outcome = await execution.run(None, functools.partial(self._begin, running))
        except NotStarted:
            return  # timed out, cancelled or forgotten while the loop was busy
        except asyncio.CancelledError:
            outcome = execution.outcome("failed", _reason(execution, "cancelled"))
        except Exception as exc:
            self.log.exception("internal error running a job", run_id=execution.claimed.id)
            outcome = execution.outcome("failed", f"internal error recording the result: {exc!r}")
        self._inbound.append((execution.claimed.id, outcome))
        if not self._inbound_signalled:  # one hop back for all that finish meanwhile
            self._inbound_signalled = True
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._collect)

    # --- back on the control loop -----------------------------------------------------------

    def _collect(self) -> None:
        self._inbound_signalled = False  # first: a later outcome schedules its own collect
        while self._inbound:
            run_id, outcome = self._inbound.popleft()
            self._finish(run_id, outcome)

    def _finish(self, run_id: int, outcome: RunOutcome) -> None:
        running = self.running.pop(run_id, None)
        if running is None:
            self._on_finished(outcome, None)
            return
        self._take_back(running)  # its outcome is decided: if it has not started, it never will
        if running.deadline is not None:
            running.deadline.cancel()
        if running.cancelled_by is not None:
            outcome = cancelled_outcome(outcome, running.cancelled_by)
        self._on_finished(outcome, running.execution.claimed)

    def request_cancel(self, run_id: int, by: str) -> bool:
        """Someone asked to cancel this run: tell it, and end it `cancelled` whatever it
        returns. False if the run is not running here."""
        running = self.running.get(run_id)
        if running is None:
            return False
        if running.cancelled_by is None:
            running.cancelled_by = by
            self.cancel(run_id, f"cancelled by {by}")
            if running.abandoned:  # it had not started: it ends here, now
                self._finish(run_id, running.execution.outcome("cancelled", "before it started"))
        return True

    def _overdue(self, run_id: int, timeout: float) -> None:
        """An async job is past its timeout and has not ended: the job loop is blocked (by
        it, or by another job), so neither its timeout nor a cancel can reach it. Record the
        timeout and free the slot; its late result, if it ever comes, is refused by the
        lease check. The timeout counts from the callable's start: a run that started late
        gets the rest of its time first."""
        running = self.running.get(run_id)
        if running is None:
            return
        assert self._loop is not None
        execution = running.execution
        taken_back = self._take_back(running)
        started = running.started_mono  # set with `started`: final once not taken back
        if not taken_back and started is not None:
            rest = started + timeout + TIMEOUT_MARGIN - time.monotonic()
            if rest > 0:
                running.deadline = self._loop.call_later(rest, self._overdue, run_id, timeout)
                return
        if taken_back:
            message = (
                f"timed out after {timeout:g}s (timeout={timeout:g}) before it could start: "
                "another job blocked the job event loop (see the runner's log)"
            )
        else:
            message = (
                f"timed out after {timeout:g}s (timeout={timeout:g}); the job blocked its "
                "event loop, so it could not be cancelled: use a plain def, asyncio.to_thread "
                'or isolation="process" for blocking code'
            )
        execution.ctx.cancel(f"timed out after {timeout:g}s")
        if not taken_back and running.task is not None:  # at its next await, once it can
            self.job_loop.call(running.task.cancel)
        self.log.warning(
            "run timed out while blocking the job event loop", run_id=run_id, job=execution.name
        )
        running.deadline = None
        self._finish(run_id, execution.outcome("failed", message))

    # --- stopping ---------------------------------------------------------------------------

    def cancel(self, run_id: int, reason: str) -> None:
        """Ask a run to stop: `ctx.cancelled` for all, and a cancelled task for async jobs."""
        running = self.running.get(run_id)
        if running is None:
            return
        running.execution.ctx.cancel(reason)
        if self._take_back(running):
            return  # not started: it never will (whoever cancels it ends it)
        if running.in_process and self.processes is not None:
            self.processes.cancel(run_id, reason)
        elif running.on_job_loop:
            task = running.task
            assert task is not None  # created before its callable could start
            self.job_loop.call(task.cancel)
        # a thread cannot be stopped: a sync job sees ctx.cancelled, and its run is ended
        # by `abort` (or its own return) — the awaiting task is not cancelled here

    async def abort(self, reason: str, wait: float = 1.0) -> None:
        """Stop every running run and record it as failed with `reason` (shutdown after the
        grace period). A sync job's thread cannot be stopped: it is told through
        `ctx.cancelled` and no longer waited for. An async job's task is cancelled on the
        job loop; one that does not end within `wait` seconds (it blocks the loop) is
        recorded here."""
        for running in self.running.values():
            if not running.on_job_loop and running.task is not None:
                # first: the run ends failed even if the job returns now; a worker process
                # is killed
                running.task.cancel()
        for run_id in list(self.running):
            self.cancel(run_id, reason)
        for run_id, running in list(self.running.items()):
            # ends failed now, as an awaiting task's cancel does; an async one that never
            # started never reports (its task stops at the gate), so it is not waited for
            if running.in_thread or (running.abandoned and running.on_job_loop):
                outcome = running.execution.outcome("failed", _reason(running.execution, reason))
                self._finish(run_id, outcome)
        end = time.monotonic() + wait
        while self.running and time.monotonic() < end:
            await asyncio.sleep(0.02)
        for run_id, running in list(self.running.items()):
            self._finish(run_id, running.execution.outcome("failed", reason))

    def forget_all(self, reason: str) -> list[int]:
        """This runner lost its lease: its runs were failed (and maybe retried) elsewhere.
        Tell them to stop and free their slots; a late result is refused by the database."""
        forgotten = list(self.running)
        for run_id in forgotten:
            self.cancel(run_id, reason)
            running = self.running.pop(run_id)
            if running.deadline is not None:
                running.deadline.cancel()
        return forgotten

    async def wait_idle(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while self.running and time.monotonic() < end:
            await asyncio.sleep(0.02)
        return not self.running

    async def close(self) -> None:
        """Stop the worker processes (before this thread ends: they die with the thread that
        started them), close the users' pools where they live and stop the job loop."""
        if self.processes is not None:
            await self.processes.close(grace=1.0)
        try:
            await self.job_loop.run(self.pools.close_async(), timeout=5.0)
        except (TimeoutError, RuntimeError) as exc:
            self.log.warning("job pools not closed", error=repr(exc))
        await asyncio.to_thread(self.pools.close_sync)
        self.job_loop.stop(timeout=2.0)
        self.threads.shutdown(wait=False, cancel_futures=True)


def cancelled_outcome(outcome: RunOutcome, by: str) -> RunOutcome:
    """A run someone cancelled ends `cancelled`, saying who; what the job said stays."""
    said = f"; the job said: {outcome.message}" if outcome.message else ""
    return dataclasses.replace(outcome, status="cancelled", message=f"cancelled by {by}{said}")


async def _not_before(claimed: ClaimedRun) -> None:
    """A tick handed over ahead of its time (`slots.HANDOVER_LEAD`) waits for it here."""
    if (delay := claimed.start_mono - time.monotonic()) > 0:
        await asyncio.sleep(delay)


def _reason(execution: Execution, default: str) -> str:
    return execution.ctx.cancel_reason or default


class LoopWatch(Duty):
    """Names the job that blocks the job loop: a probe is posted to the loop; while it has
    not run, the loop is blocked, and the task the loop is running is the culprit."""

    name = "loop-watch"

    def __init__(self, executor: Executor, threshold: float, log: Any) -> None:
        super().__init__()
        self.executor = executor
        self.threshold = threshold
        self.log = log
        self._posted: float | None = None  # when the outstanding probe was posted
        self._answered: float | None = None  # set on the job loop when the probe runs
        self._culprit: str | None = None  # "job X (run N)", seen while the loop was blocked
        self._warned = False

    async def step(self) -> float | None:
        now = time.monotonic()
        if self._posted is None and not any(r.on_job_loop for r in self.executor.running.values()):
            return min(0.25, self.threshold / 4)  # no async job: nothing can block the loop
        if self._posted is None:
            self._answered = None
            self._posted = now
            self.executor.job_loop.call(self._answer)
        elif self._answered is not None:
            blocked = self._answered - self._posted
            if blocked >= self.threshold:
                self._report_end(blocked)
            self._posted = None
            self._culprit = None
            self._warned = False
        elif now - self._posted >= self.threshold / 2:
            self._culprit = self._culprit or self._current_job()
            if now - self._posted >= self.threshold and not self._warned:
                self._warned = True
                self.log.warning(
                    f"{self._culprit or 'a job'} is blocking the job event loop "
                    f"({now - self._posted:.1f} s so far); async jobs there wait, heartbeats "
                    "do not",
                )
        return min(0.25, self.threshold / 4)

    def _answer(self) -> None:
        self._answered = time.monotonic()

    def _current_job(self) -> str | None:
        task = asyncio.current_task(self.executor.job_loop.loop)
        if task is None or not task.get_name().startswith("run-"):
            return None
        run_id = int(task.get_name().removeprefix("run-"))
        running = self.executor.running.get(run_id)
        name = running.execution.name if running is not None else "?"
        return f"job {name!r} (run {run_id})"

    def _report_end(self, blocked: float) -> None:
        self.log.warning(
            f"{self._culprit or 'a job'} blocked the event loop for {blocked:.1f} s; use a "
            'plain def or asyncio.to_thread for blocking calls (or isolation="process")',
            blocked_seconds=round(blocked, 3),
        )
