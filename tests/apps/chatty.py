"""Jobs that log, for the tests of pgsched inside a host's logging
(tests/integration/test_runner_in_process.py): one runs in the runner's threads, one in a
worker process."""

from __future__ import annotations

import logging
import os

import structlog

from pgsched import Extension, JobContext

ext = Extension("chatty")


@ext.job("chatty", overlap="allow", description="logs at info, then at warning")
def chatty(ctx: JobContext) -> str:
    ctx.log.info("said hello", who=ctx.params.get("who"))
    ctx.log.warning("said it loudly", who=ctx.params.get("who"))
    return "said"


@ext.job("chatty-process", isolation="process", description="logs from its worker process")
def chatty_process(ctx: JobContext) -> str:
    ctx.log.debug("whispered", pid=os.getpid())
    ctx.log.info("said hello from a worker", pid=os.getpid())
    logging.getLogger(__name__).warning("the job's own logger, pid %s", os.getpid())
    structlog.get_logger().warning("the job's own structlog", pid=os.getpid())
    try:
        raise ValueError("shown with its traceback")
    except ValueError:
        ctx.log.exception("failed politely")
    return "said"
