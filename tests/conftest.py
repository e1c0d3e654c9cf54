from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.pg import INSTALL, VERSIONS, PgServer, bin_dir, start_server

pytest_plugins = ["tests.pgbouncer"]  # the `pgbouncer` fixture

ROOT = Path(__file__).resolve().parent.parent

# The PostgreSQL version matrix: every test that uses the server runs once per version.
# PGSCHED_TEST_PG picks versions ("18", "18,15"; default all); PGSCHED_TEST_DSN replaces
# them by that one server. 16 and 17 run only the tests marked `matrix`.
TIER_ONLY = {"16", "17"}


def _chosen_versions() -> list[str]:
    if os.environ.get("PGSCHED_TEST_DSN"):
        return ["dsn"]
    chosen = os.environ.get("PGSCHED_TEST_PG", ",".join(VERSIONS)).split(",")
    return [v.strip() for v in chosen if v.strip()]


def _missing(version: str) -> str | None:
    if version == "dsn" or bin_dir(version) is not None:
        return None
    return f"PostgreSQL {version} is not installed: install {INSTALL[version]}"


def _pg_params() -> list[object]:
    params: list[object] = []
    for version in _chosen_versions():
        if version not in (*VERSIONS, "dsn"):
            continue  # pytest_configure refuses it
        reason = _missing(version)
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        params.append(
            pytest.param(version, id="dsn" if version == "dsn" else f"pg{version}", marks=marks)
        )
    return params


def pytest_configure(config: pytest.Config) -> None:
    """Refuse unknown versions; under CI every chosen version must be there: a missing one
    fails the run, saying what to install, instead of quietly skipping half the suite."""
    chosen = _chosen_versions()
    if not chosen or any(v not in (*VERSIONS, "dsn") for v in chosen):
        raise pytest.UsageError(
            f"PGSCHED_TEST_PG={os.environ.get('PGSCHED_TEST_PG')!r}: choose among "
            f"{', '.join(VERSIONS)} (comma-separated)"
        )
    if os.environ.get("CI") == "true":
        missing = [m for v in chosen if (m := _missing(v))]
        if missing:
            raise pytest.UsageError("; ".join(missing))


FAST_VERSIONS = {"18"}  # plain `pytest`: the embedded server only (no install needed)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--full",
        action="store_true",
        help="the whole suite: slow process tests and the browser too, on every PostgreSQL "
        "version of the matrix (what CI runs: the README's test command). Without it, the "
        "fast tier: tests not marked slow, on the embedded PostgreSQL 18 (or PGSCHED_TEST_PG).",
    )


def pytest_report_header(config: pytest.Config) -> str:
    if config.getoption("--full"):
        return "pgsched: the full suite (--full)"
    return "pgsched: the fast tier (no slow tests; pass --full for the whole suite, as CI)"


def _pg_version(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    return None if callspec is None else callspec.params.get("pg")


@pytest.hookimpl(tryfirst=True)  # before xdist appends the group names to the node ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect what 16 and 17 do not run (and, without --full, what the fast tier leaves
    out), and give each version its own xdist groups: a
    group's module fixture is one per version anyway, so its versions may run on different
    workers."""
    full = config.getoption("--full")
    versions_chosen = "PGSCHED_TEST_PG" in os.environ or "PGSCHED_TEST_DSN" in os.environ
    keep, drop = [], []
    for item in items:
        version = _pg_version(item)
        fast_out = not full and (
            item.get_closest_marker("slow") is not None
            or (version is not None and not versions_chosen and version not in FAST_VERSIONS)
        )
        if fast_out or (version in TIER_ONLY and item.get_closest_marker("matrix") is None):
            drop.append(item)
            continue
        keep.append(item)
        if version is not None:
            for mark in list(item.iter_markers("xdist_group")):
                name = mark.args[0] if mark.args else mark.kwargs.get("name", "default")
                item.add_marker(pytest.mark.xdist_group(f"{name}-pg{version}"))
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def pg_servers() -> Iterator[dict[str, PgServer]]:
    """The servers this process started, by version, all stopped at the end of the session.
    Kept here rather than in `pg`: pytest tears a parametrized fixture down whenever the next
    test wants another version, and a worker may switch back and forth."""
    servers: dict[str, PgServer] = {}
    yield servers
    for server in servers.values():
        server.close()


@pytest.fixture(scope="session", params=_pg_params())
def pg(request: pytest.FixtureRequest, pg_servers: dict[str, PgServer]) -> PgServer:
    """The server of one version of the matrix, started on first use in this process."""
    version: str = request.param
    if version in _failed:
        pytest.fail(f"PostgreSQL {version} did not start in this process: {_failed[version]}")
    if version not in pg_servers:
        try:
            server = start_server(version)
        except Exception as exc:
            _failed[version] = exc  # once: not again for each of its tests
            raise
        pg_servers[version] = server
        server.prepare_template()
    return pg_servers[version]


_failed: dict[str, Exception] = {}


@pytest.fixture
def dsn(pg: PgServer) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    name = pg.new_database()
    yield pg.dsn_for(name)
    pg.drop_database(name)


@pytest.fixture
def empty_dsn(pg: PgServer) -> Iterator[str]:
    """A fresh database with no pgsched schema."""
    name = pg.new_database(migrated=False)
    yield pg.dsn_for(name)
    pg.drop_database(name)


@pytest.fixture
def sql(dsn: str) -> Iterator[psycopg.Connection[dict[str, object]]]:
    """A plain psycopg connection, as any other client of the database would have."""
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture
def cli_env(dsn: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PGSCHED_DATABASE_URL"] = dsn
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("PGSCHED_PROFILE", None)
    return env


PYTHON = sys.executable
