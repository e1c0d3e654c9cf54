"""Jobs that log, for the tests of pgsched inside a host's logging
(tests/integration/test_runner_in_process.py)."""

from __future__ import annotations

from pgsched import Extension, JobContext

ext = Extension("chatty")


@ext.job("chatty", overlap="allow", description="logs at info, then at warning")
def chatty(ctx: JobContext) -> str:
    ctx.log.info("said hello", who=ctx.params.get("who"))
    ctx.log.warning("said it loudly", who=ctx.params.get("who"))
    return "said"
