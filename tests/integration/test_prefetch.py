"""Prefetched runs: claimed ahead of free slots, started as slots free, given back on stop."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest

from tests.runners import query, runners, wait_registered, wait_until, write_profile

pytestmark = [pytest.mark.slow, pytest.mark.matrix]  # claims ahead on 16 and 17 too


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


FAIR_SHARE = """  concurrency: 1
  prefetch: 0
  lookahead: 0.8
scheduler:
  jobs:
    - job: tick-every-two
      schedule: "* * * * * *"
"""

AHEAD_SQL = """SELECT scheduled_for, runner, count(*) AS n FROM pgsched.runs
               WHERE trigger = 'schedule' AND created_at < scheduled_for AND scheduled_for > %s
               GROUP BY scheduled_for, runner"""


def test_ticks_claimed_ahead_beyond_the_slots_are_split_fairly_between_runners(
    dsn: str, tmp_path: Path
) -> None:
    """Two jobs share every second. One runner of one slot claims both ticks ahead (up to
    twice its allowance); once two runners are alive, each claims at most its fair share, one
    per second. Either way every tick runs once, none before its time."""
    profile = write_profile(tmp_path, FAIR_SHARE)
    with runners(dsn, tmp_path, profile=profile) as procs:
        wait_registered(dsn, 1, procs)
        since = query(dsn, "SELECT now() AS t")[0]["t"]
        both = wait_until(
            lambda: [r for r in query(dsn, AHEAD_SQL, (since,)) if r["n"] == 2],
            30,
            "one runner holding both ticks of a second, claimed ahead",
            procs,
        )
        assert both
    with runners(dsn, tmp_path, count=2, profile=profile) as procs:
        wait_registered(dsn, 2, procs)
        since = query(dsn, "SELECT now() + interval '2 seconds' AS t")[0]["t"]
        wait_until(
            lambda: len({r["runner"] for r in query(dsn, AHEAD_SQL, (since,))}) == 2 or None,
            30,
            "ticks claimed ahead by both runners",
            procs,
        )
        time.sleep(3)  # a few more seconds, all of them past by `until`
        until = query(dsn, "SELECT now() AS t")[0]["t"]
        shares = [r for r in query(dsn, AHEAD_SQL, (since,)) if r["scheduled_for"] <= until]
        assert shares and max(r["n"] for r in shares) == 1, shares
        seconds = query(
            dsn,
            "SELECT s AS tick, (SELECT count(*) FROM pgsched.runs r WHERE r.trigger = 'schedule' "
            "AND r.scheduled_for = s) AS n FROM generate_series(date_trunc('second', %s), %s, "
            "interval '1 second') AS s",
            (since, until - timedelta(seconds=1)),
        )
    assert seconds and all(s["n"] == 2 for s in seconds), seconds  # no tick lost
    early = query(
        dsn, "SELECT id FROM pgsched.runs WHERE trigger = 'schedule' AND started_at < scheduled_for"
    )
    assert early == []
