"""Jobs that misbehave the way ordinary user code does, for tests/integration/test_misbehaving.py.

Each appends one line to the file `params.log` when it starts, so a test can count
executions independently of what the runs table says.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
from typing import Any

from pgsched import Extension, JobContext, JobResult

ext = Extension("misbehaving")


def executed(ctx: JobContext) -> None:
    with open(ctx.params["log"], "a") as log:
        log.write(f"{ctx.job_name} {ctx.run_id} {os.getpid()}\n")


@ext.job("blocks-loop", description="async def that calls time.sleep: blocks its event loop")
async def blocks_loop(ctx: JobContext) -> str:
    executed(ctx)
    seconds = float(ctx.params["seconds"])
    time.sleep(seconds)  # the classic mistake: a blocking call in async code
    return f"blocked the loop for {seconds:g}s and finished"


def _hold_gil(n: int) -> int:
    return sum(range(n))  # one C call: never lets go of the GIL


@ext.job("holds-gil", isolation="process", description="a C call that keeps the GIL")
def holds_gil(ctx: JobContext) -> str:
    executed(ctx)
    started = time.monotonic()
    total = _hold_gil(int(ctx.params["n"]))
    return f"summed to {total} in {time.monotonic() - started:.1f}s"


@ext.job("exits", isolation="process", description="os._exit(3) in a worker process")
def exits(ctx: JobContext) -> None:
    executed(ctx)
    os._exit(3)


@ext.job("outlives-shutdown", isolation="process", description="ignores cancellation, sleeps")
def outlives_shutdown(ctx: JobContext) -> str:
    executed(ctx)
    time.sleep(120)
    return "slept"


@ext.job(
    "stuck-in-c", isolation="process", timeout=1, description="a GIL-holding C call past timeout"
)
def stuck_in_c(ctx: JobContext) -> str:
    executed(ctx)
    return str(_hold_gil(10**11))


@ext.job("returns-pending", description="JobResult(status='pending')")
def returns_pending(ctx: JobContext) -> JobResult:
    executed(ctx)
    return JobResult(status="pending")  # type: ignore[arg-type]


class Interrupt(BaseException):
    """A BaseException of the job's own."""


@ext.job("raises-base-exception", description="raises a custom BaseException subclass")
def raises_base_exception(ctx: JobContext) -> None:
    executed(ctx)
    raise Interrupt("the job's own BaseException")


@ext.job("raises-cancelled", description="async job raising CancelledError itself")
async def raises_cancelled(ctx: JobContext) -> None:
    executed(ctx)
    raise asyncio.CancelledError("the job's own CancelledError")


@ext.job("nan-data", description="returns NaN and infinities in its data")
def nan_data(ctx: JobContext) -> JobResult:
    executed(ctx)
    data: dict[str, Any] = {"nan": math.nan, "inf": math.inf, "list": [1.5, -math.inf]}
    return JobResult.success("computed").with_data(data)


@ext.job("leaks-thread", description="starts a non-daemon thread that outlives the run")
def leaks_thread(ctx: JobContext) -> str:
    executed(ctx)
    threading.Thread(target=time.sleep, args=(120,), name="leaked-by-job", daemon=False).start()
    return "left a thread behind"


@ext.job("echo", description="a well-behaved job")
def echo(ctx: JobContext) -> str:
    executed(ctx)
    return f"served by {os.getpid()}"
