"""Run one job's callable in a test, the way a runner runs it, with no runner and no schema.

    from pgsched.testing import run_job

    def test_cleanup(dsn):
        result = run_job(ext, "my-extension-cleanup", dsn=dsn, params={"days": 30})
        assert result.message == "Deleted 3 items"

The job gets a real `JobContext`, built by the runner's own `Execution`: `ctx.pool` and
`ctx.apool` are psycopg-pool pools on `dsn` (opened on first use, closed after the run) or the
pools the test passes; its timeout, with the profile's overrides, counts as a runner counts
it; what it returns is normalised as a run's result is (`coerce_result`). Nothing is written
to pgsched's tables, so the test database needs no `pgsched migrate`. The pytest plugin
(`_pgsched_pytest`) wraps these functions as the `pgsched_run` and `pgsched_arun` fixtures.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import itertools
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .execution import Execution, JobTimedOut, UserPools, job_exception
from .profile import Profile, load_profile
from .registry import JobDefinition, build_registry, extensions_from
from .result import JobResult, coerce_result
from .runs import ClaimedRun
from .states import Trigger
from .topology import Topology

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool, ConnectionPool

__all__ = ["JobTimedOut", "arun_job", "run_job"]

RUNNER_ID = "pgsched.testing"  # what `ctx.log` is bound to as `runner`
_run_ids = itertools.count(1)  # distinct per call, like real runs' ids (a job may key on them)


def run_job(
    app: Any,
    job_name: str,
    *,
    dsn: str | None = None,
    pool: ConnectionPool[Any] | None = None,
    params: Mapping[str, Any] | None = None,
    profile: str | Path | Profile | None = None,
    raise_errors: bool = True,
    trigger: Trigger = "manual",
    scheduled_for: datetime | None = None,
    attempt: int = 1,
    schedule_key: str = "default",
    run_id: int | None = None,
) -> JobResult:
    """Run `job_name` of `app` once, here, as a runner would, and return its `JobResult`.

    `app` is an Extension, an Extension class, a `"module:attr"` path, or a list of them
    (what `background_runner` takes). `ctx.pool` and `ctx.apool` connect to `dsn`, or
    `ctx.pool` is `pool`, a pool of the test's own, used as it is; with neither, a job that
    touches the database fails saying so. `params` become `ctx.params` as a request's
    would: JSON. `profile` (a file or a `Profile`) applies its overrides of this job
    (`timeout`, ...); those of jobs that `app` does not define are the runner's to check.

    The job's exception propagates, its traceback going from the test to the job; a timeout
    raises `JobTimedOut`. With `raise_errors=False` both come back as a failed result, with
    the message its run row would hold. A sync job past its timeout goes on in its thread
    until it looks at `ctx.cancelled`, as under a runner. `isolation="process"` is not
    emulated: the callable runs in this process, where the test's fixtures and patches are.

    It runs on an event loop of its own (a sync job in a thread): in an async test,
    `await arun_job(...)`."""
    __tracebackhide__ = True  # pytest: a job's traceback goes from the test to the job
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise ConfigError(
            "run_job() was called inside a running event loop (an async test?); there, use "
            "`await pgsched.testing.arun_job(...)` (the fixture `pgsched_arun`)"
        )
    run = _prepare(
        app,
        job_name,
        _Identity(trigger, scheduled_for, attempt, schedule_key, run_id),
        dsn=dsn,
        pool=pool,
        apool=None,
        params=params,
        profile=profile,
    )
    return _returned(asyncio.run(run.outcome(raise_errors)))


async def arun_job(
    app: Any,
    job_name: str,
    *,
    dsn: str | None = None,
    pool: ConnectionPool[Any] | None = None,
    apool: AsyncConnectionPool[Any] | None = None,
    params: Mapping[str, Any] | None = None,
    profile: str | Path | Profile | None = None,
    raise_errors: bool = True,
    trigger: Trigger = "manual",
    scheduled_for: datetime | None = None,
    attempt: int = 1,
    schedule_key: str = "default",
    run_id: int | None = None,
) -> JobResult:
    """`run_job` on the running event loop, for async tests; `apool` is an
    `AsyncConnectionPool` of the test's own for `ctx.apool` (it belongs to this loop, which
    is why `run_job`, on a loop of its own, takes none). A sync job runs in a thread."""
    __tracebackhide__ = True
    run = _prepare(
        app,
        job_name,
        _Identity(trigger, scheduled_for, attempt, schedule_key, run_id),
        dsn=dsn,
        pool=pool,
        apool=apool,
        params=params,
        profile=profile,
    )
    return _returned(await run.outcome(raise_errors))


@dataclass(frozen=True)
class _Identity:
    """Which run this pretends to be: what `ctx` says beyond the job's name and params."""

    trigger: Trigger
    scheduled_for: datetime | None
    attempt: int
    schedule_key: str
    run_id: int | None


