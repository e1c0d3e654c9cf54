"""Two code versions of one app, for the rolling-deploy test: v1 has `only-a` (every 2 s)
and `manual-a` (manual), v2 dropped both; `common` is in both."""

from __future__ import annotations

import os

from pgsched import Extension, JobContext


def _ran(ctx: JobContext) -> str:
    return f"{ctx.job_name} in {os.getpid()}"


v1 = Extension("deploy")
v1.job("common", schedule="* * * * * *", description="in both versions")(_ran)
v1.job("only-a", schedule="*/2 * * * * *", description="v1 only")(_ran)
v1.job("manual-a", description="v1 only, requested by the test", overlap="allow")(_ran)

v2 = Extension("deploy")
v2.job("common", schedule="* * * * * *", description="in both versions")(_ran)
