"""Jobs for the production-topology tests (PgBouncer, failover: tests/integration/).

Every execution appends "run_id job attempt" to the file named by $TOPO_EXEC_LOG, outside
the database, so an execution is visible even where the database lost or never got its
result (a crashed primary). The database jobs run the same statements many times on the
jobs' pools: past psycopg's prepare threshold (5), which a transaction pooler breaks unless
prepared statements are off.
"""

from __future__ import annotations

import os

from pgsched import Extension, JobContext, JobResult

TICK_JOBS = 4
ext = Extension("topology")


def _record(ctx: JobContext) -> None:
    path = os.environ.get("TOPO_EXEC_LOG")
    if path:
        line = f"{ctx.run_id} {ctx.job_name} {ctx.attempt}\n".encode()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)  # one small O_APPEND write: lines never interleave
        finally:
            os.close(fd)


def _tick(ctx: JobContext) -> None:
    _record(ctx)


for n in range(TICK_JOBS):
    ext.job(f"topo-tick-{n}", schedule="* * * * * *", description="every second")(_tick)


@ext.job("topo-db-sync", schedule="* * * * * *", description="ctx.connection(), many queries")
def db_sync(ctx: JobContext) -> JobResult:
    _record(ctx)
    total = 0
    with ctx.connection() as conn:
        for i in range(8):
            row = conn.execute("SELECT %s::int + count(*) FROM pgsched.jobs", [i]).fetchone()
            assert row is not None
            total += int(row[0])
        with conn.transaction():
            conn.execute("SELECT pg_backend_pid()")
    return JobResult.success().with_stats(processed=total)


@ext.job("topo-db-async", schedule="* * * * * *", description="ctx.aconnection(), many queries")
async def db_async(ctx: JobContext) -> JobResult:
    _record(ctx)
    total = 0
    async with ctx.aconnection() as conn:
        for i in range(8):
            cur = await conn.execute("SELECT %s::int + count(*) FROM pgsched.runners", [i])
            row = await cur.fetchone()
            assert row is not None
            total += int(row[0])
    return JobResult.success().with_stats(processed=total)


@ext.job("topo-manual", description="a manual request; its pickup latency is measured")
def manual(ctx: JobContext) -> str:
    _record(ctx)
    return f"request {ctx.params.get('n')}"


@ext.job("topo-flaky", description="fails its first attempt", max_attempts=2, retry_backoff=0.2)
def flaky(ctx: JobContext) -> str:
    _record(ctx)
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails on purpose")
    return "second attempt"


@ext.job(
    "topo-slow",
    description="sleeps params.seconds (cooperatively); retried once if its runner dies",
    max_attempts=2,
    retry_backoff=0.2,
)
def slow(ctx: JobContext) -> str:
    _record(ctx)
    seconds = float(ctx.params.get("seconds", 60)) if ctx.attempt == 1 else 0.1
    if ctx.wait_cancelled(seconds):
        return "noticed cancellation"
    return f"slept {seconds:g}s"
