"""pgsched's pytest plugin: fixtures that run a job the way a runner would (pgsched.testing).

Registered as the `pytest11` entry point `pgsched` (disable with `-p no:pgsched`). A module
of its own, outside the package: pytest imports every installed plugin at start-up, and
importing `pgsched` (croniter, asyncio, zoneinfo) would slow down every test session of every
project with pgsched installed, whether it uses these fixtures or not; hypothesis ships its
plugin the same way. Nothing here is autouse, and pgsched loads only when a fixture is used.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pgsched import JobResult

ENV_DSN = "PGSCHED_TEST_DATABASE_URL"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pgsched", "pgsched: running jobs in tests")
    group.addoption(
        "--pgsched-dsn",
        dest="pgsched_dsn",
        metavar="URL",
        help=f"the database the pgsched_run fixture's jobs connect to (default: ${ENV_DSN})",
    )


@pytest.fixture(scope="session")
def pgsched_dsn(pytestconfig: pytest.Config) -> str:
    """The database jobs run on: `--pgsched-dsn`, else `$PGSCHED_TEST_DATABASE_URL`; override
    this fixture to hand over a database your own fixtures create. Never the scheduler's
    PGSCHED_DATABASE_URL: jobs under test write to the database they are given."""
    dsn = pytestconfig.getoption("pgsched_dsn") or os.environ.get(ENV_DSN)
    if not dsn:
        pytest.fail(
            f"no database for pgsched's job fixtures: pass --pgsched-dsn URL, set {ENV_DSN}, "
            "or override the `pgsched_dsn` fixture in your conftest.py",
            pytrace=False,
        )
    return str(dsn)


@pytest.fixture
def pgsched_run(pgsched_dsn: str) -> Callable[..., JobResult]:
    """`pgsched.testing.run_job` on `pgsched_dsn`: `pgsched_run(app, "job-name", params=...)`."""
    from pgsched.testing import run_job

    return functools.partial(run_job, dsn=pgsched_dsn)


@pytest.fixture
def pgsched_arun(pgsched_dsn: str) -> Callable[..., Awaitable[JobResult]]:
    """`pgsched.testing.arun_job` on `pgsched_dsn`, for async tests: `await pgsched_arun(...)`."""
    from pgsched.testing import arun_job

    return functools.partial(arun_job, dsn=pgsched_dsn)
