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
