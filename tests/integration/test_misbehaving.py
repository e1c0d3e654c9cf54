"""User code misbehaving as ordinary code does: each misbehaviour is the job's own failure (or
its own success), executed once, never the runner's. Real runner processes, a real database;
jobs in tests/apps/misbehaving.py count their executions in a file of their own.
"""

from __future__ import annotations

import json
import signal
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.runners import (
    query,
    request,
    runners,
    wait_registered,
    wait_status,
    wait_until,
    write_profile,
)

pytestmark = pytest.mark.slow

APP = "tests.apps.misbehaving:ext"


def executions(log: Path, job: str) -> list[str]:
    if not log.exists():
        return []
    return [line for line in log.read_text().splitlines() if line.split()[0] == job]


def events(text: str) -> list[dict[str, Any]]:
    """The runner's structlog JSON lines."""
    found = []
    for line in text.splitlines():
        if line.startswith("{"):
            found.append(json.loads(line))
    return found


def test_async_job_blocking_its_loop_for_three_leases_runs_once_and_succeeds(
    dsn: str, tmp_path: Path
) -> None:
    """A blocking call in async code used to stop the heartbeat: the run was reaped as
    "runner lost" while still executing and ran again elsewhere. The control plane has its
    own loop now, so the lease holds and the job is only named in the log."""
    log = tmp_path / "executions.log"
    profile = write_profile(tmp_path)  # heartbeat 0.5 s, lease_timeout 3 s
    with runners(dsn, tmp_path, count=2, apps=[APP], profile=profile) as procs:
        wait_registered(dsn, 2, procs)
        run_id = request(dsn, "blocks-loop", {"seconds": 9, "log": str(log)})
        run = wait_status(dsn, run_id, procs, timeout=40)
        after = request(dsn, "echo", {"log": str(log)})  # both runners still serve
        wait_status(dsn, after, procs)
        output = wait_until(  # the watchdog reports the block's end within a moment
            lambda: (text := "\n".join(p.output() for p in procs)) * ("blocked the event" in text),
            10,
            "the end of the block in the log",
            procs,
        )
    print(f"\nblocking async job: {run['status']}, {run['message']!r}")
    assert run["status"] == "succeeded", run
    assert run["message"] == "blocked the loop for 9s and finished"
    assert len(executions(log, "blocks-loop")) == 1
    assert not query(dsn, "SELECT id FROM pgsched.runs WHERE message LIKE 'runner lost%%'")
    everything = query(
        dsn,
        "SELECT id, job_name, trigger, status, attempt, message FROM pgsched.runs "
        "WHERE job_name <> 'pgsched-prune-history'",  # the built-in job's ticks are not ours
    )
    assert len(everything) == 2, everything
    warnings = [e["event"] for e in events(output) if "event loop" in e["event"]]
    print("loop warnings:", warnings)
    assert any("'blocks-loop'" in w and "blocking the job event loop" in w for w in warnings)
    assert any("'blocks-loop'" in w and "blocked the event loop for" in w for w in warnings)


def test_process_isolated_job_holding_the_gil_runs_once_with_heartbeats_on_time(
    dsn: str, tmp_path: Path
) -> None:
    """A C call that keeps the GIL for longer than the lease stops every thread of its
    process; in a worker process it stops none of the runner's."""
    log = tmp_path / "executions.log"
    profile = write_profile(tmp_path)  # heartbeat 0.5 s, lease_timeout 3 s
    with runners(dsn, tmp_path, count=2, apps=[APP], profile=profile) as procs:
        wait_registered(dsn, 2, procs)
        run_id = request(dsn, "holds-gil", {"n": 5 * 10**8, "log": str(log)})
        wait_status(dsn, run_id, procs, ["running"])
        worst = 0.0
        while (run := query(dsn, "SELECT * FROM pgsched.runs WHERE id = %s", [run_id])[0])[
            "status"
        ] == "running":
            age = query(
                dsn,
                "SELECT extract(epoch FROM max(now() - heartbeat_at))::float8 AS age "
                "FROM pgsched.runners",
            )[0]["age"]
            worst = max(worst, age or 0.0)
            time.sleep(0.2)
    print(f"\nGIL-holding job: {run['message']!r}; oldest heartbeat seen meanwhile {worst:.2f}s")
    assert run["status"] == "succeeded", run
    assert len(executions(log, "holds-gil")) == 1
    assert worst < 3.0, "a heartbeat was older than the lease while the job held the GIL"
    assert not query(dsn, "SELECT id FROM pgsched.runs WHERE message LIKE 'runner lost%%'")


