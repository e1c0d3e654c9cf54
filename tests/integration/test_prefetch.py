"""Prefetched runs: claimed ahead of free slots, started as slots free, given back on stop."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.runners import query, runners, wait_registered, wait_until, write_profile

pytestmark = pytest.mark.slow


def test_prefetched_runs_start_as_slots_free_and_go_back_to_pending_on_shutdown(
    dsn: str, tmp_path: Path
) -> None:
    profile = write_profile(tmp_path, "  concurrency: 1\n  prefetch: 2\n", grace=10)
    with runners(dsn, tmp_path, profile=profile) as procs:
        wait_registered(dsn, 1, procs)
        query(
            dsn,
            "INSERT INTO pgsched.runs (job_name, params) SELECT 'sleeps-concurrently', "
            "'{\"seconds\": 1.5}' FROM generate_series(1, 5) RETURNING id",
        )
        # one slot: one run executes, two more are held by this runner, two stay pending
        held = wait_until(
            lambda: (
                len(query(dsn, "SELECT id FROM pgsched.runs WHERE status = 'running'")) == 3 or None
            ),
            20,
            "1 running + 2 prefetched",
            procs,
        )
        assert held
        first = wait_until(
            lambda: query(dsn, "SELECT id FROM pgsched.runs WHERE status = 'succeeded'"),
            20,
            "the first run",
            procs,
        )
        assert len(first) >= 1
        assert procs[0].terminate(30) == 0, procs[0].output()[-2000:]
    rows = query(dsn, "SELECT status, runner, started_at FROM pgsched.runs ORDER BY id")
    statuses = [r["status"] for r in rows]
    assert "running" not in statuses, statuses
    assert statuses.count("succeeded") >= 2  # the one running at SIGTERM finished in grace
    pending = [r for r in rows if r["status"] == "pending"]
    assert pending, statuses
    assert all(r["runner"] is None and r["started_at"] is None for r in pending)


LOOKAHEAD = """  lookahead: 4
scheduler:
  jobs:
    - job: tick-every-second
      enabled: false
    - job: tick-every-two
      schedule: "*/10 * * * * *"
"""


def test_tick_claimed_ahead_starts_on_time_or_is_given_back_as_if_never_claimed(
    dsn: str, tmp_path: Path
) -> None:
    """A runner claims a tick up to `lookahead` early and starts it at its time; stopped
    before then, it deletes the run row and moves next_run_at back to the tick, so the next
    runner claims it (no 'pending' row left to run late, outside the misfire policy)."""
    profile = write_profile(tmp_path, LOOKAHEAD)
    ahead_sql = """SELECT id, scheduled_for FROM pgsched.runs
                   WHERE job_name = 'tick-every-two' AND status = 'running'
                     AND scheduled_for > clock_timestamp()"""
    with runners(dsn, tmp_path, profile=profile) as procs:
        wait_registered(dsn, 1, procs)
        [claimed] = wait_until(lambda: query(dsn, ahead_sql), 20, "a tick claimed ahead", procs)
        assert procs[0].terminate() == 0, procs[0].output()[-2000:]
    tick = claimed["scheduled_for"]
    assert query(dsn, "SELECT id FROM pgsched.runs WHERE id = %s", (claimed["id"],)) == []
    job = query(dsn, "SELECT next_run_at FROM pgsched.jobs WHERE name = 'tick-every-two'")[0]
    assert job["next_run_at"] == tick

    with runners(dsn, tmp_path, profile=profile) as procs:
        wait_registered(dsn, 1, procs)
        done = wait_until(
            lambda: query(
                dsn,
                "SELECT status, started_at FROM pgsched.runs "
                "WHERE job_name = 'tick-every-two' AND scheduled_for = %s AND status = 'succeeded'",
                (tick,),
            ),
            20,
            "the given-back tick, run by the next runner",
            procs,
        )
    assert done[0]["started_at"] >= tick
