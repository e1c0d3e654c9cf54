"""The runner: starts its duties, watches them, and shuts them down in a written order.

The control plane (claiming, heartbeats, the reaper, LISTEN, result writing) runs on an
event loop of its own, in the thread "pgsched-control", with its own connections; user code
never runs there (see `executing`). Duties, by module:

- `claiming.Claimer`: claim due ticks and pending runs; `claiming.GiveBack`: return runs
  held too long;
- `executing.Executor`: run the callables (job loop, job threads, worker processes);
  `executing.LoopWatch`: name a job that blocks the job loop;
- `leases.Heartbeat`, `leases.Reaper`: keep this runner's lease, recover lost runners' runs;
- `results.Results`: the outbox every outcome takes to the database;
- `validating.ScheduleCheck`: validate schedules written by plain SQL;
- `listening.Listener`: LISTEN, to wake the claimer (and the validation, the cancel watch);
- `metrics` (only with a metrics port): the runner's Prometheus metrics, `/healthz` and
  `/readyz`, served from a thread of their own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from types import FrameType
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..connections import ConnectionWatch
from ..errors import ConfigError, DatabaseError, DatabaseUnavailableError
from ..execution import UserPools
from ..isolation import WorkerSpec
from ..logs import RUNNER, get_logger
from ..registry import Registry
from ..runs import ClaimedRun, RunOutcome
from ..settings import RunnerSettings
from ..store import Store
from .claiming import Claimer, GiveBack
from .duty import Backoff, Duty, Health, drive
from .executing import Executor, LoopWatch, cancelled_outcome
from .leases import CancelWatch, Heartbeat, Reaper
from .listening import Listener
from .results import Results
from .slots import Slots
from .validating import ScheduleCheck

if TYPE_CHECKING:
    from .metrics import Probe, RunnerMetrics


def new_runner_id(prefix: str = "") -> str:
    return f"{prefix}{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Runner:
    """One runner process's control plane. `serve()` runs on the control loop."""

    def __init__(
        self,
        store: Store,
        registry: Registry,
        settings: RunnerSettings,
        *,
        runner_id: str | None = None,
        worker_spec: WorkerSpec | None = None,
        log: Any = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.settings = settings
        self.id = runner_id or new_runner_id()
        self.log = log if log is not None else get_logger(RUNNER, runner=self.id)
        self.connections = ConnectionWatch(self.log, self.connections_needed())
        self.pools = UserPools(
            store.dsn,
            max_size=self.job_pool_size,
            kwargs=store.topology.connect_kwargs,
            timeout=settings.job_pool_timeout,
            watch=self.connections,
        )
        self.health = Health(self.log, on_back=self._database_back, needs=self.connections.needs)
        self.results = Results(store, settings, self.log)
        if worker_spec is not None:  # workers log as this runner
            worker_spec = dataclasses.replace(worker_spec, runner_id=self.id)
        self.executor = Executor(
            registry, self.pools, self.id, settings, self._finished, self.log, worker_spec
        )
        self.slots = Slots(settings, self.executor)
        self.claimer = Claimer(
            store, self.id, registry.code_version, settings, self.slots, self.results, self.health
        )
        self.give_back = GiveBack(store, settings, self.slots, self.log)
        self.heartbeat = Heartbeat(store, self.id, settings, self._lease_lost, self.log)
        self.reaper = Reaper(store, self.id, settings, self._known, self.results, self.log)
        self.cancels = CancelWatch(store, self.id, settings, self._cancel)
        self.schedules = ScheduleCheck(store, settings, self.log)
        self.listener = (
            Listener(store, self.claimer, self.cancels, self.schedules) if settings.listen else None
        )
        self.loop_watch = LoopWatch(self.executor, settings.block_warning, self.log)
        self.exit_code = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stop_requested = False  # before the loop exists
        self._tasks: dict[Duty, asyncio.Task[None]] = {}
        self._inline_run: tuple[int, asyncio.Future[RunOutcome]] | None = None
        self._concurrency = settings.concurrency  # as registered: 0 for `jobs run --inline`
        self.ready = threading.Event()  # registered, duties started; cleared when leaving
        self.metrics: RunnerMetrics | None = None  # with a metrics port, while serving

    @property
    def job_pool_size(self) -> int:
        return max(2, self.settings.concurrency)

    def connections_needed(self) -> str:
        """The most connections this runner opens, by pool, from its settings: what the
        server's max_connections (or a CONNECTION LIMIT) must leave room for."""
        store = self.store.pool.max_size
        jobs = self.job_pool_size
        listen = int(self.settings.listen and self.store.topology.listen_dsn is not None)
        return (
            f"up to {store + 2 * jobs + listen} connections: store pool {store}, jobs' pools "
            f"{jobs} (ctx.pool) + {jobs} (ctx.apool, async jobs), LISTEN {listen}"
        )

    # --- what the duties tell each other ---------------------------------------------------

    def _finished(self, outcome: RunOutcome, claimed: ClaimedRun | None) -> None:
        """Every outcome, once; `claimed` is None when its slot was freed already (the run
        was recorded as timed out, or the lease was lost)."""
        self.results.add(outcome)
        inline = self._inline_run
        if inline is not None and inline[0] == outcome.run_id and not inline[1].done():
            inline[1].set_result(outcome)
        if claimed is not None:
            if self.metrics is not None:
                self.metrics.run_finished(outcome, claimed)
            self.slots.fill_soon()
            self.claimer.wake()

    def _known(self) -> list[int]:
        return [*self.slots.known(), *self.results.pending_ids()]

    async def _lease_lost(self) -> None:
        """Another runner already failed (and maybe retried) our runs: stop them, free their
        slots, and let their late results be refused by the lease check."""
        self.executor.forget_all("lease lost: this runner was declared dead")
        self.slots.forget_all()
        await self._register_once()
        self.claimer.wake()  # all slots free: nothing else may wake it (no LISTEN)

    async def _cancel(self, run_id: int, by: str) -> None:
        """Someone asked to cancel a run this runner holds: a running one is told and ends
        `cancelled`; one not started yet (prefetched, or a tick claimed ahead) ends now."""
        if self.executor.request_cancel(run_id, by):
            return
        if (claimed := self.slots.take(run_id)) is not None:
            outcome = RunOutcome(claimed.id, claimed.lease, "cancelled", None, None)
            self.results.add(cancelled_outcome(outcome, by))

    def _database_back(self) -> None:
        self.claimer.ticks_changed()
        self.results.wake()

    # --- lifecycle --------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop gracefully; safe from any thread (a signal handler, the host application)."""
        self._stop_requested = True
        if self._loop is not None and self._stop is not None:
            with suppress(RuntimeError):  # the loop is closed: the runner has stopped already
                self._loop.call_soon_threadsafe(self._stop.set)

    def _fail(self, reason: str) -> None:
        self.log.error("runner stopping: a duty keeps failing", reason=reason)
        self.exit_code = 1
        assert self._stop is not None
        self._stop.set()

    async def serve(self) -> int:
        """Register, run the duties until stopped, shut down; returns the exit code."""
        with self._metrics_served():
            return await self._serve()

    async def _serve(self) -> int:
        async with self._started(concurrency=self.settings.concurrency) as started:
            if not started:
                return self.exit_code
            self.log.info(
                "runner started",
                concurrency=self.settings.concurrency,
                jobs=len(self.registry),
                listen=self.settings.listen,
                connections=self.connections.needs,
            )
            self._drive(
                self.claimer,
                self.give_back,
                self.reaper,
                self.loop_watch,
                self.cancels,
                self.schedules,
            )
            if self.listener is not None:
                self._drive(self.listener)
            assert self._stop is not None
            await self._stop.wait()
            await self._shutdown()
        self.log.info("runner stopped")
        return self.exit_code

    async def serve_one(self, job_name: str, params: dict[str, Any]) -> int:
        """`jobs run --inline`: record one run of `job_name` owned by this process and
        execute it here, through the same executor and result path as any run; returns
        its id. A stop request (Ctrl-C) ends it as failed."""
        async with self._started(concurrency=0) as started:
            if not started:
                raise DatabaseUnavailableError("stopped before the database answered")
            self._drive(self.cancels)  # `jobs cancel` reaches an inline run too
            claimed = await self.store.insert_inline_run(job_name, params, self.id)
            done: asyncio.Future[RunOutcome] = asyncio.get_running_loop().create_future()
            self._inline_run = (claimed.id, done)
            self.executor.start(claimed)
            assert self._stop is not None
            waiters: list[asyncio.Future[Any]] = [done, asyncio.ensure_future(self._stop.wait())]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            waiters[1].cancel()
            if not done.done():
                await self.executor.abort("interrupted: the command was stopped")
            await self._stop_duties(self.results)
            await self.results.write_all(within=30.0)
        return claimed.id

    @contextmanager
    def _metrics_served(self) -> Iterator[None]:
        """With `metrics_port`: /metrics, /healthz and /readyz while the runner serves."""
        port = self.settings.metrics_port
        if port is None:
            yield
            return
        try:
            from .metrics import MetricsServer, RunnerMetrics
        except ImportError as exc:
            raise ConfigError(
                f"--metrics-port needs prometheus_client ({exc.name} is missing): "
                "pip install 'pgsched[web]', or leave the metrics port unset"
            ) from exc
        metrics = RunnerMetrics(
            heartbeat_age=self._heartbeat_age,
            running=lambda: len(self.executor.running),
            slots=lambda: self._concurrency,
        )
        server = MetricsServer(
            metrics, self.settings.metrics_bind, port, healthz=self.healthz, readyz=self.readyz
        )
        self.metrics = metrics
        self.claimer.on_round = metrics.claim_round
        self.health.on_down = metrics.database_error
        server.start()
        host, bound = server.address
        self.log.info("serving metrics", url=f"http://{host}:{bound}/metrics")
        try:
            yield
        finally:
            server.stop()

    def _heartbeat_age(self) -> float | None:
        last = self.heartbeat.last_beat
        return None if last is None else time.monotonic() - last

    def healthz(self) -> Probe:
        """Live: the heartbeat duty wrote a heartbeat within the lease timeout."""
        from .metrics import heartbeat_probe

        return heartbeat_probe(self.heartbeat.last_beat, self.settings.lease_timeout)

    def readyz(self) -> Probe:
        """Ready: registered, the database answers, and not shutting down."""
        from .metrics import Probe

        if not self.ready.is_set():
            why = "" if self.health.error is None else f": {self.health.error}"
            return Probe(False, f"not registered in the runners table (yet, or any more){why}")
        if not self.health.up:
            return Probe(False, f"the database is unavailable: {self.health.error}")
        if self.heartbeat.stopping:
            return Probe(False, "shutting down")
        if (problem := self.connections.problem) is not None:
            return Probe(False, problem)
        return Probe(True, f"registered as {self.id}")

    def _drive(self, *duties: Duty) -> None:
        for duty in duties:
            self._tasks[duty] = asyncio.create_task(
                drive(duty, self.health, self.log, self._fail), name=f"duty-{duty.name}"
            )

    async def _stop_duties(self, *duties: Duty) -> None:
        """Stop duties: each finishes its step (a claim in flight commits and its runs are
        taken in), then their tasks end; one that does not within 5 s is cancelled."""
        tasks = []
        for duty in duties:
            duty.stop()
            if (task := self._tasks.pop(duty, None)) is not None:
                tasks.append(task)
                if duty.interruptible:
                    task.cancel()
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=5.0)
        for task in late:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _register_once(self) -> None:
        adopted = await self.store.register_runner(
            self.id,
            socket.gethostname(),
            os.getpid(),
            self._concurrency,
            __version__,
            self.registry,
        )
        if adopted:
            self.log.info(
                "jobs no longer orphaned: this runner's code defines them",
                jobs=adopted[:20],
                count=len(adopted),
            )

    @asynccontextmanager
    async def _started(self, concurrency: int) -> AsyncIterator[bool]:
        try:
            yield await self._start(concurrency)
        finally:
            await self._finish_up()

    async def _start(self, concurrency: int) -> bool:
        """Open the store, register (retrying while the database is away), start the
        executor, the heartbeat and the result writer. False if stopped before that."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self._stop_requested:
            self._stop.set()
        self._concurrency = concurrency
        await self.store.open(wait=False)
        backoff = Backoff()
        while not self._stop.is_set():
            try:
                await self._register_once()
                break
            except DatabaseUnavailableError as exc:
                self.health.down(exc, "register")
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), backoff.next())
        else:
            return False
        self.health.back()
        try:
            for conflict in await self.store.setting_conflicts():
                self.log.warning("server setting conflicts with pgsched", problem=conflict)
        except DatabaseError as exc:  # a check only: the duties report the database
            self.log.warning("could not read the server's settings", error=str(exc))
        self.executor.open()
        self._drive(self.heartbeat, self.results)
        self.ready.set()
        return True

    async def _shutdown(self) -> None:
        """The written order: no new claims; running jobs finish within the grace period
        (prefetched runs still start as slots free); what never started goes back; what
        still runs is stopped and recorded; the other duties stop; then the results are
        written and the runner leaves the table."""
        grace = self.settings.grace_period
        self.log.info(
            "stop requested: no new claims, finishing running jobs",
            running=len(self.executor),
            grace_period=grace,
        )
        self.heartbeat.stopping = True
        self.heartbeat.wake()
        await self._stop_duties(self.claimer)
        deadline = time.monotonic() + grace
        while (self.executor.running or self.slots.prefetched) and time.monotonic() < deadline:
            await self.executor.wait_idle(min(0.1, max(0.0, deadline - time.monotonic())))
        try:
            await self.give_back.give_back_all()
        except DatabaseError as exc:
            self.log.warning(
                "could not give back unstarted runs; leases recover them", error=str(exc)
            )
        await self.executor.abort(f"shutdown: still running after the grace period ({grace:g}s)")
        duties = (
            self.listener,
            self.give_back,
            self.reaper,
            self.loop_watch,
            self.cancels,
            self.schedules,
        )
        others = [d for d in duties if d]
        await self._stop_duties(*others)
        await self._stop_duties(self.results)
        await self.results.write_all(within=30.0)

    async def _finish_up(self) -> None:
        """Whatever happened: stop every duty, leave the runners table, close everything."""
        await self._stop_duties(*list(self._tasks))
        self.ready.clear()
        if self.executor.job_loop.loop.is_running():
            await self.executor.close()  # worker processes it ends report here: write them
        if self.results.outbox:
            await self.results.write_all(within=5.0)
        try:
            orphaned = await asyncio.wait_for(
                self.store.unregister_runner(self.id, self.settings.lease_timeout), 5
            )
            if orphaned:
                self.log.warning(
                    "jobs orphaned: no live runner defines them any more (this was the last "
                    "runner of its code); their pending runs wait for code that does",
                    jobs=orphaned[:20],
                    count=len(orphaned),
                )
        except (DatabaseError, TimeoutError) as exc:
            self.log.warning("could not unregister; the lease will expire", error=str(exc))
        await self.store.close()


class ControlThread(threading.Thread):
    """Runs a coroutine of the runner on a fresh event loop in a thread of its own, and
    hands its result (or exception) back to whoever joins it."""

    def __init__(self, coro: Any) -> None:
        super().__init__(name="pgsched-control", daemon=True)
        self._coro = coro
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = asyncio.run(self._coro)
        except BaseException as exc:
            self.error = exc

    def wait(self) -> Any:
        while self.is_alive():
            self.join(0.2)  # a short join: signal handlers run in the main thread meanwhile
        if self.error is not None:
            raise self.error
        return self.result


def run_in_control_thread(runner: Runner, coro: Any) -> Any:
    """Run `coro` (a method of `runner`) on the control thread; the first SIGTERM/SIGINT asks
    the runner to stop gracefully, a second one exits at once (leases recover the rest)."""
    signals = 0

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            runner.log.warning("second signal: exiting now; leases will recover running runs")
            sys.stderr.flush()
            os._exit(1)
        runner.request_stop()

    thread = ControlThread(coro)
    main = threading.current_thread() is threading.main_thread()
    previous = (
        {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)} if main else {}
    )
    try:
        thread.start()
        return thread.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_runner(
    store: Store,
    registry: Registry,
    settings: RunnerSettings,
    worker_spec: WorkerSpec | None = None,
) -> int:
    """`pgsched runner`: serve until SIGTERM/SIGINT; returns the process exit code."""
    # Everything loaded so far (modules, definitions) lives as long as the process: move it
    # out of the collector's sight, or each full collection walks all of it and stalls the
    # control loop for 20-60 ms, starting ticks that late (measured in bench/).
    gc.freeze()
    runner = Runner(store, registry, settings, worker_spec=worker_spec)
    code: int = run_in_control_thread(runner, runner.serve())
    leave_without_leaked_threads(code, runner.log)
    return code


def run_inline(
    store: Store,
    registry: Registry,
    settings: RunnerSettings,
    job_name: str,
    params: dict[str, Any],
    worker_spec: WorkerSpec | None = None,
) -> int:
    """`pgsched jobs run --inline`: the run's id, once its result is written."""
    runner = Runner(
        store, registry, settings, runner_id=new_runner_id("cli:"), worker_spec=worker_spec
    )
    run_id: int = run_in_control_thread(runner, runner.serve_one(job_name, params))
    return run_id


def leave_without_leaked_threads(code: int, log: Any) -> None:
    """Threads that would keep the interpreter alive at exit, past the grace period: ones a
    job leaked (non-daemon), and job threads that ignored cancellation (their runs are
    already recorded; daemons, but a daemon still running Python code while the interpreter
    finalizes may crash it or hang). Give them a moment, then leave without them."""

    def blocking_exit() -> list[threading.Thread]:
        return [
            t
            for t in threading.enumerate()
            if t is not threading.current_thread()
            and t.is_alive()
            and (not t.daemon or t.name.startswith("pgsched-job"))
        ]

    deadline = time.monotonic() + 1.0
    for thread in blocking_exit():
        thread.join(max(0.0, deadline - time.monotonic()))
    if stuck := [t.name for t in blocking_exit()]:
        log.warning("exiting with threads of jobs still running", threads=stuck)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