def test_process_isolated_os_exit_fails_its_run_and_the_runner_keeps_serving(
    dsn: str, tmp_path: Path
) -> None:
    log = tmp_path / "executions.log"
    with runners(dsn, tmp_path, apps=[APP], profile=write_profile(tmp_path)) as procs:
        wait_registered(dsn, 1, procs)
        run = wait_status(dsn, request(dsn, "exits", {"log": str(log)}), procs)
        after = wait_status(dsn, request(dsn, "echo", {"log": str(log)}), procs)
        alive = procs[0].alive
    print(f"\nos._exit(3): {run['message']!r}")
    assert run["status"] == "failed" and "exited with code 3" in run["message"], run
    assert len(executions(log, "exits")) == 1  # max_attempts 1: no retry, no poison pill
    assert after["status"] == "succeeded" and alive


def test_a_process_isolated_run_ended_by_the_shutdown_keeps_its_start(
    dsn: str, tmp_path: Path
) -> None:
    """Past the grace period the runner ends a run whose worker still works: it started,
    so its row says when (a NULL started_at means "never started")."""
    log = tmp_path / "executions.log"
    profile = write_profile(tmp_path, grace=0.5)
    with runners(dsn, tmp_path, apps=[APP], profile=profile) as procs:
        wait_registered(dsn, 1, procs)
        run_id = request(dsn, "outlives-shutdown", {"log": str(log)})
        wait_until(lambda: executions(log, "outlives-shutdown"), 30, "the job to start", procs)
        assert procs[0].terminate() == 0
    run = query(dsn, "SELECT * FROM pgsched.runs WHERE id = %s", [run_id])[0]
    assert run["status"] == "failed" and run["message"].startswith("shutdown"), run
    assert run["started_at"] is not None and run["duration"] >= timedelta(0), run


def test_process_isolated_job_stuck_in_c_is_killed_at_its_timeout(dsn: str, tmp_path: Path) -> None:
    log = tmp_path / "executions.log"
    with runners(dsn, tmp_path, apps=[APP], profile=write_profile(tmp_path)) as procs:
        wait_registered(dsn, 1, procs)
        run = wait_status(dsn, request(dsn, "stuck-in-c", {"log": str(log)}), procs, timeout=30)
        after = wait_status(dsn, request(dsn, "echo", {"log": str(log)}), procs)
    took = (run["finished_at"] - run["started_at"]).total_seconds()
    print(f"\nstuck in C, timeout 1 s: {run['message']!r} after {took:.2f}s")
    assert run["status"] == "failed" and "worker process killed" in run["message"], run
    assert took < 10, "the worker was not killed"  # liveness only; the figure is printed
    assert after["status"] == "succeeded"


@pytest.mark.parametrize(
    ("job", "status", "check"),
    [
        ("returns-pending", "failed", lambda r: "status='pending'" in r["message"]),
        (
            "raises-base-exception",
            "failed",
            lambda r: (
                r["error"]["type"].endswith("Interrupt") and "Traceback" in r["error"]["traceback"]
            ),
        ),
        (
            "raises-cancelled",
            "failed",
            lambda r: (
                r["error"]["type"].endswith("CancelledError") and "shutdown" not in r["message"]
            ),
        ),
        (
            "nan-data",
            "succeeded",
            lambda r: r["data"] == {"nan": "NaN", "inf": "Infinity", "list": [1.5, "-Infinity"]},
        ),
    ],
)
def test_odd_results_end_their_run_once_with_the_right_row(
    dsn: str, tmp_path: Path, job: str, status: str, check: Any
) -> None:
    log = tmp_path / "executions.log"
    with runners(dsn, tmp_path, apps=[APP], profile=write_profile(tmp_path)) as procs:
        wait_registered(dsn, 1, procs)
        run_id = request(dsn, job, {"log": str(log)})
        run = wait_status(dsn, run_id, procs)
        # a barrier: a later request has run, so anything re-claiming the first would have
        wait_status(dsn, request(dsn, "echo", {"log": str(log)}), procs)
        rows = query(dsn, "SELECT id, status FROM pgsched.runs WHERE job_name = %s", [job])
    print(f"\n{job}: {run['status']} {run['message']!r}")
    assert run["status"] == status, run
    assert check(run), run
    assert len(executions(log, job)) == 1 and len(rows) == 1


def test_runner_with_a_leaked_non_daemon_thread_exits_after_its_grace_period(
    dsn: str, tmp_path: Path
) -> None:
    log = tmp_path / "executions.log"
    profile = write_profile(tmp_path, grace=1)
    with runners(dsn, tmp_path, apps=[APP], profile=profile) as procs:
        wait_registered(dsn, 1, procs)
        wait_status(dsn, request(dsn, "leaks-thread", {"log": str(log)}), procs)
        stopping = time.monotonic()
        procs[0].proc.send_signal(signal.SIGTERM)
        code = procs[0].wait(30)
    took = time.monotonic() - stopping
    print(f"\nleaked non-daemon thread: exit {code} {took:.2f}s after SIGTERM (grace 1 s)")
    assert code == 0
    assert took < 15, "the runner waited for the leaked thread"  # liveness; figure printed
    wait_until(lambda: not query(dsn, "SELECT 1 FROM pgsched.runners"), 5, "unregistered")
