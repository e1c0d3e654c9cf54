"""Jobs with `isolation = "process"`: run in reusable worker processes that can be killed.

A thread cannot be killed, and a C call that keeps the GIL stops every thread of its process,
heartbeats included. A worker process (`pgsched.worker`) can be: the job's `timeout` is a hard
timeout here, and whatever ends a worker (`os._exit`, a signal, a segfault, the OOM killer)
ends its run as `failed`, saying what happened, while the runner goes on serving.

`ProcessPool` is driven from the runner's asyncio loop and never blocks it: pipes are read and
written through the loop, processes are awaited with asyncio's subprocess support. Timing
fields stay on the database clock as in `Execution`: both sides anchor `time.monotonic()` at
the claim, and CLOCK_MONOTONIC is one clock for all processes of a Linux host, so the worker's
readings are valid here.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import signal
import site
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .execution import Execution, NotStarted, UserPools
from .logs import RELAY, RUNNER, get_logger, host_levels, owned, replay
from .registry import JobDefinition
from .runs import ClaimedRun, RunOutcome
from .worker import (
    HEADER_SIZE,
    Message,
    claimed_to_wire,
    decode,
    decode_length,
    encode,
    outcome_from_wire,
)

__all__ = ["HARD_TIMEOUT_MARGIN", "ProcessPool", "WorkerSpec", "WorkerStartError"]

HARD_TIMEOUT_MARGIN = 0.5  # seconds the worker's own (soft) timeout gets before SIGKILL
_EXIT_WAIT = 5.0  # seconds a worker told to go (its pipe closed) gets before SIGKILL
_LAST_WORDS_WAIT = 0.5  # seconds to read what a worker wrote just before it ended
_STDERR_WAIT = 1.0  # seconds to collect a dead worker's last stderr (a grandchild may hold it)
_STDERR_TAIL_BYTES = 8192
_STDERR_TAIL_LINES = 40


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker imports: the same app, profile and database as its runner."""

    apps: tuple[str, ...]  # --app specs
    profile_path: str | None
    dsn: str
    schema: str
    runner_id: str
    log_level: str = "info"
    log_json: bool | None = None  # None: JSON unless this process's stderr is a terminal
    connect_kwargs: Mapping[str, Any] = field(default_factory=dict)  # Topology.connect_kwargs


