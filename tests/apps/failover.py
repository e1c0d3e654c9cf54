"""A job for the lossy-failover test: it runs long enough for the test to cut replication
between its claim and its result."""

from __future__ import annotations

import time

from pgsched import Extension, JobContext

ext = Extension("failover")


@ext.job("slow-ok", description="sleeps params.seconds, then succeeds", overlap="allow")
def slow_ok(ctx: JobContext) -> str:
    time.sleep(float(ctx.params.get("seconds", 2)))
    return f"done in run {ctx.run_id}"
