"""The example scheduler: run it with `pgsched --app examples.demo:ext runner`.

Three jobs that show the shapes a real app uses: a frequent sync job that reads the database,
an async job, and a manual-only job that takes parameters.
"""

from __future__ import annotations

import asyncio
import random

from pgsched import Extension, Job, JobContext, JobResult

ext = Extension("demo")


@ext.job("demo-heartbeat", schedule="*/5 * * * * *", description="Count runs in the last minute")
def heartbeat(ctx: JobContext) -> JobResult:
    with ctx.connection() as conn:
        row = conn.execute(
            "SELECT count(*) FROM pgsched.runs WHERE created_at > now() - interval '1 minute'"
        ).fetchone()
    recent = int(row[0]) if row else 0
    ctx.log.info("heartbeat", recent_runs=recent)
    return JobResult.success(f"{recent} runs in the last minute").with_stats(processed=recent)


@ext.job(
    "demo-flaky",
    schedule="0 * * * * *",
    description="Fails now and then; retried with backoff",
    max_attempts=3,
    retry_backoff="2s",
)
async def flaky(ctx: JobContext) -> str:
    await asyncio.sleep(0.2)
    if random.random() < 0.3:
        raise RuntimeError(f"upstream timed out (attempt {ctx.attempt})")
    return f"fetched on attempt {ctx.attempt}"


@ext.job("demo-greet", description="Manual only: pgsched jobs run demo-greet -p name=Ada")
def greet(ctx: JobContext) -> JobResult:
    name = ctx.params.get("name", "world")
    return JobResult.success(f"hello, {name}").with_data({"greeted": name})


class NightlyReport(Job):
    """Class form: a nightly job in the profile's timezone."""

    name = "demo-nightly-report"
    description = "Summarise yesterday's runs"
    schedule = "0 30 2 * * *"
    timeout = "10m"

    def execute(self, ctx: JobContext) -> JobResult:
        with ctx.connection() as conn:
            rows = conn.execute(
                "SELECT status, count(*) FROM pgsched.runs "
                "WHERE created_at > now() - interval '1 day' GROUP BY status"
            ).fetchall()
        return JobResult.success("report ready").with_data({s: n for s, n in rows})


class DemoReports(Extension):
    name = "demo-reports"

    def jobs(self) -> list[Job]:
        return [NightlyReport()]
