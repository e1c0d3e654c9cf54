"""Process tests: real runner processes against one real database."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from tests.runners import pgsched, query, runners, wait_registered, wait_until, write_profile

pytestmark = [pytest.mark.slow, pytest.mark.matrix]  # claims and results on 16 and 17 too


def test_three_runner_processes_fire_each_tick_exactly_once(dsn: str, tmp_path: Path) -> None:
    assert pgsched("--app", "tests.apps.basic:ext", "sync", dsn=dsn).returncode == 0
    profile = write_profile(tmp_path)
    with runners(dsn, tmp_path, count=3, profile=profile) as procs:
        wait_registered(dsn, 3, procs)
        ready = query(dsn, "SELECT now() AS t")[0]["t"]
        time.sleep(12)
        for p in procs:
            assert p.terminate() == 0, p.output()[-2000:]
    rows = query(
        dsn,
        """
        SELECT job_name, scheduled_for, status, runner, started_at, message,
               (data->>'wall_clock')::float8 AS wall_clock
        FROM pgsched.runs WHERE trigger = 'schedule' ORDER BY scheduled_for""",
    )
    # Runners claim ticks up to `lookahead` (0.5 s) early, but never start one before its time:
    # neither by what they record nor by the clock the job reads as it starts (the database
    # runs on this machine, so its clock is the job's).
    early = [r for r in rows if r["started_at"] and r["started_at"] < r["scheduled_for"]]
    assert not early, f"started before their tick: {early[:3]}"
    read = [r for r in rows if r["wall_clock"] is not None]
    assert len(read) >= len(rows) // 2, "the jobs report the clock they start at"
    early = [r for r in read if r["wall_clock"] < r["scheduled_for"].timestamp()]
    assert not early, f"a job read a clock before its tick: {early[:3]}"
    for job, step in [("tick-every-second", 1), ("tick-every-two", 2)]:
        ticks = [r["scheduled_for"] for r in rows if r["job_name"] == job]
        counts = Counter(ticks)
        assert counts and max(counts.values()) == 1, f"{job}: double fire {counts.most_common(3)}"
        span = (ticks[-1] - ticks[0]).total_seconds()
        assert span >= 8, f"{job}: only {span}s of ticks"
        expected = [ticks[0] + timedelta(seconds=step * i) for i in range(int(span) // step + 1)]
        assert ticks == expected, f"{job}: missing ticks {sorted(set(expected) - set(ticks))}"
        # Ticks that fell due while the runners were still starting were missed: the latest
        # of them ran, the others are recorded skipped (misfire=once), or, on a loaded
        # machine, skipped behind that catch-up run still running (overlap=skip). After
        # that, each runs.
        mine = [r for r in rows if r["job_name"] == job]
        statuses = Counter(r["status"] for r in mine if r["scheduled_for"] > ready)
        assert set(statuses) == {"succeeded"}, statuses
        for r in mine:
            if r["status"] != "succeeded":
                assert r["status"] == "skipped" and r["scheduled_for"] <= ready, r
                assert "misfire=once" in r["message"] or r["message"].startswith(
                    "previous run still running (overlap=skip)"
                ), r
    assert len({r["runner"] for r in rows}) >= 2, "work should spread over the runners"
    assert query(dsn, "SELECT count(*) AS n FROM pgsched.runners")[0]["n"] == 0


def test_manual_request_inserted_with_plain_sql_runs_with_its_params(
    dsn: str, tmp_path: Path
) -> None:
    with runners(dsn, tmp_path, profile=write_profile(tmp_path)) as procs:
        wait_registered(dsn, 1, procs)
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute(
                "INSERT INTO pgsched.runs (job_name, params) VALUES ('echo-params', %s) "
                "RETURNING id",
                [json.dumps({"customer": 42, "dry_run": True})],
            ).fetchone()
            assert row is not None
            with pytest.raises(psycopg.errors.ForeignKeyViolation):
                conn.execute("INSERT INTO pgsched.runs (job_name) VALUES ('no-such-job')")
        run = wait_until(
            lambda: query(
                dsn, "SELECT * FROM pgsched.runs WHERE id = %s AND status = 'succeeded'", [row[0]]
            ),
            15,
            "the manual run",
            procs,
        )[0]
    assert run["trigger"] == "manual"
    assert run["data"]["params"] == {"customer": 42, "dry_run": True}
    assert run["started_at"] >= run["created_at"]
    assert run["finished_at"] >= run["started_at"]


def test_failing_job_is_recorded_and_the_runner_keeps_serving(dsn: str, tmp_path: Path) -> None:
    with runners(dsn, tmp_path, profile=write_profile(tmp_path)) as procs:
        wait_registered(dsn, 1, procs)
        query(dsn, "INSERT INTO pgsched.runs (job_name) VALUES ('raises') RETURNING id")
        failed = wait_until(
            lambda: query(
                dsn, "SELECT * FROM pgsched.runs WHERE job_name = 'raises' AND status = 'failed'"
            ),
            15,
            "the failed run",
            procs,
        )[0]
        query(dsn, "INSERT INTO pgsched.runs (job_name) VALUES ('echo-params') RETURNING id")
        wait_until(
            lambda: query(
                dsn,
                "SELECT 1 FROM pgsched.runs WHERE job_name = 'echo-params' "
                "AND status = 'succeeded'",
            ),
            15,
            "a run after the failure",
            procs,
        )
        assert procs[0].alive
    assert failed["error"]["type"] == "ValueError"
    assert failed["error"]["message"].startswith("boom in run")
    assert "Traceback" in failed["error"]["traceback"] and "raises" in failed["error"]["traceback"]
    assert failed["message"].startswith("ValueError: boom")


def test_tick_that_overlaps_a_running_run_is_recorded_skipped(dsn: str, tmp_path: Path) -> None:
    profile = write_profile(
        tmp_path,
        """
scheduler:
  jobs:
    - job: sleeps
      schedule: "* * * * * *"
      misfire: all
""",
    )
    with runners(dsn, tmp_path, count=2, profile=profile) as procs:
        wait_registered(dsn, 2, procs)
        wait_until(
            lambda: query(
                dsn, "SELECT 1 FROM pgsched.runs WHERE job_name = 'sleeps' AND status = 'skipped'"
            ),
            20,
            "a skipped tick",
            procs,
            state=lambda: query(
                dsn,
                "SELECT r.id, r.scheduled_for, r.status, r.runner, r.started_at, r.message, "
                "s.next_run_at, now() FROM pgsched.schedules s LEFT JOIN pgsched.runs r "
                "ON r.job_name = s.job_name WHERE s.job_name = 'sleeps' ORDER BY r.id",
            ),
        )
    rows = query(
        dsn,
        "SELECT status, message FROM pgsched.runs WHERE job_name = 'sleeps' "
        "AND trigger = 'schedule' AND status = 'skipped'",
    )
    assert all(r["message"] == "previous run still running (overlap=skip)" for r in rows), rows
