"""Built-in jobs every runner carries: history retention, so hot tables never grow unbounded."""

from __future__ import annotations

from .context import JobContext
from .job import Extension
from .profile import RetentionOptions
from .result import JobResult
from .store import prune_history_on

BUILTIN_EXTENSION = "pgsched"
PRUNE_JOB = "pgsched-prune-history"


def builtin_extension(retention: RetentionOptions, schema: str) -> Extension:
    ext = Extension(BUILTIN_EXTENSION)
    keep_seconds = retention.keep_days * 86400

    @ext.job(
        PRUNE_JOB,
        schedule=retention.prune_schedule,
        description=(
            f"Delete finished runs older than {retention.keep_days:g} days (retention)"
            if retention.keep_days > 0
            else "Delete old finished runs (disabled: retention.keep_days is 0)"
        ),
        enabled=retention.keep_days > 0,
        timeout=3600,
        misfire="skip",
        misfire_grace=60,
    )
    async def prune_history(ctx: JobContext) -> JobResult:
        async with ctx.aconnection() as conn:
            deleted = await prune_history_on(conn, schema, keep_seconds)
        return JobResult.success(
            f"deleted {deleted} runs finished more than {retention.keep_days:g} days ago"
        ).with_stats(processed=deleted)

    return ext
