"""Fair claims (DESIGN "Fair to every job"): a backlog of one job never delays another job's
tick or request by more than a claim round. With at least as many free slots as jobs with
due work, one claim takes every such job; with fewer, the jobs take turns."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import pytest

from pgsched.planning import plan_claim
from pgsched.profile import Profile
from pgsched.registry import build_registry
from pgsched.store import Store
from tests.apps.fairness import ext
from tests.runners import pgsched as cli
from tests.runners import query, runners, wait_registered, wait_until, write_profile

APP = "tests.apps.fairness:ext"
REGISTRY = build_registry([ext], Profile(None, None))
OTHERS = {"steady", "quiet-0", "quiet-1", "quiet-2", "quiet-3"}
FLOOD = 2000
T = TypeVar("T")


def _flood_schedules(dsn: str, n: int, due: str) -> None:
    query(
        dsn,
        "INSERT INTO pgsched.schedules (job_name, key, cron, next_run_at) "
        f"SELECT 'flood', 'f-' || i, '* * * * * *', {due} FROM generate_series(1, %s) AS i",
        (n,),
    )


def _quiet_schedules(dsn: str, due: str) -> None:
    """One tick of each quiet job and of steady, due at `due`: newer than the backlog."""
    query(
        dsn,
        "INSERT INTO pgsched.schedules (job_name, key, cron, next_run_at) "
        f"SELECT 'quiet-' || i, 'q', '* * * * * *', {due} FROM generate_series(0, 3) AS i",
    )
    query(dsn, f"UPDATE pgsched.schedules SET next_run_at = {due} WHERE job_name = 'steady'")


async def _lock(
    store: Store, free: int, ahead: int = 0, record: bool = False
) -> list[tuple[str, str]]:
    """One tick claim's lock (rolled back unless `record`): the (job, key) it took. A
    lookahead of a minute: the ticks ahead stay ahead however slow the machine is."""
    async with store.tick_claim("test", REGISTRY.code_version) as claim:
        due = await claim.lock_due_jobs(free, ahead, 60.0 if ahead else 0.0, 15.0)
        if record:
            await claim.record(plan_claim(due, free, ahead))
    return [(d.name, d.key) for d in due]


def _with_store(dsn: str, go: Callable[[Store], Awaitable[T]]) -> T:
    """`go` with a Store that has synced the fairness app (its jobs and definitions)."""

    async def run() -> T:
        store = Store(dsn)
        await store.open()
        try:
            await store.sync(REGISTRY)
            return await go(store)
        finally:
            await store.close()

    return asyncio.run(run())


async def _nothing(store: Store) -> None:
    return None


@pytest.mark.matrix
def test_one_tick_claim_takes_every_job_with_due_ticks_behind_a_backlog(dsn: str) -> None:
    _with_store(dsn, _nothing)  # the jobs and their definitions
    _flood_schedules(dsn, FLOOD, "now() - interval '10 seconds'")
    _quiet_schedules(dsn, "now() - interval '1 second'")

    async def go(store: Store) -> list[tuple[str, str]]:
        return await _lock(store, free=len(OTHERS) + 1)

    took = _with_store(dsn, go)
    assert {name for name, _ in took} == OTHERS | {"flood"}, took


@pytest.mark.matrix
def test_one_tick_claim_ahead_takes_every_job_with_a_tick_in_the_lookahead(dsn: str) -> None:
    _with_store(dsn, _nothing)
    _flood_schedules(dsn, FLOOD, "now() + interval '20 seconds'")
    _quiet_schedules(dsn, "now() + interval '40 seconds'")

    async def go(store: Store) -> list[tuple[str, str]]:
        return await _lock(store, free=0, ahead=len(OTHERS) + 1)

    took = _with_store(dsn, go)
    assert {name for name, _ in took} == OTHERS | {"flood"}, took


@pytest.mark.matrix
def test_with_one_free_slot_jobs_take_turns_claim_after_claim(dsn: str) -> None:
    """Fewer free slots than jobs with due ticks: each such job within that many claims."""
    _with_store(dsn, _nothing)
    _flood_schedules(dsn, FLOOD, "now() - interval '10 seconds'")
    _quiet_schedules(dsn, "now() - interval '1 second'")

    async def go(store: Store) -> list[str]:
        served = []
        for _ in range(len(OTHERS) + 1):
            served += [name for name, _ in await _lock(store, free=1, record=True)]
        return served

    served = _with_store(dsn, go)
    assert sorted(served) == sorted(OTHERS | {"flood"}), served


@pytest.mark.matrix
def test_one_request_claim_takes_every_job_with_pending_requests(dsn: str) -> None:
    _with_store(dsn, _nothing)
    query(
        dsn,
        "INSERT INTO pgsched.runs (job_name, run_after) "
        "SELECT 'flood', now() - interval '1 minute' FROM generate_series(1, %s)",
        (FLOOD,),
    )
    query(
        dsn,
        "INSERT INTO pgsched.runs (job_name) SELECT 'quiet-' || i FROM generate_series(0, 3) i",
    )

    async def go(store: Store) -> list[str]:
        claim = await store.claim_pending("test", 5, REGISTRY.code_version)
        return [r.job_name for r in claim.started]

    started = _with_store(dsn, go)
    assert sorted(started) == sorted({"flood", "quiet-0", "quiet-1", "quiet-2", "quiet-3"})


# One claim round of a runner takes at most its free slots plus its ahead allowance:
# concurrency + prefetch, and twice that ahead (runner/slots.py).
CONCURRENCY = 4
ONE_ROUND = 3 * (CONCURRENCY + CONCURRENCY)


def test_every_second_job_is_claimed_within_a_round_beside_a_backlog_of_5000(
    dsn: str, tmp_path: Path
) -> None:
    """A runner process, 5,000 every-second schedules of `flood` (more than it can run each
    second: a backlog that never ends) and `steady` every second. Every tick of steady gets
    its run, none skipped, and no more than one claim round of flood's ticks of that second
    or later is claimed before it: the run rows' ids are the claim order."""
    assert cli("--app", APP, "sync", dsn=dsn).returncode == 0
    profile = write_profile(tmp_path, f"  concurrency: {CONCURRENCY}\n")
    _flood_schedules(dsn, 5000, "date_trunc('second', now())")
    began = query(dsn, "SELECT date_trunc('second', now()) + interval '2 seconds' AS t")[0]["t"]
    with runners(dsn, tmp_path, count=1, apps=[APP], profile=profile) as procs:
        wait_registered(dsn, 1, procs)
        wait_until(
            lambda: (
                query(
                    dsn,
                    "SELECT count(*) AS n FROM pgsched.runs WHERE job_name = 'steady' "
                    "AND scheduled_for >= %s AND status = 'succeeded'",
                    (began,),
                )[0]["n"]
                >= 6
            ),
            60,
            "6 ticks of steady",
            procs,
        )
        flood_runs = query(
            dsn,
            "SELECT count(*) AS n FROM pgsched.runs WHERE job_name = 'flood' "
            "AND scheduled_for >= %s",
            (began,),
        )[0]["n"]
        query(dsn, "DELETE FROM pgsched.schedules WHERE job_name = 'flood'")
        last = query(
            dsn,
            "SELECT max(scheduled_for) AS t FROM pgsched.runs WHERE job_name = 'steady' "
            "AND status = 'succeeded'",
        )[0]["t"]
        wait_until(
            lambda: (
                not query(
                    dsn,
                    "SELECT 1 FROM pgsched.runs WHERE job_name = 'steady' "
                    "AND scheduled_for <= %s AND status IN ('pending', 'running')",
                    (last,),
                )
            ),
            30,
            "steady's runs so far finished",
            procs,
        )
    steady = query(
        dsn,
        "SELECT id, scheduled_for, status FROM pgsched.runs WHERE job_name = 'steady' "
        "AND scheduled_for >= %s AND scheduled_for <= %s ORDER BY scheduled_for",
        (began, last),
    )
    ticks = [r["scheduled_for"] for r in steady]
    seconds = int((last - began).total_seconds()) + 1
    assert ticks == [began + timedelta(seconds=i) for i in range(seconds)], ticks
    assert {r["status"] for r in steady} == {"succeeded"}, steady
    assert flood_runs > 0
    ahead_of = query(
        dsn,
        "SELECT s.scheduled_for, count(f.id) AS n FROM pgsched.runs s "
        "LEFT JOIN pgsched.runs f ON f.job_name = 'flood' AND f.trigger = 'schedule' "
        "  AND f.scheduled_for >= s.scheduled_for AND f.id < s.id "
        "WHERE s.job_name = 'steady' AND s.scheduled_for >= %s AND s.scheduled_for <= %s "
        "GROUP BY s.scheduled_for ORDER BY 1",
        (began, last),
    )
    assert all(r["n"] <= ONE_ROUND for r in ahead_of), ahead_of
