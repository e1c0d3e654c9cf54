"""A primary failover under running runners (tests/standby.py).

A primary with a synchronous streaming standby; runners and a client reach them through one
multi-host DSN with target_session_attrs=read-write (URI and key/value forms). Mid-run the
primary is crashed (pg_ctl stop -m immediate) and the standby promoted. With synchronous
replication nothing committed is lost, so afterwards every tick has exactly one row, nothing
ran twice or is stuck, and every run that executed has its result. The test runs today's
runner unchanged; it prints the time from the crash to the first tick started on the new
primary.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.apps.topology import TICK_JOBS
from tests.ledger import Ledger, Requester
from tests.runners import pgsched, query, runners, wait_registered, wait_until, write_profile
from tests.standby import ReplicatedPair

pytestmark = pytest.mark.slow

APP = "tests.apps.topology:ext"
JOBS = [f"topo-tick-{n}" for n in range(TICK_JOBS)] + ["topo-db-sync", "topo-db-async"]
DB = "pgsched_failover"
BEFORE, AFTER = 4.0, 6.0  # seconds of running before the crash and after the promotion


@pytest.fixture
def pair() -> Iterator[ReplicatedPair]:
    pair = ReplicatedPair.start(synchronous=True)
    try:
        yield pair
    finally:
        pair.close()


def _now(dsn: str) -> datetime:
    return query(dsn, "SELECT now() AS t")[0]["t"]


def _settled(dsn: str) -> bool:
    row = query(
        dsn,
        "SELECT count(*) AS open FROM pgsched.runs WHERE status IN ('pending', 'running')"
        " AND (trigger <> 'schedule' OR run_after < now() - interval '2 seconds')",
    )
    return row[0]["open"] == 0


@pytest.mark.parametrize("form", ["uri", "keyword"])
def test_failover_to_a_synchronous_standby_loses_no_tick_and_no_result(
    pair: ReplicatedPair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    pair.primary.sql(f"CREATE DATABASE {DB}")
    dsn = pair.multi_host_dsn(DB, form)
    exec_log = tmp_path / "executions.txt"
    monkeypatch.setenv("TOPO_EXEC_LOG", str(exec_log))
    profile = write_profile(tmp_path)
    migrated = pgsched("migrate", dsn=dsn)
    assert migrated.returncode == 0, migrated.stderr
    assert pgsched("--app", APP, "sync", dsn=dsn, profile=profile).returncode == 0
    requester = Requester(dsn, "topo-manual", every=0.3)
    with runners(dsn, tmp_path, count=2, apps=[APP], profile=profile) as procs:
        wait_registered(dsn, 2, procs)
        start = _now(dsn)
        requester.start()
        time.sleep(BEFORE)
        crash_at = _now(dsn)
        pair.primary.crash()
        crashed = time.monotonic()
        pair.standby.promote()
        promoted_in = time.monotonic() - crashed
        first = wait_until(
            lambda: query(
                dsn,
                "SELECT min(started_at) AS t FROM pgsched.runs"
                " WHERE trigger = 'schedule' AND created_at > %s AND started_at IS NOT NULL",
                [crash_at],
            )[0]["t"],
            30,
            "a tick started on the new primary",
            procs,
        )
        time.sleep(AFTER)
        end = _now(dsn)
        requester.stop.set()
        requester.join(10)
        wait_until(lambda: _settled(dsn), 30, "every run to be final", procs)
        codes = [p.terminate(30) for p in procs]
    assert codes == [0, 0], codes

    assert query(dsn, "SELECT pg_is_in_recovery() AS r")[0]["r"] is False
    assert query(dsn, "SELECT inet_server_port() AS p")[0]["p"] == pair.standby.port
    ledger = Ledger.read(dsn, JOBS, start, end, exec_log)
    first_tick = (first - crash_at).total_seconds()
    print(
        "\n"
        + ledger.summary(
            f"failover ({form} multi-host DSN), synchronous standby, 2 runners, "
            f"{BEFORE:g}s before the crash, {AFTER:g}s after",
            "topo-manual",
        )
        + f"\n  manual requests       : {len(requester.sent)} sent, {requester.refused} refused"
        + f"\n  promotion took        : {promoted_in:.2f}s"
        + f"\n  crash -> first tick started on the new primary: {first_tick:.2f}s"
    )
    assert not ledger.missing, ledger.missing[:5]
    assert not ledger.duplicated, ledger.duplicated[:5]
    assert not ledger.executed_twice, ledger.executed_twice[:5]
    assert not ledger.not_final, ledger.not_final[:5]
    assert not ledger.results_lost, ledger.results_lost[:5]
    by_id = {r["id"]: r for r in ledger.runs}
    assert all(by_id[i]["status"] == "succeeded" for i in requester.sent)
    for p in procs:
        assert "Traceback" not in p.output(), p.output()[-3000:]


def test_a_result_lost_with_the_old_primary_is_written_again_not_failed(
    tmp_path: Path,
) -> None:
    """Asynchronous replication, and the tail is lost: a run's claim reached the standby, its
    result did not. On the promoted standby the run is still `running` under the runner's
    lease; the runner, which finished it, writes its result again instead of failing it as
    "claimed but never started"."""
    pair = ReplicatedPair.start(synchronous=False)
    try:
        pair.primary.sql(f"CREATE DATABASE {DB}")
        dsn = pair.multi_host_dsn(DB, "keyword")
        profile = tmp_path / "profile.yaml"  # a lease that outlasts the lost tail
        profile.write_text(
            "runner:\n  heartbeat_interval: 0.5\n  lease_timeout: 15\n  poll_interval: 1\n"
        )
        assert pgsched("migrate", dsn=dsn).returncode == 0
        app = "tests.apps.failover:ext"
        assert pgsched("--app", app, "sync", dsn=dsn, profile=profile).returncode == 0
        with runners(dsn, tmp_path, apps=[app], profile=profile) as procs:
            wait_registered(dsn, 1, procs)
            (row,) = query(
                dsn,
                "INSERT INTO pgsched.runs (job_name, params) VALUES ('slow-ok', "
                "'{\"seconds\": 2}') RETURNING id",
            )
            run_id = row["id"]

            def on_standby() -> str | None:
                rows = pair.standby.sql(
                    "SELECT status FROM pgsched.runs WHERE id = %s", [run_id], dbname=DB
                )
                return rows[0][0] if rows and rows[0][0] == "running" else None

            wait_until(on_standby, 10, "the claim replicated to the standby", procs)
            # Cut replication: from now on the standby receives nothing.
            pair.standby.sql("ALTER SYSTEM SET primary_conninfo = ''")
            pair.standby.sql("SELECT pg_reload_conf()")
            wait_until(
                lambda: not pair.primary.sql("SELECT 1 FROM pg_stat_replication"),
                10,
                "replication cut",
                procs,
            )
            wait_until(  # the result reaches the old primary only
                lambda: pair.primary.sql(
                    "SELECT 1 FROM pgsched.runs WHERE id = %s AND status = 'succeeded'",
                    [run_id],
                    dbname=DB,
                ),
                15,
                "the run to finish on the old primary",
                procs,
            )
            pair.primary.crash()
            pair.standby.promote()
            run = wait_until(
                lambda: (
                    (r := query(dsn, "SELECT * FROM pgsched.runs WHERE id = %s", [run_id])[0])[
                        "status"
                    ]
                    != "running"
                    and r
                ),
                30,
                "the run to be final on the new primary",
                procs,
            )
            output = procs[0].output()
    finally:
        pair.close()
    print(f"\nlost tail: on the new primary the run is {run['status']}: {run['message']!r}")
    assert run["status"] == "succeeded", run
    assert run["message"] == f"done in run {run_id}"
    assert "writing results again" in output
