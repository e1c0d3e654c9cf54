"""Out of connections, out loud: a runner whose role may open no more connections (ALTER ROLE
... CONNECTION LIMIT, the server's "too many connections for role") says why, in its log, its
/readyz and `pgsched health`; a job waiting for the jobs' pool fails within
runner.job_pool_timeout naming the pool, the setting and the server's reason."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from psycopg.conninfo import make_conninfo

from pgsched import Extension, JobContext
from pgsched.profile import Profile
from pgsched.registry import build_registry
from pgsched.runner import Runner
from pgsched.runner.supervisor import ControlThread
from pgsched.settings import RunnerSettings
from pgsched.store import Store
from tests.integration.test_runner_in_process import Log, synced
from tests.runners import pgsched, query, request, wait_until

ext = Extension("connections")


@ext.job("queries", overlap="allow", description="one query through ctx.pool")
def queries(ctx: JobContext) -> str:
    with ctx.connection() as conn:
        conn.execute("SELECT 1")
    return "queried"


REGISTRY = build_registry([ext], Profile(None, None))
REFUSED = "too many connections for role"


@pytest.fixture
def role_dsn(dsn: str) -> Iterator[tuple[str, str]]:
    """A runner role (not a superuser: CONNECTION LIMIT does not bind those) and its DSN."""
    role = f"pgsched_conns_{uuid.uuid4().hex[:8]}"
    query(dsn, f"CREATE ROLE {role} LOGIN")
    out = pgsched("grant", "runner", role, dsn=dsn)
    assert out.returncode == 0, out.stderr
    yield role, make_conninfo(dsn, user=role)
    query(dsn, f"DROP OWNED BY {role}")  # its grants in this database; then it may go
    query(dsn, f"DROP ROLE {role}")


@contextmanager
def runner_as(dsn: str, log: Log, **settings: Any) -> Iterator[Runner]:
    values = {"heartbeat_interval": 0.5, "lease_timeout": 3, "poll_interval": 0.5, **settings}
    runner = Runner(Store(dsn), REGISTRY, RunnerSettings(**values), log=log)
    thread = ControlThread(runner.serve())
    thread.start()
    try:
        yield runner
    finally:
        runner.request_stop()
        thread.join(60)
        assert not thread.is_alive()


def _logged(log: Log, event: str) -> list[dict[str, Any]]:
    return [kw for _, name, kw in list(log.events) if name == event]


def test_a_runner_refused_at_start_up_says_why_until_it_gets_in(
    dsn: str, role_dsn: tuple[str, str]
) -> None:
    role, runner_dsn = role_dsn
    synced(dsn, REGISTRY)
    query(dsn, f"ALTER ROLE {role} CONNECTION LIMIT 0")
    log = Log()
    with runner_as(runner_dsn, log, listen=False) as runner:
        down = wait_until(
            lambda: _logged(log, "database unavailable; retrying with backoff"),
            60,
            "the runner to say it cannot connect",
        )
        assert REFUSED in down[0]["error"], down
        assert "store pool 4" in down[0]["needs"] and "jobs' pools" in down[0]["needs"]
        probe = runner.readyz()
        assert not probe.ok and REFUSED in probe.reason, probe

        out = pgsched("health", dsn=runner_dsn)  # refused as well: unhealthy, with the reason
        assert out.returncode == 1, out.stdout + out.stderr
        assert REFUSED in out.stdout, out.stdout + out.stderr

        query(dsn, f"ALTER ROLE {role} CONNECTION LIMIT -1")
        wait_until(lambda: runner.readyz().ok, 60, "the runner to get in and be ready")
        assert query(dsn, "SELECT id FROM pgsched.runners WHERE id = %s", [runner.id])


def test_a_job_out_of_connections_fails_naming_the_pool_and_the_setting(
    dsn: str, role_dsn: tuple[str, str]
) -> None:
    role, runner_dsn = role_dsn
    synced(dsn, REGISTRY)
    log = Log()
    with runner_as(runner_dsn, log, listen=False, job_pool_timeout=0.5) as runner:
        wait_until(lambda: runner.readyz().ok, 60, "the runner to be ready")
        held = query(dsn, "SELECT count(*) AS n FROM pg_stat_activity WHERE usename = %s", [role])
        query(dsn, f"ALTER ROLE {role} CONNECTION LIMIT {held[0]['n']}")  # not one more

        run_id = request(dsn, "queries")
        row = wait_until(
            lambda: query(
                dsn,
                "SELECT status, message, error FROM pgsched.runs WHERE id = %s "
                "AND status IN ('succeeded', 'failed')",
                [run_id],
            ),
            60,
            "the job to end",
        )[0]
        assert row["status"] == "failed", row
        for said in ("'pgsched-jobs'", "runner.job_pool_timeout (0.5s)", REFUSED):
            assert said in row["message"], row["message"]
        assert row["error"]["type"] == "pgsched.connections.JobPoolTimeout"

        problem = _logged(log, "cannot get a database connection")
        assert problem and REFUSED in problem[0]["error"] and "LISTEN 0" in problem[0]["needs"]
        probe = runner.readyz()
        assert not probe.ok and "runner.job_pool_timeout" in probe.reason, probe

        out = pgsched("health", dsn=dsn)  # the admin connects: the failing runs say it
        assert out.returncode == 1, out.stdout + out.stderr
        assert "for want of a database connection" in out.stdout, out.stdout
        assert runner.id in out.stdout and REFUSED in out.stdout, out.stdout

        query(dsn, f"ALTER ROLE {role} CONNECTION LIMIT -1")
        wait_until(
            lambda: _succeeds_again(dsn), 60, "a job to succeed once connections are there again"
        )
        assert runner.readyz().ok, runner.readyz()


def _succeeds_again(dsn: str) -> bool:
    """The latest run succeeded; a new request when it failed (the jobs' pool may still be
    between two attempts of its own)."""
    latest = query(dsn, "SELECT id, status FROM pgsched.runs ORDER BY id DESC LIMIT 1")[0]
    if latest["status"] == "failed":
        request(dsn, "queries")
    return bool(latest["status"] == "succeeded")
