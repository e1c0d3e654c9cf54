"""A worker process for jobs with `isolation = "process"`, and the wire format it speaks.

The worker is this module run as `python -P -m pgsched.worker` by `pgsched.isolation`: a plain
interpreter, not a multiprocessing child (spawn would re-import the parent's `__main__`, and
fork would copy a runner's threads, pools and locks mid-use). It builds the runner's registry
once, then serves runs one at a time with the same `Execution` as the runner's own threads, so
an outcome reads the same whichever way its job ran.

The protocol runs over two pipes handed over with `pass_fds`, never stdin/stdout: a job's
prints go to the inherited stdout and cannot corrupt it. Each message is a 4-byte big-endian
length and a UTF-8 JSON object with a `type`:

- parent → worker: `start` (once: what to import), `run` (a ClaimedRun), `cancel` (run_id,
  reason: sets `ctx.cancel(reason)`, handled by a reader thread while the job runs);
- worker → parent: `ready` (imports done) or `broken` (they failed: message, error); per run,
  `started` (it took the run: a reused worker that ended while idle is told apart from a job
  that killed it) and `outcome` (the RunOutcome fields, and `retire` when the worker must not
  serve again).

Logs: a `pgsched runner`'s worker prints its own lines (`log_level`, `log_json`); a guest
runner's (`log_levels` in `start`) writes its log records to stderr as `pgsched-record:` lines,
which the runner hands to the host's `logging` (pgsched.logs.relay_logging, replay).

When the parent's pipe closes (the parent closed it, or died) the worker exits at once; on
Linux it also asks the kernel for SIGKILL when the parent dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import faulthandler
import json
import os
import queue
import signal
import struct
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import IO, Any, NoReturn

from .errors import PgschedError
from .execution import Execution, UserPools, error_info
from .housekeeping import builtin_extension
from .logs import configure_logging, relay_logging
from .profile import profile_from_env
from .registry import Registry, build_registry, discover
from .runs import ClaimedRun, RunOutcome

Message = dict[str, Any]

_HEADER = struct.Struct(">I")
MAX_MESSAGE_BYTES = 256 * 1024 * 1024  # a sanity bound: a length beyond it is a corrupt stream
BROKEN_EXIT_CODE = 2  # the worker could not import the app (it said why in `broken` first)


# --- the wire format (both sides) ------------------------------------------------------------


def encode(message: Message) -> bytes:
    body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()
    return _HEADER.pack(len(body)) + body


def decode_length(header: bytes) -> int:
    (length,) = _HEADER.unpack(header)
    if length > MAX_MESSAGE_BYTES:
        raise ValueError(f"message of {length} bytes announced: the stream is corrupt")
    return int(length)


def decode(body: bytes) -> Message:
    message = json.loads(body)
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ValueError(f"not a pgsched worker message: {body[:200]!r}")
    return message


HEADER_SIZE = _HEADER.size


def claimed_to_wire(claimed: ClaimedRun) -> Message:
    fields = dataclasses.asdict(claimed)
    if claimed.scheduled_for is not None:
        fields["scheduled_for"] = claimed.scheduled_for.isoformat()
    return fields


def claimed_from_wire(fields: Message) -> ClaimedRun:
    moment = fields.get("scheduled_for")
    when = None if moment is None else datetime.fromisoformat(moment)
    return ClaimedRun(**{**fields, "scheduled_for": when})


def outcome_from_wire(fields: Message) -> RunOutcome:
    return RunOutcome(**fields)


# --- the worker ------------------------------------------------------------------------------


def load_registry(apps: Sequence[str], profile_path: str | None, dsn: str, schema: str) -> Registry:
    """The registry a runner builds (`App.registry` in the CLI): the --app specs, the profile's
    extensions and overrides, and the built-in extension."""
    profile = profile_from_env(profile_path, dsn)
    extensions = discover(apps, profile)
    extensions.append(builtin_extension(profile.retention, schema))
    return build_registry(extensions, profile)


class _Channel:
    """The worker's ends of the two pipes: blocking reads and writes, one message at a time."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self._in: IO[bytes] = os.fdopen(read_fd, "rb")
        self._out: IO[bytes] = os.fdopen(write_fd, "wb")
        self._lock = threading.Lock()

    def receive(self) -> Message | None:
        """The next message, or None when the parent's end is closed."""
        header = self._in.read(HEADER_SIZE)
        if len(header) < HEADER_SIZE:
            return None
        body = self._in.read(decode_length(header))
        return decode(body)

    def send(self, message: Message) -> None:
        with self._lock:
            self._out.write(encode(message))
            self._out.flush()