class WorkerStartError(Exception):
    """A worker process could not start or could not import the app; the message says why."""

    def __init__(self, message: str, error: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.error = error


def describe_exit(returncode: int) -> str:
    """'exited with code 3', 'killed by SIGKILL (signal 9)' (negative codes are signals)."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        return f"killed by signal {-returncode}"
    return f"killed by {name} (signal {-returncode})"


class _Worker:
    """One worker process: its pipes, the tail of its stderr, how many runs it served."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        messages: _ReadEnd,
        writer: asyncio.WriteTransport,
        stderr: _ReadEnd,
    ) -> None:
        self.proc = proc
        self.reader, self.reading = messages
        self.writer = writer
        self.stderr, self.stderr_reading = stderr
        self.runs_served = 0
        self.killed_because: str | None = None
        self._tail = bytearray()
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.relay = None if owned() else _Relay()  # a guest's worker sends its log records
        self._stderr = asyncio.create_task(self._forward_stderr())
        # One waiter for the worker's life: asyncio keeps each cancelled proc.wait() waiter
        # until the process ends, so a waiter per run would grow for as long as it serves.
        self._exited = asyncio.ensure_future(proc.wait())

    async def handshake(self, spec: WorkerSpec, timeout: float) -> None:
        """Wait until it has imported the app and said `ready`; else WorkerStartError (and no
        process left behind, whatever interrupted the start)."""
        try:
            self.send(_start_message(spec, relay=self.relay is not None))
            try:
                async with asyncio.timeout(timeout):
                    message = await self.receive()
            except TimeoutError:
                raise WorkerStartError(
                    f"the worker process (pid {self.proc.pid}) was not ready within "
                    f"{timeout:g}s (importing the app); it was killed"
                ) from None
            if message is not None and message["type"] == "ready":
                return
            if message is not None and message["type"] == "broken":
                await self.ended()
                raise WorkerStartError(message["message"], message.get("error"))
            self.kill()
            how = await self.ended()
            summary = f"the worker process {how} before it was ready{self.because}"
            raise WorkerStartError(summary, self.death_error(summary))
        except BaseException:
            self.abandon()
            raise

    @classmethod
    async def spawn(cls) -> _Worker:
        """A new worker process; it has imported nothing yet (see `handshake`)."""
        if not sys.executable or getattr(sys, "frozen", False):
            raise WorkerStartError(
                "process isolation needs a Python interpreter to start workers with, and this "
                f"process has none (sys.executable={sys.executable!r}, a frozen app?); "
                "use isolation = 'thread' here"
            )
        # Our own pipes, stderr's too: asyncio's Process.wait() waits for the pipes it made to
        # close, and a grandchild the job forked may hold them open long after the worker died.
        to_child, ours_out = os.pipe()
        ours_in, from_child = os.pipe()
        ours_err, child_err = os.pipe()
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-P",  # not the working directory's modules (the start message names sys.path)
                "-m",
                "pgsched.worker",
                f"--read-fd={to_child}",
                f"--write-fd={from_child}",
                f"--parent-pid={os.getpid()}",
                stdin=subprocess.DEVNULL,  # stdout is inherited: a job's prints reach ours
                stderr=child_err,  # forwarded to ours, its tail kept for a death notice
                pass_fds=(to_child, from_child),
                env=_worker_env(),
            )
        except OSError as exc:
            for fd in (ours_out, ours_in, ours_err):
                os.close(fd)
            raise WorkerStartError(f"could not start a worker ({sys.executable}): {exc}") from exc
        finally:
            for fd in (to_child, from_child, child_err):
                os.close(fd)
        reader, reading = await _read_end(ours_in)
        stderr, stderr_reading = await _read_end(ours_err)
        writer, _ = await asyncio.get_running_loop().connect_write_pipe(
            asyncio.Protocol, os.fdopen(ours_out, "wb", buffering=0)
        )
        return cls(proc, (reader, reading), writer, (stderr, stderr_reading))

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None and not self.reader.at_eof()

    def send(self, message: Message) -> None:
        """Buffered by the loop's transport: never blocks, even on a worker frozen in C."""
        if not self.writer.is_closing():
            self.writer.write(encode(message))

    async def receive(self) -> Message | None:
        """The next message, or None once the worker has ended (or sent garbage).

        The end of the process is watched, not only the pipe's: a grandchild the job forked
        holds the pipe open after the worker itself died."""
        reading = asyncio.ensure_future(self._read_message())
        try:
            await asyncio.wait({reading, self._exited}, return_when=asyncio.FIRST_COMPLETED)
            if not reading.done():  # ended: what it wrote before is in the pipe already
                await asyncio.wait({reading}, timeout=_LAST_WORDS_WAIT)
            return reading.result() if reading.done() else None
        finally:
            reading.cancel()

    async def _read_message(self) -> Message | None:
        try:
            header = await self.reader.readexactly(HEADER_SIZE)
            return decode(await self.reader.readexactly(decode_length(header)))
        except asyncio.IncompleteReadError:
            return None
        except ValueError as exc:  # the job wrote to our file descriptor
            self.killed_because = f"it sent the runner an unreadable message ({exc})"
            self.kill()
            return None

    def begin_run(self) -> None:
        self._tail.clear()  # stderr before this run is not this run's story

    def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # ended in the meantime
                self.proc.kill()

    async def ended(self, grace: float = _EXIT_WAIT) -> str:
        """Wait for the end (SIGKILL after `grace`), then say how it ended ('exited with code
        3'); `because` says why, when we killed it."""
        await asyncio.wait({self._exited}, timeout=grace)
        if not self._exited.done():  # its pipe closed but it lives on (it closed descriptors)
            self.killed_because = self.killed_because or "it stopped answering the runner"
            self.kill()
            await self._exited
        try:
            async with asyncio.timeout(_STDERR_WAIT):
                await asyncio.shield(self._stderr)
        except TimeoutError:
            pass
        assert self.proc.returncode is not None
        return describe_exit(self.proc.returncode)

    @property
    def because(self) -> str:
        """': why we killed it', when we did."""
        return f": {self.killed_because}" if self.killed_because else ""

    def abandon(self) -> None:
        """Kill it and drop its pipes without waiting (asyncio's child watcher reaps it)."""
        self.kill()
        self.writer.close()
        self.reading.close()
        self.stderr_reading.close()
        self._stderr.cancel()

    async def close(self) -> None:
        """Ask it to go (its pipe closes, it exits), kill it if it does not, reap it."""
        self.writer.close()
        await self.ended()
        self._stderr.cancel()
        self.reading.close()  # normally closed at EOF already; not while a grandchild lives
        self.stderr_reading.close()

    def stderr_tail(self) -> str | None:
        text = self._tail.decode(errors="replace").strip()
        return "\n".join(text.splitlines()[-_STDERR_TAIL_LINES:]) or None

    def death_error(self, summary: str) -> dict[str, Any]:
        """The run's `error`: what happened, and the worker's last stderr lines (a segfault's
        Python traceback, from faulthandler) where the tracebacks of raised errors go."""
        error = {"type": "pgsched.WorkerDied", "message": summary}
        tail = self.stderr_tail()
        if tail is not None:
            error["traceback"] = f"the worker's last lines on stderr:\n{tail}"
        return error

    async def _forward_stderr(self) -> None:
        while chunk := await self.stderr.read(65536):
            text = self._decoder.decode(chunk)
            if self.relay is None:
                self._tail += chunk
            else:  # its records go to the host's logging, the rest on as before
                text, told = self.relay.feed(text)
                self._tail += told.encode()
            del self._tail[:-_STDERR_TAIL_BYTES]
            self._pass_on(text)
        if self.relay is not None:
            rest = self.relay.rest()
            self._tail += rest.encode()
            self._pass_on(rest)

    @staticmethod
    def _pass_on(text: str) -> None:
        if text:
            with contextlib.suppress(OSError, ValueError):  # ours is gone: keep draining theirs
                sys.stderr.write(text)
                sys.stderr.flush()


