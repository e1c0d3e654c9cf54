"""The suite's PostgreSQL version matrix itself (tests/conftest.py, tests/pg.py): each `pg`
param is the server it names, Debian's 15 keeps JIT on (what users run), and xdist groups
still reach the scheduler, so a group's module fixture is built once per version."""

from __future__ import annotations

import pytest

from tests.pg import PgServer
from tests.runners import query


def _version(request: pytest.FixtureRequest) -> str:
    version: str = request.node.callspec.params["pg"]
    if version == "dsn":
        pytest.skip("PGSCHED_TEST_DSN: whichever version that server is")
    return version


@pytest.mark.matrix
def test_each_server_is_the_version_its_test_id_names(
    pg: PgServer, request: pytest.FixtureRequest
) -> None:
    version = _version(request)
    rows = query(pg.admin_dsn, "SELECT current_setting('server_version_num')::int / 10000 AS v")
    assert str(rows[0]["v"]) == version


def test_debian_15_runs_with_jit_on_and_available(
    pg: PgServer, request: pytest.FixtureRequest
) -> None:
    if _version(request) != "15":
        pytest.skip("JIT is the point of Debian's 15; the embedded 18 is built without it")
    rows = query(pg.admin_dsn, "SELECT current_setting('jit') AS jit, pg_jit_available() AS ok")
    assert rows == [{"jit": "on", "ok": True}]


@pytest.mark.xdist_group("matrix-guard")
def test_a_grouped_test_carries_its_group_to_the_xdist_scheduler(
    request: pytest.FixtureRequest,
) -> None:
    """pytest-xdist's loadgroup names the group in the node id, which is all its scheduler
    reads; pytest 9.2 made that rename a no-op, and nothing grouped, silently."""
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("not under xdist --dist loadgroup")
    assert request.node.nodeid.endswith("@matrix-guard")
