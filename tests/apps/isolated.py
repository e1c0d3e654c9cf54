"""Jobs for the process-isolation tests (tests/integration/test_isolation.py).

Each one does to its worker process what user code can do to a runner: exit, die of a signal,
crash in C, hold the GIL past its timeout, or merely behave.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from pathlib import Path

from pgsched import Extension, JobContext, JobResult

ext = Extension("isolated")


@ext.job("iso-echo", isolation="process", description="reports its pid and params")
def echo(ctx: JobContext) -> JobResult:
    return JobResult.success(f"pid {os.getpid()}").with_data(
        {"pid": os.getpid(), "params": dict(ctx.params)}
    )


@ext.job("iso-exit", isolation="process", description="os._exit(params.code)")
def exit_now(ctx: JobContext) -> None:
    os._exit(int(ctx.params.get("code", 3)))


@ext.job("iso-sigkill", isolation="process", description="SIGKILLs its own process")
def sigkill(ctx: JobContext) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@ext.job("iso-segfault", isolation="process", description="reads address 0")
def segfault(ctx: JobContext) -> None:
    ctypes.string_at(0)


@ext.job("iso-gil", isolation="process", timeout=1, description="one C call that keeps the GIL")
def holds_the_gil(ctx: JobContext) -> str:
    return str(sum(range(10**10)))


@ext.job("iso-sleep", isolation="process", timeout=1, description="sleeps past its timeout")
def stubborn_sleep(ctx: JobContext) -> str:
    time.sleep(30)
    return "woke up after the timeout"


@ext.job("iso-cancellable", isolation="process", description="waits until cancelled")
def cancellable(ctx: JobContext) -> str:
    Path(ctx.params["started"]).write_text(str(os.getpid()))  # the test acts once it runs
    if ctx.wait_cancelled(30):
        return f"noticed cancellation: {ctx.cancel_reason}"
    return "never cancelled"


@ext.job("iso-db", isolation="process", description="one query through ctx.connection()")
def uses_db(ctx: JobContext) -> str:
    with ctx.connection() as conn:
        row = conn.execute("SELECT current_database(), pg_backend_pid()").fetchone()
    assert row is not None
    return f"{row[0]} backend {row[1]} from pid {os.getpid()}"


@ext.job("iso-async-db", isolation="process", description="async: ctx.aconnection()")
async def uses_db_async(ctx: JobContext) -> str:
    async with ctx.aconnection() as conn:
        cur = await conn.execute("SELECT current_database()")
        row = await cur.fetchone()
    assert row is not None
    return f"{row[0]} from pid {os.getpid()}"


@ext.job("iso-fork-then-exit", isolation="process", description="forks a sleeper, exits")
def fork_then_exit(ctx: JobContext) -> None:
    child = os.fork()
    if child == 0:  # the grandchild keeps every inherited pipe open for a while
        time.sleep(30)
        os._exit(0)
    Path(ctx.params["grandchild"]).write_text(str(child))
    os._exit(5)