class _Relay:
    """A guest runner's worker's stderr, split: its RELAY lines are log records for the host's
    `logging` (pgsched.logs.replay), everything else (a job's own writes, a crash's traceback)
    passes on as it came, without waiting for the end of its line."""

    def __init__(self) -> None:
        self._held = ""  # the start of a line that may be a record
        self._in_line = False  # the text so far ended mid-line, in a line that is no record

    def feed(self, text: str) -> tuple[str, str]:
        """What to pass on, and what to keep for a death notice: the same, with each relayed
        record's message where the record was."""
        passed: list[str] = []
        told: list[str] = []
        held = self._held + text
        while held:
            if self._in_line:
                end = held.find("\n") + 1 or len(held)
                piece, held = held[:end], held[end:]
                passed.append(piece)
                told.append(piece)
                self._in_line = not piece.endswith("\n")
            elif held.startswith(RELAY):
                end = held.find("\n") + 1
                if not end:
                    break  # the rest of the record is still coming
                line, held = held[:end], held[end:]
                message = replay(line)
                if message is None:  # not one after all
                    passed.append(line)
                told.append(line if message is None else message + "\n")
            elif RELAY.startswith(held):
                break  # a record's first characters, perhaps
            else:
                self._in_line = True
        self._held = held
        return "".join(passed), "".join(told)

    def rest(self) -> str:
        """At the end: what was held back, as it came."""
        held, self._held = self._held, ""
        return held


_ReadEnd = tuple[asyncio.StreamReader, asyncio.ReadTransport]


async def _read_end(fd: int) -> _ReadEnd:
    reader = asyncio.StreamReader()
    transport, _ = await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
    )
    return reader, transport


def _start_message(spec: WorkerSpec, relay: bool = False) -> Message:
    """`relay`: the worker sends its log records here (`log_levels`, the host's levels),
    instead of printing lines of its own."""
    log_json = spec.log_json if spec.log_json is not None else not sys.stderr.isatty()
    message: Message = {
        "type": "start",
        "apps": list(spec.apps),
        "profile_path": spec.profile_path,
        "dsn": spec.dsn,  # through the pipe: not on a command line that `ps` shows
        "schema": spec.schema,
        "runner_id": spec.runner_id,
        "log_level": spec.log_level,
        "log_json": log_json,
        "connect_kwargs": dict(spec.connect_kwargs),
        "sys_path": list(sys.path),
    }
    if relay:
        message["log_levels"] = host_levels()
    return message


def _outcome_of(message: Message | None, claimed: ClaimedRun) -> RunOutcome | None:
    """The run's outcome if that is what the worker sent (for this run, under its lease)."""
    if message is None or message["type"] != "outcome":
        return None
    try:
        outcome = outcome_from_wire(message["outcome"])
    except (KeyError, TypeError):
        return None
    if (outcome.run_id, outcome.lease) != (claimed.id, claimed.lease):
        return None
    return outcome


