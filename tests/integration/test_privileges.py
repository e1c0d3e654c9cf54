"""Least privilege for the three kinds of client, and a configurable (quoted) schema name."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.runners import pgsched, query, runners, wait_registered, wait_until, write_profile

APP = ("--app", "tests.apps.basic:ext")


def _role(dsn: str, kind: str) -> str:
    name = f"pgsched_{kind}_{uuid.uuid4().hex[:8]}"
    query(dsn, f'CREATE ROLE "{name}" LOGIN')
    out = pgsched("grant", kind, name, dsn=dsn)
    assert out.returncode == 0, out.stderr
    return make_conninfo(dsn, user=name)


def test_requester_may_request_and_read_but_not_rewrite_history(dsn: str) -> None:
    assert pgsched(*APP, "sync", dsn=dsn).returncode == 0
    requester = _role(dsn, "requester")
    with psycopg.connect(requester, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO pgsched.runs (job_name, params) VALUES "
            "('echo-params', '{\"a\": 1}') RETURNING id"
        ).fetchone()
        assert row is not None
        assert conn.execute("SELECT count(*) FROM pgsched.runs").fetchone() == (1,)
        denied = [
            "UPDATE pgsched.runs SET status = 'succeeded'",
            "DELETE FROM pgsched.runs",
            "INSERT INTO pgsched.runs (job_name, status) VALUES ('echo-params', 'succeeded')",
            "UPDATE pgsched.jobs SET paused = true",
            "DELETE FROM pgsched.runners",
        ]
        for statement in denied:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)  # type: ignore[arg-type]


def test_requester_may_add_edit_and_remove_runtime_schedules_only(dsn: str) -> None:
    import pgsched as api

    assert pgsched(*APP, "sync", dsn=dsn).returncode == 0
    query(
        dsn,
        "INSERT INTO pgsched.runs (job_name, trigger, status, scheduled_for, schedule_key) "
        "VALUES ('echo-params', 'schedule', 'pending', now() + interval '1 hour', 't-1')",
    )
    requester = _role(dsn, "requester")
    with psycopg.connect(requester, autocommit=True) as conn:
        sched = api.add_schedule(conn, "echo-params", key="t-1", cron="@daily", params={"t": 1})
        assert sched.next_run_at is not None
        conn.execute("UPDATE pgsched.schedules SET params = '{\"t\": 2}' WHERE key = 't-1'")
        replaced = api.add_schedule(
            conn, "echo-params", key="t-1", cron="@hourly", if_exists="replace"
        )
        assert replaced.cron == "@hourly"
        denied = [
            "UPDATE pgsched.schedules SET source = 'code'",
            "UPDATE pgsched.schedules SET job_active = false",
            "UPDATE pgsched.schedules SET job_name = 'other'",
        ]
        for statement in denied:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)  # type: ignore[arg-type]
        # deleting cancels the schedule's waiting ticks, which the requester may not write
        # itself (the trigger does, as the schema's owner)
        assert api.remove_schedule(conn, "echo-params", "t-1") is True
    (run,) = query(dsn, "SELECT status, message FROM pgsched.runs WHERE schedule_key = 't-1'")
    assert run["status"] == "cancelled" and "'t-1'" in run["message"]


def test_only_sync_writes_code_schedules_and_a_requester_is_told_why(dsn: str) -> None:
    """A requester moving the code schedule's next tick to 2099 stopped the job until the next
    runner restart. The code/profile rows are sync's (the owner's and runner roles'): a
    requester is refused with the schedule's name and what to do instead, and keeps full
    control of runtime rows; it cannot turn one kind into the other either."""
    import pgsched as api

    assert pgsched(*APP, "sync", dsn=dsn).returncode == 0
    default = "job_name = 'tick-every-second' AND key = 'default'"
    before = query(dsn, f"SELECT * FROM pgsched.schedules WHERE {default}")
    requester = _role(dsn, "requester")
    with psycopg.connect(requester, autocommit=True) as conn:
        api.add_schedule(conn, "tick-every-second", key="extra", cron="@hourly")
        refused = [
            f"UPDATE pgsched.schedules SET next_run_at = '2099-01-01' WHERE {default}",
            f"UPDATE pgsched.schedules SET paused = true WHERE {default}",
            f"UPDATE pgsched.schedules SET cron = '@yearly', error = NULL WHERE {default}",
            f"DELETE FROM pgsched.schedules WHERE {default}",
            # all of the job's rows, the code one included
            "UPDATE pgsched.schedules SET paused = true WHERE job_name = 'tick-every-second'",
        ]
        for statement in refused:
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as caught:
                conn.execute(statement)  # type: ignore[arg-type]
            diag = caught.value.diag
            assert "schedule 'default' of job 'tick-every-second'" in str(diag.message_primary)
            assert "code/profile" in str(diag.message_primary), diag.message_primary
            assert "pgsched jobs pause tick-every-second" in str(diag.message_hint)
        # its identity and kind are not the requester's to change, on either kind of row
        for statement in [
            f"UPDATE pgsched.schedules SET source = 'runtime' WHERE {default}",
            "UPDATE pgsched.schedules SET source = 'code' WHERE key = 'extra'",
            "UPDATE pgsched.schedules SET key = 'default' WHERE key = 'extra'",
            "UPDATE pgsched.schedules SET job_name = 'tick-every-two' WHERE key = 'extra'",
        ]:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)  # type: ignore[arg-type]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO pgsched.schedules (job_name, key, cron, source)"
                " VALUES ('tick-every-two', 'x', '@daily', 'code')"
            )
        # runtime rows stay the requester's: edit, pause, move, remove
        conn.execute(
            "UPDATE pgsched.schedules SET paused = true, params = '{\"a\": 1}',"
            " next_run_at = '2099-01-01' WHERE key = 'extra'"
        )
        assert api.remove_schedule(conn, "tick-every-second", "extra") is True
    assert query(dsn, f"SELECT * FROM pgsched.schedules WHERE {default}") == before
    # the runner role keeps writing the code rows (sync, claims)
    runner = _role(dsn, "runner")
    with psycopg.connect(runner, autocommit=True) as conn:
        conn.execute(f"UPDATE pgsched.schedules SET next_run_at = now() WHERE {default}")
    assert pgsched(*APP, "sync", dsn=runner).returncode == 0


def test_reader_may_only_select(dsn: str) -> None:
    assert pgsched(*APP, "sync", dsn=dsn).returncode == 0
    reader = _role(dsn, "reader")
    with psycopg.connect(reader, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pgsched.jobs").fetchone() is not None
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO pgsched.runs (job_name) VALUES ('echo-params')")


def test_runner_role_can_sync_claim_and_record(dsn: str, tmp_path: Path) -> None:
    runner_dsn = _role(dsn, "runner")
    with runners(runner_dsn, tmp_path, profile=write_profile(tmp_path)) as procs:
        wait_registered(dsn, 1, procs)
        query(dsn, "INSERT INTO pgsched.runs (job_name) VALUES ('echo-params') RETURNING id")
        wait_until(
            lambda: query(
                dsn,
                "SELECT 1 FROM pgsched.runs WHERE job_name = 'echo-params'"
                " AND status = 'succeeded'",
            ),
            20,
            "the run",
            procs,
        )
        assert procs[0].terminate() == 0
    with (
        psycopg.connect(runner_dsn, autocommit=True) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("DROP TABLE pgsched.runs")


def test_schema_name_is_configurable_and_quoted(empty_dsn: str, tmp_path: Path) -> None:
    profile = write_profile(tmp_path, '\ndatabase:\n  schema: "Sched_Test"\n')
    migrated = pgsched("migrate", dsn=empty_dsn, profile=profile)
    assert migrated.returncode == 0, migrated.stderr
    with runners(empty_dsn, tmp_path, profile=profile) as procs:
        wait_until(
            lambda: query(empty_dsn, 'SELECT 1 FROM "Sched_Test".runners'), 30, "the runner", procs
        )
        query(
            empty_dsn,
            "INSERT INTO \"Sched_Test\".runs (job_name) VALUES ('echo-params') RETURNING id",
        )
        wait_until(
            lambda: query(
                empty_dsn, "SELECT 1 FROM \"Sched_Test\".runs WHERE status = 'succeeded'"
            ),
            20,
            "the run",
            procs,
        )
    assert query(empty_dsn, "SELECT to_regclass('pgsched.runs') AS t")[0]["t"] is None
