"""Jobs for the schedules-as-rows tests (tests/integration/test_schedules.py).

`tenant-report` has no schedule in code: its ticks come from runtime rows of
pgsched.schedules. Every execution writes a row to `schedule_exec` (a plain table the test
creates), so the tests count executions, not only pgsched's bookkeeping.
"""

from __future__ import annotations

import os

from psycopg.types.json import Jsonb

from pgsched import Extension, JobContext

ext = Extension("tenants")


def _record(ctx: JobContext) -> None:
    with ctx.connection() as conn:
        conn.execute(
            "INSERT INTO schedule_exec (run_id, job_name, schedule_key, scheduled_for, params, pid)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            [
                ctx.run_id,
                ctx.job_name,
                ctx.schedule_key,
                ctx.scheduled_for,
                Jsonb(dict(ctx.params)),
                os.getpid(),
            ],
        )


@ext.job("tenant-report", description="one report per tenant, on the tenant's own schedule")
def tenant_report(ctx: JobContext) -> str:
    _record(ctx)
    return f"report for tenant {ctx.params.get('tenant')}"


@ext.job("coded", schedule="* * * * * *", description="a code schedule, plus runtime ones")
def coded(ctx: JobContext) -> str:
    _record(ctx)
    return "coded"
