"""Jobs the tests run in real runner processes."""

from __future__ import annotations

import asyncio
import os
import time

from pgsched import Extension, Job, JobContext, JobResult

ext = Extension("tests")


@ext.job("tick-every-second", schedule="* * * * * *", description="no-op, every second")
def every_second(ctx: JobContext) -> JobResult:
    # the wall clock as the job starts: the tests' database shares this machine's clock
    return JobResult.success().with_data({"pid": os.getpid(), "wall_clock": time.time()})


@ext.job("tick-every-two", schedule="*/2 * * * * *", description="async no-op, every 2 s")
async def every_two(ctx: JobContext) -> JobResult:
    started = time.time()
    await asyncio.sleep(0)
    return JobResult.success(f"ran in {os.getpid()}").with_data({"wall_clock": started})


@ext.job("echo-params", description="returns its params as data")
def echo_params(ctx: JobContext) -> JobResult:
    return JobResult.success(f"got {sorted(ctx.params)}").with_data(
        {"params": dict(ctx.params), "trigger": ctx.trigger, "attempt": ctx.attempt}
    )


@ext.job("raises", description="always fails")
def raises(ctx: JobContext) -> None:
    raise ValueError(f"boom in run {ctx.run_id}")


@ext.job("sleeps", description="sleeps params.seconds, cooperatively", overlap="skip")
def sleeps(ctx: JobContext) -> str:
    seconds = float(ctx.params.get("seconds", 2.5))
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if ctx.wait_cancelled(0.05):
            return "noticed cancellation"
    return f"slept {seconds}s"


@ext.job("uses-db", description="queries through the context pool")
def uses_db(ctx: JobContext) -> JobResult:
    with ctx.connection() as conn:
        row = conn.execute("SELECT count(*) FROM pgsched.jobs").fetchone()
    assert row is not None
    return JobResult.success().with_stats(processed=int(row[0]))


class ClassJob(Job):
    name = "class-job"
    description = "class form"
    schedule = "0 0 3 * * *"
    timeout = 30

    async def execute(self, ctx: JobContext) -> JobResult:
        async with ctx.aconnection() as conn:
            cur = await conn.execute("SELECT 41 + 1")
            row = await cur.fetchone()
        assert row is not None
        return JobResult.success(f"answer {row[0]}")


class ClassExtension(Extension):
    name = "tests-class"

    def jobs(self) -> list[Job]:
        return [ClassJob()]


@ext.job(
    "sleeps-concurrently", description="sleeps params.seconds; overlap allowed", overlap="allow"
)
def sleeps_concurrently(ctx: JobContext) -> str:
    return sleeps(ctx)
