"""Sync and migration serialise on locks only writers can take; a lasting wait names the holder
and ends with a clear error after database.lock_timeout."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.runners import (
    ROOT,
    env_for,
    pgsched,
    query,
    runners,
    wait_registered,
    wait_until,
    write_profile,
)

APP = ("--app", "tests.apps.basic:ext")


def _role(dsn: str, kind: str) -> str:
    name = f"pgsched_{kind}_{uuid.uuid4().hex[:8]}"
    query(dsn, f'CREATE ROLE "{name}" LOGIN')
    out = pgsched("grant", kind, name, dsn=dsn)
    assert out.returncode == 0, out.stderr
    return make_conninfo(dsn, user=name)


def _hold_every_lock_a_reader_can_take(conn: psycopg.Connection[object]) -> list[str]:
    """In the open transaction of `conn`: the old advisory keys (session and transaction
    level) and every table lock the role may take; returns what was refused."""
    conn.execute("SELECT pg_advisory_lock(hashtext('pgsched.sync.pgsched'))")
    conn.execute("SELECT pg_advisory_lock(hashtext('pgsched.migrate.pgsched'))")
    conn.execute("SELECT pg_advisory_xact_lock_shared(hashtext('pgsched.sync.pgsched'))")
    conn.execute("SELECT count(*) FROM pgsched.jobs, pgsched.runs, pgsched.runners")
    refused = []
    for table in ("jobs", "runs", "runners", "sync_lock", "alembic_version"):
        for mode in ("ACCESS SHARE", "ROW SHARE", "EXCLUSIVE"):
            conn.execute("SAVEPOINT try_lock")
            try:
                conn.execute(f"LOCK TABLE pgsched.{table} IN {mode} MODE")  # type: ignore[arg-type]
                conn.execute("RELEASE SAVEPOINT try_lock")
            except psycopg.errors.InsufficientPrivilege:
                conn.execute("ROLLBACK TO SAVEPOINT try_lock")
                refused.append(f"{table} {mode}")
    for table in ("jobs", "runs", "runners", "sync_lock"):
        conn.execute("SAVEPOINT try_lock")
        try:
            conn.execute(f"SELECT 1 FROM pgsched.{table} FOR KEY SHARE")  # type: ignore[arg-type]
            conn.execute("RELEASE SAVEPOINT try_lock")
        except psycopg.errors.InsufficientPrivilege:
            conn.execute("ROLLBACK TO SAVEPOINT try_lock")
    return refused


def test_a_reader_holding_every_lock_it_can_take_stops_no_sync_migrate_or_runner(
    dsn: str, tmp_path: Path
) -> None:
    assert pgsched(*APP, "sync", dsn=dsn).returncode == 0
    reader = _role(dsn, "reader")
    profile = write_profile(tmp_path, "\ndatabase:\n  lock_timeout: 10\n")
    with psycopg.connect(reader, application_name="curious-reader") as conn:
        refused = _hold_every_lock_a_reader_can_take(conn)
        # It holds ACCESS SHARE on what it may read, and may lock nothing more.
        assert "jobs ACCESS SHARE" not in refused and "jobs EXCLUSIVE" in refused
        assert {"sync_lock ACCESS SHARE", "alembic_version ACCESS SHARE"} <= set(refused)
        started = time.monotonic()
        synced = pgsched(*APP, "sync", dsn=dsn, profile=profile, timeout=30)
        migrated = pgsched("migrate", dsn=dsn, profile=profile, timeout=30)
        assert synced.returncode == 0, synced.stderr
        assert migrated.returncode == 0, migrated.stderr
        assert "waiting for a lock" not in synced.stderr + migrated.stderr
        with runners(dsn, tmp_path, profile=profile) as procs:
            wait_registered(dsn, 1, procs, timeout=30)
        print(
            f"sync, migrate and a runner start beside the reader: {time.monotonic() - started:.1f}s"
        )


def test_a_runner_role_may_take_the_sync_lock_and_not_the_migration_lock(dsn: str) -> None:
    runner = _role(dsn, "runner")
    with psycopg.connect(runner) as conn:
        conn.execute("LOCK TABLE pgsched.sync_lock IN EXCLUSIVE MODE")
        conn.rollback()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("LOCK TABLE pgsched.alembic_version IN EXCLUSIVE MODE")
    out = pgsched("migrate", dsn=runner)
    assert out.returncode == 2
    assert "cannot lock" in out.stderr and "as the schema's owner" in out.stderr


@pytest.mark.parametrize(
    ("command", "table"), [(("sync",), "sync_lock"), (("migrate",), "alembic_version")]
)
def test_a_writer_holding_the_lock_is_reported_and_the_wait_gives_up(
    dsn: str, tmp_path: Path, command: tuple[str, ...], table: str
) -> None:
    profile = write_profile(tmp_path, "\ndatabase:\n  lock_timeout: 2\n")
    with psycopg.connect(dsn, application_name="long-maintenance") as holder:
        pid = holder.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
        holder.execute(f"LOCK TABLE pgsched.{table} IN EXCLUSIVE MODE")  # type: ignore[arg-type]
        started = time.monotonic()
        out = pgsched(*APP, *command, dsn=dsn, profile=profile, timeout=30)
        took = time.monotonic() - started
    print(out.stderr)
    assert out.returncode == 1
    waiting = [line for line in out.stderr.splitlines() if "waiting for a lock" in line]
    assert len(waiting) == 1 and f"pid {pid}" in waiting[0] and "long-maintenance" in waiting[0]
    error = out.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ") and "gave up after waiting 2s" in error
    assert f"pid {pid}" in error and "long-maintenance" in error
    assert re.search(rf"pg_terminate_backend\({pid}\)", error)
    assert "database.lock_timeout" in error
    print(f"{' '.join(command)} gave up after {took:.1f}s (lock_timeout 2s)")


@pytest.mark.parametrize(
    ("command", "table"), [(("sync",), "sync_lock"), (("migrate",), "alembic_version")]
)
def test_a_wait_reported_then_granted_goes_on_in_the_same_transaction(
    dsn: str, tmp_path: Path, command: tuple[str, ...], table: str
) -> None:
    profile = write_profile(tmp_path, "\ndatabase:\n  lock_timeout: 60\n")
    stderr = tmp_path / "stderr.log"
    with psycopg.connect(dsn, application_name="brief-maintenance") as holder:
        holder.execute(f"LOCK TABLE pgsched.{table} IN EXCLUSIVE MODE")  # type: ignore[arg-type]
        with open(stderr, "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "pgsched", *APP, *command],
                env=env_for(dsn, profile),
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        try:
            wait_until(lambda: "waiting for a lock" in stderr.read_text(), 30, "the report")
            holder.rollback()  # let go: the waiting command takes the lock and goes on
            assert proc.wait(30) == 0, stderr.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
    text = stderr.read_text()
    assert text.count("waiting for a lock") == 1 and "brief-maintenance" in text
    if command == ("sync",):
        assert "synced" in text
    assert query(dsn, "SELECT version_num FROM pgsched.alembic_version") == [
        {"version_num": "0010"}
    ]
