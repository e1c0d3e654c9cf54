"""Jobs for the fair-claim tests (tests/integration/test_fair_claims.py): `flood` has no
schedule in code, its backlog is runtime rows (or requests); `steady` fires every second
beside it (misfire=all: a late claim still runs every tick, so its rows say when each was
claimed, never whether the machine kept a grace period); `quiet-*` are manual-only."""

from __future__ import annotations

from pgsched import Extension, JobContext

ext = Extension("fairness")


def _noop(ctx: JobContext) -> None:
    return None


# misfire_cap=1: a late claim of one of its schedules writes one row, not one per missed tick
ext.job("flood", overlap="allow", misfire_cap=1, description="the backlog")(_noop)
ext.job("steady", schedule="* * * * * *", overlap="allow", misfire="all", description="beside it")(
    _noop
)
for i in range(4):
    ext.job(f"quiet-{i}", overlap="allow", description="one due tick or request")(_noop)
