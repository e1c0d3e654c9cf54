"""Run one claimed run's callable and turn whatever happens into a RunOutcome.

Used by the runner and by `pgsched jobs run --inline`, so both record runs the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import math
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from .context import Cancelled, JobContext
from .logs import JOBS, LazyLogger
from .registry import JobDefinition
from .result import coerce_result
from .runs import ClaimedRun, RunOutcome
from .states import OutcomeStatus

MAX_MESSAGE = 10_000
MAX_TRACEBACK = 50_000
MAX_DATA = 1_000_000


class NotStarted(Exception):
    """The run's gate said no right before its callable: its outcome was decided meanwhile
    (timed out or cancelled before it could start, its lease lost); nothing to record."""


class JobTimedOut(TimeoutError):
    """A run outlived its job's `timeout`; the message is the one its run row gets."""

    def __init__(self, timeout: float) -> None:
        super().__init__(f"timed out after {timeout:g}s (timeout={timeout:g})")
        self.timeout = timeout


class _UserBaseException(Exception):
    """Carries a BaseException (SystemExit, KeyboardInterrupt, a job's own CancelledError or
    BaseException subclass) out of user code as an ordinary failure of the run."""


@dataclass
class UserPools:
    """Lazily opened pools handed to jobs through JobContext: no connections until used.

    They keep the team's server settings (isolation, timeouts, search_path: it is their code);
    a wait longer than `timeout` (runner.job_pool_timeout) fails the job naming the pool and
    the server's reason (pgsched.connections.JobPoolTimeout)."""

    dsn: str
    max_size: int = 10
    kwargs: dict[str, Any] = field(default_factory=dict)  # Topology.connect_kwargs
    timeout: float = 10.0
    watch: Any = None  # pgsched.connections.ConnectionWatch: the runner's probes hear of it
    _sync: Any = None
    _async: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def sync_pool(self) -> Any:
        with self._lock:
            if self._sync is None:
                from psycopg_pool import ConnectionPool

                from .connections import JobPool, Refusals

                self._sync = JobPool(
                    self.dsn,
                    min_size=0,
                    max_size=self.max_size,
                    open=True,
                    name="pgsched-jobs",
                    kwargs=dict(self.kwargs),
                    check=ConnectionPool.check_connection,  # no dead connections after a restart
                    timeout=self.timeout,
                    reconnect_timeout=self.timeout,  # see async_pool
                    refusals=Refusals(),
                    watch=self.watch,
                )
            return self._sync

    def async_pool(self) -> Any:
        if self._async is None:
            from psycopg_pool import AsyncConnectionPool

            from .connections import AsyncJobPool, Refusals

            self._async = AsyncJobPool(
                self.dsn,
                min_size=0,
                max_size=self.max_size,
                open=False,
                name="pgsched-jobs-async",
                kwargs=dict(self.kwargs),
                check=AsyncConnectionPool.check_connection,
                timeout=self.timeout,
                # A refused attempt is retried with a backoff that grows to minutes within
                # psycopg_pool's default 300 s, so the pool came back that late after the
                # server let it in again; bounded so, each job's wait starts a fresh attempt.
                reconnect_timeout=self.timeout,
                refusals=Refusals(),
                watch=self.watch,
            )
        return self._async

    async def open_async(self) -> Any:
        pool = self.async_pool()
        if pool.closed:
            await pool.open()
        return pool

    async def close_async(self) -> None:
        """On the loop the async jobs ran on: their pool belongs to it."""
        if self._async is not None:
            await self._async.close()

    def close_sync(self) -> None:
        if self._sync is not None:
            self._sync.close()

    async def close(self) -> None:
        await self.close_async()
        await asyncio.to_thread(self.close_sync)