def _prepare(
    app: Any,
    job_name: str,
    identity: _Identity,
    *,
    dsn: str | None,
    pool: ConnectionPool[Any] | None,
    apool: AsyncConnectionPool[Any] | None,
    params: Mapping[str, Any] | None,
    profile: str | Path | Profile | None,
) -> _Run:
    """Everything that can be wrong before the job runs is raised here, outside its loop."""
    prof = profile if isinstance(profile, Profile) else load_profile(profile)
    definition = _definition(app, job_name, prof)
    # `auto` is not probed (two connections per call): say `database.pooler: transaction` in
    # the profile if the test database is behind PgBouncer.
    pooled = prof.database.pooler == "transaction"
    pools = _TestPools(
        dsn or "",
        kwargs=Topology(dsn or "", transaction_pooler=pooled).connect_kwargs,
        timeout=prof.runner.job_pool_timeout,
        given_sync=pool,
        given_async=apool,
        job_name=job_name,
    )
    claimed = ClaimedRun(
        id=next(_run_ids) if identity.run_id is None else identity.run_id,
        job_name=job_name,
        trigger=identity.trigger,
        scheduled_for=identity.scheduled_for,
        attempt=identity.attempt,
        params=_as_stored(params, job_name),
        lease="",
        claimed_at=time.time(),
        claimed_mono=time.monotonic(),
        schedule_key=identity.schedule_key,
    )
    return _Run(Execution(claimed, definition, pools, RUNNER_ID), pools)


def _definition(app: Any, job_name: str, profile: Profile) -> JobDefinition:
    """The job as a runner of `app` with `profile` would define it."""
    extensions = extensions_from(app, where="run_job(app=...)")
    names = {job.name for ext in extensions for job in ext.jobs()}
    # One profile usually serves the whole application: overrides of other extensions' jobs
    # are not this test's business (the runner, which loads them all, checks those).
    mine = tuple(o for o in profile.jobs if o.job in names)
    registry = build_registry(extensions, dataclasses.replace(profile, jobs=mine))
    definition = registry.get(job_name)
    if definition is None:
        raise registry.unknown_job(job_name, "Pass the Extension that defines it as `app`")
    return definition


def _as_stored(params: Mapping[str, Any] | None, job_name: str) -> dict[str, Any]:
    """`ctx.params` as a runner hands them over, read back from a request's jsonb: a test
    cannot pass what a request could not (a datetime, NaN), nor see a tuple the job will
    get as a list."""
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise ConfigError(
            f"params for job '{job_name}' must be a mapping (a JSON object), "
            f"got {type(params).__name__}"
        )
    try:
        stored: dict[str, Any] = json.loads(json.dumps(dict(params), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"params for job '{job_name}' must be JSON, as a request stores them (jsonb): {exc}"
        ) from None
    return stored


@dataclass
class _TestPools(UserPools):
    """The runner's lazily opened pools on `dsn`, unless the test gave its own: those are
    used as they are, never opened or closed here."""

    given_sync: ConnectionPool[Any] | None = None
    given_async: AsyncConnectionPool[Any] | None = None
    job_name: str = ""

    def sync_pool(self) -> Any:
        if self.given_sync is not None:
            return self.given_sync
        self._need_dsn("ctx.pool", "pool=")
        return super().sync_pool()

    def async_pool(self) -> Any:
        if self.given_async is not None:
            return self.given_async
        self._need_dsn("ctx.apool", "apool= to arun_job")
        return super().async_pool()

    async def open_async(self) -> Any:
        """Before every async job: with no database, one that never uses it still runs."""
        if self.given_async is not None or not self.dsn:
            return self.given_async
        return await super().open_async()

    def _need_dsn(self, what: str, instead: str) -> None:
        if not self.dsn:
            raise ConfigError(
                f"job '{self.job_name}' used {what}, but it was run with no database for it: "
                f"pass dsn= (or {instead})"
            )


@dataclass
class _Run:
    execution: Execution
    pools: _TestPools

    async def outcome(self, raise_errors: bool) -> JobResult | BaseException:
        """The result, or the exception to raise: raised by the caller, outside the loop that
        ran the job (asyncio.run's frames are no part of the job's traceback)."""
        # A thread of its own, not the loop's default executor, which asyncio.run would wait
        # for: a sync job past its timeout may go on long after.
        threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="pgsched-job"
        )
        try:
            value = await self.execution.execute(threads)
        except Exception as exc:  # includes a wrapped BaseException (job_exception)
            failure: Exception | None = exc
        else:
            failure = None
        finally:
            threads.shutdown(wait=False)
            await self.pools.close()
        if failure is None:
            return coerce_result(value, self.execution.name)
        if raise_errors:
            return job_exception(failure)
        outcome = self.execution.failed(failure)
        return JobResult.failure(outcome.message or outcome.status)


def _returned(outcome: JobResult | BaseException) -> JobResult:
    __tracebackhide__ = True
    if isinstance(outcome, BaseException):  # outside any except block: chained to nothing
        raise outcome.with_traceback(_from_the_job(outcome.__traceback__))
    return outcome


# What runs a job: this package (Execution, FunctionJob.execute), asyncio, the job's thread.
_RUNNERS = tuple(
    str(Path(path).parent) + os.sep
    for path in (__file__, asyncio.__file__, concurrent.futures.__file__)
)


def _from_the_job(tb: TracebackType | None) -> TracebackType | None:
    """The traceback from the job's own first frame on, when it has one: how pgsched called
    it is not the test's business (a failure inside pgsched keeps it all)."""
    start = tb
    while start is not None and start.tb_frame.f_code.co_filename.startswith(_RUNNERS):
        start = start.tb_next
    return start or tb