class _LastTaskExecutor(ThreadPoolExecutor):
    """One thread for sync jobs that remembers its last task: a job that outlived its soft
    timeout is still running there, and the worker must then retire rather than serve again."""

    last: Future[Any] | None = None

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.last = super().submit(fn, *args, **kwargs)
        return self.last


class _Server:
    """Serves runs one at a time on one event loop (async user pools stay bound to it)."""

    def __init__(
        self,
        channel: _Channel,
        registry: Registry,
        dsn: str,
        runner_id: str,
        connect_kwargs: dict[str, Any] | None = None,
        pool_timeout: float = 10.0,
    ) -> None:
        self.channel = channel
        self.registry = registry
        self.runner_id = runner_id
        # the runner's topology, and its runner.job_pool_timeout (the same profile)
        self.pools = UserPools(dsn, kwargs=connect_kwargs or {}, timeout=pool_timeout)
        self.loop = asyncio.new_event_loop()
        self.executor = _LastTaskExecutor(max_workers=1, thread_name_prefix="pgsched-job")
        self.runs: queue.SimpleQueue[Execution] = queue.SimpleQueue()
        self.current: dict[int, Execution] = {}
        self.lock = threading.Lock()

    def serve(self) -> None:
        threading.Thread(target=self._read, name="pgsched-worker-reader", daemon=True).start()
        while True:
            execution = self.runs.get()
            outcome = self.loop.run_until_complete(execution.run(self.executor))
            with self.lock:
                self.current.pop(execution.claimed.id, None)
            stuck = self.executor.last is not None and not self.executor.last.done()
            _flush()
            self.channel.send(
                {"type": "outcome", "outcome": dataclasses.asdict(outcome), "retire": stuck}
            )
            if stuck:  # a sync job past its timeout still runs in our thread: end it with us
                _exit(0)

    def _read(self) -> None:
        """The reader thread: runs go to the main thread, cancels reach the running job at once.
        The parent closing its end means it is done with us (or gone): exit, job or not."""
        while True:
            message = self.channel.receive()
            if message is None:
                _exit(0)
            if message["type"] == "run":
                claimed = claimed_from_wire(message["run"])
                execution = Execution(
                    claimed, self.registry.get(claimed.job_name), self.pools, self.runner_id
                )
                with self.lock:
                    self.current[claimed.id] = execution
                self.channel.send({"type": "started", "run_id": claimed.id})
                self.runs.put(execution)
            elif message["type"] == "cancel":
                with self.lock:
                    found = self.current.get(message["run_id"])
                if found is not None:
                    found.ctx.cancel(message["reason"])


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed or broken by the job
            stream.flush()


def _exit(code: int) -> NoReturn:
    """Leave now, even with a job thread still running (sys.exit would wait for it)."""
    _flush()
    os._exit(code)


def _die_with_parent(parent_pid: int) -> None:
    """Best effort, Linux only: SIGKILL from the kernel when the parent goes. The signal comes
    when the parent's *thread* that started us ends, so the pool must be closed before the
    thread running its event loop exits."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        _exit(0)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pgsched.worker")
    parser.add_argument("--read-fd", type=int, required=True)
    parser.add_argument("--write-fd", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    args = parser.parse_args(argv)
    _die_with_parent(args.parent_pid)
    # Ctrl-C and a service manager's SIGTERM reach the whole process group; the runner shuts
    # down gracefully and decides when its workers end (closing the pipe, or SIGKILL).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    faulthandler.enable(all_threads=False)  # a segfault leaves the job's traceback on stderr
    channel = _Channel(args.read_fd, args.write_fd)
    start = channel.receive()
    if start is None or start["type"] != "start":
        _exit(0)
    try:
        server = _start(channel, start)
    except BaseException as exc:  # an import error, or an app that calls sys.exit on import
        info = error_info(exc)
        said = str(info["message"])
        if not isinstance(exc, PgschedError):  # our own errors read whole; others by type
            said = f"{info['type']}: {said}"
        channel.send({"type": "broken", "message": said, "error": info})
        _exit(BROKEN_EXIT_CODE)
    channel.send({"type": "ready", "pid": os.getpid()})
    server.serve()


def _start(channel: _Channel, start: Message) -> _Server:
    # The parent's import path first: an app it could import is importable here.
    sys.path[:0] = [p for p in start["sys_path"] if p not in sys.path]
    if "log_levels" in start:  # a guest runner's: the host's logging has the last word
        relay_logging(start["log_levels"])
    else:
        configure_logging(start["log_level"], start["log_json"])
    registry = load_registry(start["apps"], start["profile_path"], start["dsn"], start["schema"])
    timeout = profile_from_env(start["profile_path"], start["dsn"]).runner.job_pool_timeout
    return _Server(
        channel, registry, start["dsn"], start["runner_id"], start.get("connect_kwargs"), timeout
    )


if __name__ == "__main__":
    main()
