from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.pg import PgServer

pytest_plugins = ["tests.pgbouncer"]  # the `pgbouncer` fixture

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    server = PgServer.start()
    server.prepare_template()
    yield server
    server.close()


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
