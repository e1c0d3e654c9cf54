"""Server settings that teams set (DESIGN.md "Where it runs"): each is made the test database's
default, then `pgsched migrate`, `sync`, real runner processes (scheduled ticks, a manual
request, a failing job's retry, a cancel) and the operator commands must all work under it."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.pg import PgServer
from tests.runners import (
    RunnerProcess,
    pgsched,
    query,
    request,
    runners,
    wait_registered,
    wait_status,
    wait_until,
    write_profile,
)

APP = ("--app", "tests.apps.basic:ext")

RETRY = """
scheduler:
  jobs:
    - job: raises
      max_attempts: 2
      retry_backoff: 0.2
"""

# (id, statements run as the admin on the fresh database; {db} is its name)
SETTINGS = [
    (
        "repeatable-read",
        ["ALTER DATABASE {db} SET default_transaction_isolation = 'repeatable read'"],
    ),
    ("serializable", ["ALTER DATABASE {db} SET default_transaction_isolation = 'serializable'"]),
    ("statement-timeout", ["ALTER DATABASE {db} SET statement_timeout = '200ms'"]),
    (
        "idle-in-transaction",
        ["ALTER DATABASE {db} SET idle_in_transaction_session_timeout = '500ms'"],
    ),
    ("lock-timeout", ["ALTER DATABASE {db} SET lock_timeout = '100ms'"]),
    ("synchronous-commit-off", ["ALTER DATABASE {db} SET synchronous_commit = off"]),
    ("timezone-chatham", ["ALTER DATABASE {db} SET TimeZone = 'Pacific/Chatham'"]),
    ("timezone-st-johns", ["ALTER DATABASE {db} SET TimeZone = 'America/St_Johns'"]),
    ("search-path-app", ["ALTER DATABASE {db} SET search_path = app"]),
    ("search-path-pgsched", ["ALTER DATABASE {db} SET search_path = pgsched"]),
]


@pytest.fixture
def blank(pg: PgServer) -> tuple[PgServer, str]:
    name = pg.new_database(migrated=False)
    yield pg, name  # type: ignore[misc]
    pg.drop_database(name)


def _admin_on(pg: PgServer, db: str, statements: list[str]) -> None:
    for statement in statements:
        query(pg.dsn_for(db), statement.format(db=db))


def _clean(procs: list[RunnerProcess]) -> None:
    """No duty failed, nothing was retried for want of the database, no traceback."""
    for p in procs:
        out = p.output()
        for bad in ("runner duty failed", "database unavailable", "Traceback", "a duty keeps"):
            assert bad not in out, f"{p.log_path.name}: {bad!r}\n{out[-4000:]}"


def _exercise(dsn: str, tmp: Path, count: int = 1) -> str:
    """migrate, sync, then runners through ticks, a request, a retry and a cancel."""
    out = pgsched("migrate", dsn=dsn)
    assert out.returncode == 0, out.stdout + out.stderr
    profile = write_profile(tmp, RETRY)
    out = pgsched(*APP, "sync", dsn=dsn, profile=profile)
    assert out.returncode == 0, out.stdout + out.stderr
    with runners(dsn, tmp, count, profile=profile) as procs:
        wait_registered(dsn, count, procs)
        wait_until(
            lambda: (
                query(
                    dsn,
                    "SELECT count(*) AS n FROM pgsched.runs WHERE job_name = 'tick-every-second' "
                    "AND status = 'succeeded'",
                )[0]["n"]
                >= 3 * count
            ),
            60,
            "scheduled ticks to succeed",
            procs,
        )
        echo = request(dsn, "echo-params", {"a": 1})
        assert wait_status(dsn, echo, procs, timeout=30)["status"] == "succeeded"

        failing = request(dsn, "raises")
        assert wait_status(dsn, failing, procs, timeout=30)["status"] == "failed"
        retried = wait_until(
            lambda: query(
                dsn,
                "SELECT status, attempt FROM pgsched.runs WHERE retry_of = %s "
                "AND status IN ('succeeded', 'failed')",
                [failing],
            ),
            30,
            "the failing job's retry to end",
            procs,
        )
        assert retried[0]["attempt"] == 2 and retried[0]["status"] == "failed"

        sleeper = request(dsn, "sleeps", {"seconds": 60})
        wait_status(dsn, sleeper, procs, ("running",), timeout=30)
        out = pgsched("jobs", "cancel", str(sleeper), dsn=dsn)
        assert out.returncode == 0, out.stdout + out.stderr
        assert wait_status(dsn, sleeper, procs, timeout=30)["status"] == "cancelled"

        out = pgsched(*APP, "jobs", "list", "--json", dsn=dsn)
        assert out.returncode == 0 and "tick-every-second" in out.stdout, out.stderr
        out = pgsched("health", dsn=dsn)
        assert out.returncode == 0, out.stdout + out.stderr

        ticks = query(
            dsn,
            "SELECT count(*) AS n, count(DISTINCT scheduled_for) AS d FROM pgsched.runs "
            "WHERE job_name = 'tick-every-second'",
        )[0]
        assert ticks["n"] == ticks["d"]  # never a tick twice
        assert all(p.alive for p in procs)
        _clean(procs)
        for p in procs:
            assert p.terminate() == 0, p.output()[-3000:]
        _clean(procs)
        return "".join(p.output() for p in procs)


@pytest.mark.parametrize(("name", "statements"), SETTINGS, ids=[s[0] for s in SETTINGS])
def test_pgsched_works_under_the_setting(
    blank: tuple[PgServer, str], tmp_path: Path, name: str, statements: list[str]
) -> None:
    pg, db = blank
    _admin_on(pg, db, statements)
    logged = _exercise(pg.dsn_for(db), tmp_path)
    if name == "statement-timeout":  # shorter than a big sync may take: said at start-up
        assert "server setting conflicts with pgsched" in logged
        assert "statement_timeout is 200ms" in logged
        assert "SET statement_timeout = 0" in logged
    else:
        assert "server setting conflicts with pgsched" not in logged


@pytest.mark.parametrize("level", ["repeatable read", "serializable"])
def test_two_runners_race_under_a_stricter_default_isolation(
    blank: tuple[PgServer, str], tmp_path: Path, level: str
) -> None:
    pg, db = blank
    _admin_on(pg, db, [f"ALTER DATABASE {{db}} SET default_transaction_isolation = '{level}'"])
    _exercise(pg.dsn_for(db), tmp_path, count=2)


def test_a_role_with_only_create_on_the_database_migrates_and_runs(
    blank: tuple[PgServer, str], tmp_path: Path
) -> None:
    pg, db = blank
    role = f"pgsched_owner_{uuid.uuid4().hex[:8]}"
    admin = pg.dsn_for(db)
    query(admin, f"CREATE ROLE {role} LOGIN PASSWORD 'owner'")
    query(admin, f"GRANT CREATE, CONNECT ON DATABASE {db} TO {role}")
    try:
        params = conninfo_to_dict(admin)
        params.update(user=role, password="owner")
        _exercise(make_conninfo(**params), tmp_path)  # type: ignore[arg-type]
    finally:
        query(admin, f"DROP OWNED BY {role}")
        query(admin, f"DROP ROLE {role}")