class ProcessPool:
    """Worker processes for process-isolated runs, at most `max_workers` at a time.

    Idle workers are kept for the next run and replaced after `max_tasks_per_child` runs
    (None: never). `start` is optional: without it, workers start with the first runs.
    """

    def __init__(
        self,
        spec: WorkerSpec,
        *,
        max_workers: int,
        max_tasks_per_child: int | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, not {max_workers}")
        if max_tasks_per_child is not None and max_tasks_per_child < 1:
            raise ValueError(f"max_tasks_per_child must be at least 1, not {max_tasks_per_child}")
        self.spec = spec
        self.max_workers = max_workers
        self.max_tasks_per_child = max_tasks_per_child
        self.start_timeout = start_timeout
        self._slots = asyncio.Semaphore(max_workers)
        self._idle: list[_Worker] = []
        self._runs: dict[int, _Worker | None] = {}  # run id -> its worker (None: waiting)
        self._cancels: dict[int, str] = {}  # run id -> why it was cancelled
        self._drained = asyncio.Event()
        self._drained.set()
        self._starting: set[_Worker] = set()
        self._retiring: set[asyncio.Task[None]] = set()
        self._closing = False
        self._log = get_logger(RUNNER, runner=spec.runner_id)
        self._outcome_pools = UserPools(spec.dsn)  # never opened: here Execution only reports

    async def start(self, prewarm: int = 0) -> None:
        """Start up to `prewarm` idle workers now, so the first runs do not wait for imports.
        A worker that cannot start is logged; runs will report it too."""
        count = min(prewarm, self.max_workers)
        started = await asyncio.gather(
            *(self._start_worker() for _ in range(count)), return_exceptions=True
        )
        for worker in started:
            if isinstance(worker, _Worker):
                self._idle.append(worker)
            elif isinstance(worker, WorkerStartError):
                self._log.warning("worker process could not start", problem=str(worker))
            else:
                raise worker

    async def run(
        self,
        claimed: ClaimedRun,
        definition: JobDefinition | None,
        gate: Callable[[], bool] | None = None,
    ) -> RunOutcome:
        """Execute in a worker; whatever the job or its worker does, the answer is an outcome.
        `gate` is asked once a worker is ready, right before the run is sent to it: False
        raises `NotStarted` (its outcome was decided while it waited for the worker).

        Cancelling this coroutine (a runner that stops waiting) retires the worker."""
        execution = Execution(claimed, definition, self._outcome_pools, self.spec.runner_id)
        if definition is None:
            return await execution.run(None)  # fails at once, naming the job no code defines
        self._runs[claimed.id] = None
        self._drained.clear()
        try:
            async with self._slots:
                return await self._run_in_slot(execution, gate)
        finally:
            self._runs.pop(claimed.id, None)
            self._cancels.pop(claimed.id, None)
            if not self._runs:
                self._drained.set()

    def cancel(self, run_id: int, reason: str) -> None:
        """Tell the run's job (`ctx.cancelled`, `ctx.cancel_reason`); a run still waiting for
        a worker is told as soon as it has one. Unknown run ids are ignored."""
        if run_id not in self._runs:
            return
        self._cancels[run_id] = reason  # for a worker that takes the run later
        worker = self._runs[run_id]
        if worker is not None:
            worker.send({"type": "cancel", "run_id": run_id, "reason": reason})

    async def close(self, grace: float) -> None:
        """Idle workers exit now; busy ones get `grace` seconds to finish, then SIGKILL (their
        runs end `failed`, saying so). Runs asked for from now on fail without starting."""
        self._closing = True
        idle, self._idle = self._idle, []
        for idler in idle:
            self._retire(idler)
        try:
            async with asyncio.timeout(grace):
                await self._drained.wait()
        except TimeoutError:
            busy = [w for w in self._runs.values() if w is not None]
            for worker in [*busy, *self._starting]:
                worker.killed_because = f"the runner shut down (grace of {grace:g}s)"
                worker.kill()
            await self._drained.wait()  # each run reports its killed worker at once
        await asyncio.gather(*self._retiring, return_exceptions=True)

    async def _run_in_slot(
        self, execution: Execution, gate: Callable[[], bool] | None
    ) -> RunOutcome:
        while not self._closing:
            try:
                worker = await self._take()
            except WorkerStartError as exc:
                execution.log.warning("worker process could not start", problem=str(exc))
                return execution.outcome(
                    "failed", f"worker process could not start: {exc}", error=exc.error
                )
            if self._closing:  # closed while this worker was starting
                self._retire(worker)
                break
            if gate is not None and not gate():
                self._give_back(worker, keep=True)
                raise NotStarted
            keep = False
            try:
                outcome, keep = await self._serve(worker, execution)
            finally:
                self._give_back(worker, keep)
            if outcome is not None:
                return outcome
            # A reused worker that had ended while idle (the OOM killer picks big idle
            # processes): the job never started, so it is handed to another worker.
        return execution.outcome("failed", "not started: the runner is shutting down")

    async def _take(self) -> _Worker:
        while self._idle:
            worker = self._idle.pop()  # the most recently used: its caches are warm
            if worker.alive:
                return worker
            self._retire(worker)  # seen dead while idle: reap it
        return await self._start_worker()

    async def _start_worker(self) -> _Worker:
        worker = await _Worker.spawn()
        self._starting.add(worker)  # for close(), which ends starts as it ends runs
        try:
            await worker.handshake(self.spec, self.start_timeout)
        finally:
            self._starting.discard(worker)
        return worker

    async def _serve(self, worker: _Worker, execution: Execution) -> tuple[RunOutcome | None, bool]:
        """The outcome (None: a reused worker was gone before it took the run), and whether
        the worker may serve again."""
        claimed = execution.claimed
        assert execution.definition is not None
        timeout = execution.definition.settings.timeout
        self._runs[claimed.id] = worker
        worker.begin_run()
        execution.started_mono = time.monotonic()
        worker.send({"type": "run", "run": claimed_to_wire(claimed)})
        reason = self._cancels.get(claimed.id)
        if reason is not None:
            worker.send({"type": "cancel", "run_id": claimed.id, "reason": reason})
        try:
            async with asyncio.timeout(None if timeout is None else timeout + HARD_TIMEOUT_MARGIN):
                message = await worker.receive()
                if message is None and worker.runs_served > 0:
                    how = await worker.ended()
                    execution.log.warning("idle worker process had ended; trying another", how=how)
                    return None, False
                if message is not None and message["type"] == "started":
                    message = await worker.receive()
        except TimeoutError:
            assert timeout is not None
            return await self._hard_timeout(worker, execution, timeout), False
        outcome = _outcome_of(message, claimed)
        if outcome is None:
            return await self._died(worker, execution, message), False
        worker.runs_served += 1
        assert message is not None
        return outcome, not message.get("retire", False)

    async def _hard_timeout(
        self, worker: _Worker, execution: Execution, timeout: float
    ) -> RunOutcome:
        worker.kill()
        await worker.ended()
        execution.log.warning("run timed out; worker process killed", timeout=timeout)
        message = f"timed out after {timeout:g}s: worker process killed"
        return execution.outcome("failed", message, error=worker.death_error(message))

    async def _died(
        self, worker: _Worker, execution: Execution, message: Message | None
    ) -> RunOutcome:
        if message is not None:  # a worker that breaks the protocol is not trusted again
            worker.killed_because = f"it sent {message['type']!r} instead of this run's outcome"
            worker.kill()
        how = await worker.ended()
        summary = f"worker process {how}{worker.because}"
        execution.log.warning("worker process died during a run", how=summary)
        return execution.outcome("failed", summary, error=worker.death_error(summary))

    def _give_back(self, worker: _Worker, keep: bool) -> None:
        spent = (
            self.max_tasks_per_child is not None and worker.runs_served >= self.max_tasks_per_child
        )
        if keep and worker.alive and not spent and not self._closing:
            self._idle.append(worker)
        else:
            self._retire(worker)

    def _retire(self, worker: _Worker) -> None:
        task = asyncio.create_task(worker.close())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)


def _worker_env() -> dict[str, str]:
    """This very pgsched for the worker: its folder goes on PYTHONPATH unless it is a
    site-packages folder (which a new interpreter finds anyway, after the standard library)."""
    package_root = str(Path(__file__).resolve().parent.parent)
    sites = {str(Path(p).resolve()) for p in [*site.getsitepackages(), site.getusersitepackages()]}
    if package_root in sites:
        return dict(os.environ)
    paths = [package_root, os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
