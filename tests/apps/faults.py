"""Jobs for the fault-tolerance tests (tests/integration/test_faults.py, test_chaos.py).

Each scenario has its own extension, so a runner started for one test fires only the
schedules that test is about. Jobs that must be observable from outside pgsched's own
bookkeeping write to plain tables the test creates (`chaos_exec`).
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time

from psycopg.types.json import Jsonb

from pgsched import Extension, JobContext, JobResult

# --- manual-only jobs for the single-fault tests ---------------------------------------------

ext = Extension("faults")


@ext.job("echo", description="succeeds at once, reports its pid")
def echo(ctx: JobContext) -> JobResult:
    return JobResult.success(f"echo from {os.getpid()}").with_data({"pid": os.getpid()})


@ext.job("uses-db", description="one query through the job connection pool")
def uses_db(ctx: JobContext) -> str:
    with ctx.connection() as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    return f"backend {row[0]}"


@ext.job("cooperative-sleep", description="sleeps params.seconds, noticing cancellation")
def cooperative_sleep(ctx: JobContext) -> str:
    seconds = float(ctx.params.get("seconds", 2))
    if ctx.wait_cancelled(seconds):
        return f"noticed cancellation: {ctx.cancel_reason}"
    return f"slept {seconds:g}s"


@ext.job("stubborn-sleep", description="time.sleep(params.seconds): ignores cancellation")
def stubborn_sleep(ctx: JobContext) -> str:
    seconds = float(ctx.params.get("seconds", 2))
    time.sleep(seconds)
    return f"slept {seconds:g}s"


@ext.job("times-out", description="sleeps past its 1 s timeout, ignoring it", timeout=1)
def times_out(ctx: JobContext) -> str:
    time.sleep(float(ctx.params.get("seconds", 30)))
    return "woke up after the timeout"


@ext.job(
    "always-fails",
    description="raises on every attempt",
    max_attempts=3,
    retry_backoff=0.3,
)
def always_fails(ctx: JobContext) -> None:
    raise RuntimeError(f"attempt {ctx.attempt} failed")


@ext.job("returns-int", description="returns a value the contract does not allow")
def returns_int(ctx: JobContext) -> int:
    return 42


@ext.job("calls-sys-exit", description="a sync job calling sys.exit()")
def calls_sys_exit(ctx: JobContext) -> None:
    sys.exit(3)


@ext.job("raises-keyboard-interrupt", description="an async job raising KeyboardInterrupt")
async def raises_keyboard_interrupt(ctx: JobContext) -> None:
    await asyncio.sleep(0)
    raise KeyboardInterrupt


@ext.job("huge-message", description="returns a 10 MB message")
def huge_message(ctx: JobContext) -> str:
    return "x" * 10_000_000


@ext.job("huge-error", description="raises with a 10 MB exception message")
def huge_error(ctx: JobContext) -> None:
    raise ValueError("y" * 10_000_000)


# A job that a later deploy removes: sync with `doomed` and `ext`, then run with `ext` only.
doomed = Extension("faults-doomed")


@doomed.job("doomed", description="removed from the code in the next deploy")
def doomed_job(ctx: JobContext) -> str:
    return "should never run once orphaned"


# --- scheduled jobs, one extension per scenario ------------------------------------------------

misfire = Extension("faults-misfire")


def _short_nap(ctx: JobContext) -> None:
    """Long enough that runs which wrongly overlap are seen to overlap; returns no message."""
    time.sleep(0.2)


for _policy in ("skip", "once", "all"):
    misfire.job(
        f"misfire-{_policy}",
        schedule="*/2 * * * * *",
        description=f"every 2 s, misfire={_policy}",
        misfire=_policy,
        misfire_grace=1,
    )(_short_nap)


def _slow(ctx: JobContext) -> str:
    time.sleep(2.5)
    return "done"


overlap_queue = Extension("faults-overlap-queue")
overlap_queue.job(
    "slow-queued",
    schedule="* * * * * *",
    description="2.5 s job every second",
    overlap="queue",
    misfire="all",  # a claim late on a loaded machine runs every tick it finds, skips none
)(_slow)

overlap_allow = Extension("faults-overlap-allow")
overlap_allow.job(
    "slow-allowed", schedule="* * * * * *", description="2.5 s job every second", overlap="allow"
)(_slow)


ticker = Extension("faults-ticker")


@ticker.job("ticker", schedule="* * * * * *", description="no-op every second")
def tick(ctx: JobContext) -> None:
    return None


# --- the chaos test --------------------------------------------------------------------------

CHAOS_JOBS = 20
chaos = Extension("chaos")


def _record_execution(ctx: JobContext) -> None:
    """The first thing every chaos execution does: say, durably, that it started."""
    with ctx.connection() as conn:
        conn.execute(
            "INSERT INTO chaos_exec (job_name, schedule_key, trigger, scheduled_for, run_id, "
            "attempt, params, pid) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            [
                ctx.job_name,
                ctx.schedule_key,
                ctx.trigger,
                ctx.scheduled_for,
                ctx.run_id,
                ctx.attempt,
                Jsonb(dict(ctx.params)),
                os.getpid(),
            ],
        )


def _chaos_work(ctx: JobContext) -> str:
    _record_execution(ctx)
    # Long enough that kills and the database restart land mid-run now and then.
    time.sleep(random.uniform(0.05, 0.6))
    return f"ran in {os.getpid()}"


for _i in range(CHAOS_JOBS):
    chaos.job(
        f"chaos-{_i:02d}",
        schedule="* * * * * *",
        description="records its execution, every second",
        max_attempts=2,
        retry_backoff=0.2,
    )(_chaos_work)

chaos.job(
    "chaos-manual",
    description="records its execution; requested by the test",
    overlap="allow",
    max_attempts=2,
    retry_backoff=0.2,
)(_chaos_work)


@chaos.job(
    "chaos-blocker",
    schedule="*/3 * * * * *",
    description="async def that blocks its event loop for 1-2 s (time.sleep)",
    max_attempts=2,
    retry_backoff=0.2,
)
async def chaos_blocker(ctx: JobContext) -> str:
    _record_execution(ctx)  # a blocking connection in async code, too
    time.sleep(random.uniform(1.0, 2.0))
    return f"blocked the loop in {os.getpid()}"


@chaos.job(
    "chaos-suicide",
    schedule="*/5 * * * * *",
    isolation="process",
    description="process-isolated: records its execution, then os._exit(7)",
)
def chaos_suicide(ctx: JobContext) -> None:
    _record_execution(ctx)
    os._exit(7)


retrying = Extension("faults-retrying")


@retrying.job(
    "retry-sleeps",
    description="sleeps, noticing cancellation; would be retried if it failed",
    max_attempts=3,
    retry_backoff=0.2,
)
def retry_sleeps(ctx: JobContext) -> str:
    if ctx.wait_cancelled(float(ctx.params.get("seconds", 2))):
        return "noticed cancellation"
    return "slept"


cancel_race = Extension("faults-cancel-race")


@cancel_race.job(
    "fails-on-go",
    description="records each attempt, then raises once the file params.go exists",
    max_attempts=5,
    retry_backoff=0.2,
)
def fails_on_go(ctx: JobContext) -> None:
    """Deaf to ctx.cancelled on purpose: its failure races the cancel request."""
    with ctx.connection() as conn:
        conn.execute(
            "INSERT INTO race_exec (run_id, attempt) VALUES (%s, %s)", [ctx.run_id, ctx.attempt]
        )
    go = str(ctx.params["go"])
    while not os.path.exists(go):
        time.sleep(0.001)
    raise RuntimeError(f"attempt {ctx.attempt} failed")