def _truncate(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[:limit] + f"… [{len(text) - limit} characters cut]"


def _clean(text: str) -> str:
    """PostgreSQL text holds neither NUL nor lone surrogates (str(exc) of a file error may);
    either would make the database refuse the whole result batch."""
    return text.replace("\x00", "\\0").encode("utf-8", "replace").decode("utf-8")


def _text(value: object) -> str | None:
    if value is None:
        return None
    try:
        text = str(value)
    except Exception as exc:  # a user __str__ that raises
        text = f"<{type(value).__name__} whose str() raised {exc!r}>"
    return _truncate(_clean(text), MAX_MESSAGE)


def _storable(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What a job returns as data must never stop its result (or a batch) from being written:
    non-JSON values become strings, NaN and infinities the strings "NaN", "Infinity" and
    "-Infinity" (JSON, and so jsonb, has no such numbers), NULs are escaped, and oversize
    documents are replaced."""
    if value is None:
        return None
    try:
        try:
            text = json.dumps(value, default=str, ensure_ascii=False, allow_nan=False)
        except ValueError:  # a non-finite float somewhere: the rare path walks the document
            text = json.dumps(_finite(value), default=str, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:  # non-str keys, cycles, bad __str__
        return {"unstorable": f"could not be stored as JSON: {exc!r}"[:MAX_MESSAGE]}
    text = _clean(text).replace("\\u0000", "\\\\0")
    if len(text) > MAX_DATA:
        return {"truncated": True, "size": len(text), "preview": text[:MAX_MESSAGE]}
    loaded: dict[str, Any] = json.loads(text)
    return loaded


_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


def _finite(value: Any, depth: int = 0) -> Any:
    """`value` with every NaN or infinite float replaced by its JSON-less name."""
    if depth > 200:
        raise RecursionError("data nested more than 200 levels deep")
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else _NON_FINITE[value]
    if isinstance(value, Mapping):
        return {k: _finite(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v, depth + 1) for v in value]
    return value


def job_exception(exc: BaseException) -> BaseException:
    """What the job itself raised: a BaseException crossed `Execution` wrapped."""
    if isinstance(exc, _UserBaseException):
        assert exc.__cause__ is not None
        return exc.__cause__
    return exc


def error_info(exc: BaseException) -> dict[str, Any]:
    original = job_exception(exc)
    tb = "".join(traceback.format_exception(original))
    return {
        "type": f"{type(original).__module__}.{type(original).__qualname__}".removeprefix(
            "builtins."
        ),
        "message": _text(original),
        "traceback": _truncate(_clean(tb), MAX_TRACEBACK),
    }


class Execution:
    """One run in flight: its context, its timing and its outcome."""

    def __init__(
        self,
        claimed: ClaimedRun,
        definition: JobDefinition | None,
        pools: UserPools,
        runner_id: str,
    ) -> None:
        self.claimed = claimed
        self.definition = definition
        self.started_mono: float | None = None
        self.log = LazyLogger(
            JOBS, runner=runner_id, job=claimed.job_name, run_id=claimed.id, attempt=claimed.attempt
        )
        self.ctx = JobContext(
            run_id=claimed.id,
            job_name=claimed.job_name,
            trigger=claimed.trigger,
            scheduled_for=claimed.scheduled_for,
            attempt=claimed.attempt,
            params=claimed.params,
            schedule_key=claimed.schedule_key,
            log=self.log,
            _pool_source=pools.sync_pool,
            _apool_source=pools.async_pool,
        )
        self._pools = pools

    @property
    def name(self) -> str:
        return self.claimed.job_name

    def _at(self, mono: float | None) -> float | None:
        """A local monotonic instant on the database clock (epoch seconds), anchored at the
        claim."""
        if mono is None:
            return None
        return self.claimed.claimed_at + (mono - self.claimed.claimed_mono)

    def outcome(
        self,
        status: OutcomeStatus,
        message: str | None = None,
        *,
        error: dict[str, Any] | None = None,
        stats: dict[str, int] | None = None,
        data: dict[str, Any] | None = None,
    ) -> RunOutcome:
        return RunOutcome(
            run_id=self.claimed.id,
            lease=self.claimed.lease,
            status=status,
            started_at=self._at(self.started_mono),
            finished_at=self._at(time.monotonic()),
            message=_text(message),
            error=_storable(error),
            stats=_storable(stats),
            data=_storable(data),
        )

    async def run(
        self, executor: Executor | None, gate: Callable[[], bool] | None = None
    ) -> RunOutcome:
        """Execute with the job's timeout, counted from the start of its callable. `gate` is
        asked right before the callable is called (in the job's thread for a sync job): False
        raises `NotStarted`, and the job never runs. Never raises otherwise, except for the
        runner's own cancel."""
        if self.definition is None:
            return self.outcome(
                "failed",
                f"job '{self.claimed.job_name}' is not defined in this runner's code; deploy "
                "the code that defines it (or remove the request / the job row)",
            )
        try:
            value = await self.execute(executor, gate)
        except asyncio.CancelledError:
            if not self.ctx.cancelled:  # the canceller's own reason, if it gave one, stays
                self.ctx.cancel("runner shutting down")
            raise
        except NotStarted:
            raise
        except Exception as exc:  # includes _UserBaseException
            return self.failed(exc)
        return self._returned(value)

    async def execute(
        self, executor: Executor | None, gate: Callable[[], bool] | None = None
    ) -> Any:
        """What the callable returned, before `coerce_result`: `run` without the recording
        (pgsched.testing hands a test the job's own exception). Raises what the job raised (a
        BaseException wrapped: `job_exception` unwraps it), and JobTimedOut once the job's
        timeout expired, after telling the job through `ctx.cancelled`."""
        assert self.definition is not None
        timeout = self.definition.settings.timeout
        if timeout is None:  # the default: no timer to arm and cancel for every run
            return await self._call(executor, gate, None)
        deadline = asyncio.timeout(None)  # armed at the start
        try:
            async with deadline:
                return await self._call(executor, gate, deadline)
        except TimeoutError as exc:
            if not deadline.expired():  # the job's own (a socket, ...)
                raise
            self.ctx.cancel(f"timed out after {timeout:g}s")
            raise JobTimedOut(timeout) from exc

    def _returned(self, value: Any) -> RunOutcome:
        """The outcome of what the job returned."""
        result = coerce_result(value, self.claimed.job_name)
        return self.outcome(
            result.status, result.message, stats=result.stats, data=dict(result.data) or None
        )

    def run_in_this_thread(self, call: Callable[..., Any]) -> RunOutcome:
        """A sync job without a timeout, executed whole in the calling (pool) thread, `call`
        being the context to run it in: the control loop only hands it over and collects the
        outcomes in batches (no task, future or thread hop of its own per run: at 1,000 ticks
        a second that was most of a runner's CPU). The same outcomes as `run`."""
        assert self.definition is not None and not self.definition.is_async
        self.started_mono = time.monotonic()
        try:
            value = _guard_sync(call, self.definition.job.execute, self.ctx)
        except Exception as exc:  # includes _UserBaseException
            return self.failed(exc)
        return self._returned(value)

    def failed(self, exc: Exception) -> RunOutcome:
        """The outcome of a run whose `execute` raised `exc`: timed out, cancelled, or what
        the job raised, stored with its type and traceback."""
        if isinstance(exc, JobTimedOut):
            self.log.warning("run timed out", timeout=exc.timeout)
            return self.outcome("failed", str(exc))
        if isinstance(exc, Cancelled):
            return self.outcome("failed", f"cancelled: {exc}", error=error_info(exc))
        return self._raised(exc)

    def _raised(self, exc: BaseException) -> RunOutcome:
        info = error_info(exc)
        self.log.warning("run raised", error_type=info["type"], error=info["message"])
        return self.outcome("failed", f"{info['type']}: {info['message']}", error=info)

    async def _call(
        self,
        executor: Executor | None,
        gate: Callable[[], bool] | None,
        deadline: asyncio.Timeout | None,
    ) -> Any:
        assert self.definition is not None
        job = self.definition.job
        timeout = self.definition.settings.timeout
        if self.definition.is_async:
            await self._pools.open_async()
            if gate is not None and not gate():  # nothing awaits between this and the call
                raise NotStarted
            self.started_mono = time.monotonic()
            if deadline is not None and timeout is not None:
                deadline.reschedule(asyncio.get_running_loop().time() + timeout)
            return await _guard(job.execute(self.ctx))
        loop = asyncio.get_running_loop()
        call: Callable[[], Any] = contextvars.copy_context().run  # type: ignore[assignment]
        armed = None
        if deadline is not None and timeout is not None:
            # Armed now, in case no thread ever takes it (the gate then keeps it from
            # starting late), and moved to the callable's real start by the thread: on a
            # loaded machine a thread may start long after the hand-off.
            deadline.reschedule(loop.time() + timeout)

            def armed(started: float) -> None:
                loop.call_soon_threadsafe(_rearm, deadline, started + timeout)

        future = loop.run_in_executor(
            executor, self._start_in_thread, gate, call, job.execute, armed
        )
        future.add_done_callback(_consume)  # a thread that outlived its timeout may raise later
        # shield: on timeout the thread cannot be killed; it keeps running, told via ctx.
        return await asyncio.shield(future)

    def _start_in_thread(
        self,
        gate: Callable[[], bool] | None,
        call: Callable[..., Any],
        func: Callable[..., Any],
        started: Callable[[float], None] | None = None,
    ) -> Any:
        if gate is not None and not gate():
            raise NotStarted
        self.started_mono = time.monotonic()  # asyncio's loop.time() is this clock too
        if started is not None:
            started(self.started_mono)
        return _guard_sync(call, func, self.ctx)


def _rearm(deadline: asyncio.Timeout, when: float) -> None:
    """Move a job's timeout to count from its callable's start, unless it fired already (or
    the run is over: a quick job returns before this callback runs)."""
    if not deadline.expired():
        with contextlib.suppress(RuntimeError):  # "Cannot change state of exited Timeout"
            deadline.reschedule(when)


async def _guard(awaitable: Awaitable[Any]) -> Any:
    """Every BaseException from job code is the job's failure, recorded as itself: a job's own
    `CancelledError` too (one raised while nobody cancelled its task, which `cancelling()`
    tells apart from the runner's cancel, a timeout's included)."""
    try:
        return await awaitable
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # the runner's own cancel (timeout, shutdown, cancel request)
        raise _UserBaseException(repr(exc)) from exc
    except Exception:
        raise
    except BaseException as exc:  # SystemExit, KeyboardInterrupt, GeneratorExit, custom ones
        raise _UserBaseException(repr(exc)) from exc


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _guard_sync(call: Callable[..., Any], func: Callable[..., Any], ctx: JobContext) -> Any:
    try:
        return call(func, ctx)
    except Exception:
        raise
    except BaseException as exc:  # must not end the worker thread's future as a BaseException
        raise _UserBaseException(repr(exc)) from exc
