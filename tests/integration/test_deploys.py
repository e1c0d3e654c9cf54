"""Rolling deploys: runners know which code they carry (DESIGN.md, Part 2). Real runner
processes of two code versions against one database."""

from __future__ import annotations

import signal
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from tests.runners import (
    RunnerProcess,
    query,
    request,
    wait_registered,
    wait_until,
    write_profile,
)

pytestmark = pytest.mark.slow

V1, V2 = "tests.apps.deploy:v1", "tests.apps.deploy:v2"


def run_done(dsn: str, run_id: int) -> str | None:
    status: str = query(dsn, "SELECT status FROM pgsched.runs WHERE id = %s", [run_id])[0]["status"]
    return status if status not in ("pending", "running") else None


def test_a_rolling_deploy_of_two_code_versions_fails_nothing_and_loses_nothing(
    dsn: str, tmp_path: Path
) -> None:
    profile = write_profile(tmp_path)
    a = RunnerProcess(dsn, [V1], tmp_path / "v1.log", profile)
    b: RunnerProcess | None = None
    try:
        wait_registered(dsn, 1, [a])
        b = RunnerProcess(dsn, [V2], tmp_path / "v2.log", profile)  # v2 starts: syncs, claims
        wait_registered(dsn, 2, [a, b])
        both = query(dsn, "SELECT now() AS t")[0]["t"]
        requested, orphaned_seen = [], []
        end = time.monotonic() + 20  # v1 and v2 side by side for 20 s
        while time.monotonic() < end:  # a stream of v1-only requests while both versions run
            requested.append(request(dsn, "manual-a", {}))
            orphaned_seen += query(dsn, "SELECT name FROM pgsched.jobs WHERE orphaned")
            time.sleep(0.2)
        a_stopped = query(dsn, "SELECT now() AS t")[0]["t"]
        a.proc.send_signal(signal.SIGTERM)
        assert a.wait(30) == 0, a.output()[-2000:]
        late = [request(dsn, "manual-a", {}) for _ in range(3)]  # no v1 runner lives now
        wait_until(
            lambda: query(dsn, "SELECT orphaned FROM pgsched.jobs WHERE name = 'only-a'")[0][
                "orphaned"
            ],
            10,
            "only-a orphaned once the last v1 runner left",
            [a, b],
        )
        after = query(dsn, "SELECT status FROM pgsched.runs WHERE id = ANY(%s)", [late])
        time.sleep(1.5)  # more than the poll interval: v2 could have claimed them by now
        after = query(dsn, "SELECT status FROM pgsched.runs WHERE id = ANY(%s)", [late])
        # v1 is deployed again after a few of only-a's ticks went by: the job returns, and the
        # gap goes through its misfire policy (recorded) instead of vanishing
        time.sleep(4)
        a = RunnerProcess(dsn, [V1], tmp_path / "v1-again.log", profile)
        back = wait_until(
            lambda: query(
                dsn,
                "SELECT message FROM pgsched.runs WHERE job_name = 'only-a' "
                "AND message LIKE 'missed:%%' LIMIT 1",
            ),
            30,
            "the gap recorded through the misfire policy",
            [a, b],
        )
        served = [wait_until(lambda i=i: run_done(dsn, i), 30, "late requests", [a]) for i in late]
    finally:
        for p in (a, b):
            if p is not None and p.alive:
                p.proc.send_signal(signal.SIGKILL)
                p.wait(10)
    runs = query(dsn, "SELECT * FROM pgsched.runs ORDER BY id")
    failed = [r for r in runs if r["status"] == "failed"]
    manual = Counter(r["status"] for r in runs if r["id"] in set(requested))
    ticks = Counter(
        r["scheduled_for"]
        for r in runs
        if r["job_name"] == "only-a"
        and both + timedelta(seconds=1) < r["scheduled_for"] < a_stopped - timedelta(seconds=1)
    )
    expected = int((a_stopped - both).total_seconds() - 2) // 2
    waited = Counter(r["status"] for r in after)
    print(
        f"\nrolling deploy: {len(requested)} v1-only requests while both ran: {dict(manual)}; "
        f"only-a ticks while both ran: {len(ticks)} (about {expected} expected), "
        f"failed runs: {len(failed)}; after the last v1 runner left: {dict(waited)}; "
        f"v1 back: {back[0]['message']!r}, the waiting requests {served}"
    )
    assert not failed, [(r["job_name"], r["message"]) for r in failed[:5]]
    assert not orphaned_seen, "nothing is orphaned while a runner that defines it lives"
    assert set(manual) <= {"succeeded"}, manual  # all run by v1, none failed by v2
    assert ticks and max(ticks.values()) == 1 and len(ticks) >= expected - 1
    assert {r["status"] for r in after} == {"pending"}, "they wait for code that defines them"
    assert "misfire=once" in back[0]["message"]
    assert served == ["succeeded"] * 3
