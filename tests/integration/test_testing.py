"""pgsched.testing, users' way to run one job in their own tests: on a real database without
the pgsched schema (`empty_dsn`, the user's situation), with a real JobContext, and through
the pytest plugin's fixtures in a test session of a user's own (pytester)."""

from __future__ import annotations

import asyncio
import logging
import threading
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from pgsched import Extension, Job, JobContext, JobResult, ProfileError, UnknownJobError
from pgsched.errors import ConfigError
from pgsched.testing import JobTimedOut, arun_job, run_job

pytest_plugins = ["pytester"]

ext = Extension("shop")
seen: dict[str, Any] = {}  # what the jobs saw of their context, for the tests to check
cancelled = threading.Event()  # set by shop-wait-for-cancel once its ctx says so


@ext.job("shop-record-order")
def record_order(ctx: JobContext) -> JobResult:
    with ctx.connection() as conn:
        conn.execute(
            "INSERT INTO orders (item, run_id) VALUES (%s, %s)", [ctx.params["item"], ctx.run_id]
        )
    seen["pool"] = ctx.pool
    return JobResult.success("recorded").with_stats(processed=1).with_data({"item": "tea"})


@ext.job("shop-count-orders")
async def count_orders(ctx: JobContext) -> str:
    async with ctx.aconnection() as conn:
        cur = await conn.execute("SELECT count(*) FROM orders")
        row = await cur.fetchone()
    seen["apool"] = ctx.apool
    assert row is not None
    return f"{row[0]} orders"


@ext.job("shop-echo")
def echo(ctx: JobContext) -> JobResult:
    return JobResult.success().with_data(
        {
            "params": dict(ctx.params),
            "trigger": ctx.trigger,
            "attempt": ctx.attempt,
            "scheduled_for": ctx.scheduled_for and ctx.scheduled_for.isoformat(),
            "schedule_key": ctx.schedule_key,
            "job_name": ctx.job_name,
        }
    )


@ext.job("shop-ship")
def ship(ctx: JobContext) -> None:
    ctx.log.info("shipped", parcels=2)


@ext.job("shop-refund")
def refund(ctx: JobContext) -> None:
    raise ValueError(f"no order {ctx.params.get('order')}")


@ext.job("shop-odd-return")
def odd_return(ctx: JobContext) -> Any:
    return 42


@ext.job("shop-wait-for-cancel", timeout="1h")
def wait_for_cancel(ctx: JobContext) -> str:
    if ctx.wait_cancelled(60):
        cancelled.set()
        return "cancelled"
    return "never told"


class Restock(Job):
    name = "shop-restock"
    description = "a class-based job"

    async def execute(self, ctx: JobContext) -> None:
        await asyncio.sleep(0)


class Warehouse(Extension):
    name = "warehouse"

    def jobs(self) -> list[Job]:
        return [Restock()]


@pytest.fixture
def orders(empty_dsn: str) -> str:
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (item text NOT NULL, run_id bigint NOT NULL)")
    return empty_dsn


def rows(dsn: str, statement: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(statement).fetchall()


def test_a_sync_job_writes_through_ctx_pool_and_returns_its_result(orders: str) -> None:
    result = run_job(ext, "shop-record-order", dsn=orders, params={"item": "tea"})
    assert result == JobResult.success("recorded").with_stats(1).with_data({"item": "tea"})
    ((item, run_id),) = rows(orders, "SELECT item, run_id FROM orders")
    assert item == "tea" and run_id > 0
    # the job's pool is the runner's kind, and the helper closed it; no pgsched schema came
    assert type(seen["pool"]).__name__ == "JobPool" and seen["pool"].closed
    assert rows(orders, "SELECT to_regnamespace('pgsched')") == [(None,)]


def test_an_async_job_uses_ctx_apool(orders: str) -> None:
    run_job(ext, "shop-record-order", dsn=orders, params={"item": "tea"})
    assert run_job(ext, "shop-count-orders", dsn=orders).message == "1 orders"
    assert type(seen["apool"]).__name__ == "AsyncJobPool" and seen["apool"].closed


def test_jobs_use_the_tests_own_pools_and_leave_them_open(orders: str) -> None:
    async def both() -> tuple[JobResult, JobResult]:
        async with AsyncConnectionPool(orders, min_size=1, open=False) as apool:
            first = await arun_job(ext, "shop-record-order", pool=sync_pool, params={"item": "jam"})
            second = await arun_job(ext, "shop-count-orders", apool=apool)
            assert seen["apool"] is apool and not apool.closed
            return first, second

    with ConnectionPool(orders, min_size=1, open=True) as sync_pool:
        first, second = asyncio.run(both())
        assert seen["pool"] is sync_pool and not sync_pool.closed
    assert first.message == "recorded" and second.message == "1 orders"


def test_params_and_the_runs_identity_reach_the_context_as_a_runner_hands_them_over() -> None:
    tick = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    result = run_job(
        ext,
        "shop-echo",
        params={"tenant": 42, "tags": ("a", "b")},
        trigger="schedule",
        scheduled_for=tick,
        attempt=2,
        schedule_key="tenant-42",
    )
    assert dict(result.data) == {
        "params": {"tenant": 42, "tags": ["a", "b"]},  # as read back from jsonb: a list
        "trigger": "schedule",
        "attempt": 2,
        "scheduled_for": tick.isoformat(),
        "schedule_key": "tenant-42",
        "job_name": "shop-echo",
    }
    with pytest.raises(ConfigError, match="params for job 'shop-echo' must be JSON"):
        run_job(ext, "shop-echo", params={"when": tick})


def test_a_job_that_raises_propagates_its_exception_or_fails_its_result() -> None:
    with pytest.raises(ValueError, match="no order 7") as raised:
        run_job(ext, "shop-refund", params={"order": 7})
    # from the test to the job: no Execution, asyncio or thread frames in between
    frames = [frame.f_code for frame, _ in traceback.walk_tb(raised.value.__traceback__)]
    assert {Path(code.co_filename).name for code in frames} == {"test_testing.py", "testing.py"}
    assert frames[-1].co_name == "refund"
    failed = run_job(ext, "shop-refund", params={"order": 7}, raise_errors=False)
    assert failed == JobResult.failure("ValueError: no order 7")  # the run row's message


def test_returns_are_normalised_as_a_runners_are() -> None:
    odd = run_job(ext, "shop-odd-return")
    assert odd.status == "failed" and "returned int" in (odd.message or "")
    assert run_job(Warehouse, "shop-restock") == JobResult.success()  # None: plain success


def test_the_profiles_timeout_applies_and_tells_the_job(tmp_path: Path) -> None:
    profile = tmp_path / "profile.yaml"
    profile.write_text(
        "scheduler:\n"
        "  jobs:\n"
        "    - job: shop-wait-for-cancel\n"
        "      timeout: 0.2s\n"
        "    - job: another-extensions-job\n"  # the app's profile: not this test's business
        "      enabled: false\n"
    )
    cancelled.clear()
    with pytest.raises(JobTimedOut, match=r"timed out after 0\.2s \(timeout=0\.2\)"):
        run_job(ext, "shop-wait-for-cancel", profile=profile)
    assert cancelled.wait(60)  # the job's thread was told through ctx.cancelled
    failed = run_job(ext, "shop-wait-for-cancel", profile=str(profile), raise_errors=False)
    assert failed == JobResult.failure("timed out after 0.2s (timeout=0.2)")

    profile.write_text("scheduler:\n  jobs:\n    - job: shop-wait-for-cancel\n      timeout: x\n")
    with pytest.raises(ProfileError, match="timeout"):
        run_job(ext, "shop-wait-for-cancel", profile=profile)


def test_ctx_log_reaches_caplog_bound_to_the_job_and_run(caplog: pytest.LogCaptureFixture) -> None:
    """As in any process pgsched does not own: records of `logging`, on `pgsched.jobs`."""
    with caplog.at_level(logging.INFO, logger="pgsched.jobs"):
        run_job(ext, "shop-ship", run_id=314)
    (record,) = [r for r in caplog.records if getattr(r, "event", None) == "shipped"]
    assert record.name == "pgsched.jobs"
    assert (record.parcels, record.job, record.run_id) == (2, "shop-ship", 314)


def test_an_unknown_job_names_the_known_ones() -> None:
    with pytest.raises(UnknownJobError) as raised:
        run_job([ext, Warehouse], "shop-ecko")
    message = str(raised.value)
    assert "unknown job 'shop-ecko'" in message and "did you mean 'shop-echo'?" in message
    assert "shop-echo" in message and "shop-restock" in message


def test_a_job_that_touches_no_database_needs_none_and_one_that_does_says_so() -> None:
    assert run_job(ext, "shop-echo").status == "succeeded"
    with pytest.raises(ConfigError, match=r"used ctx\.pool, but it was run with no database"):
        run_job(ext, "shop-record-order", params={"item": "tea"})


def test_run_job_inside_an_event_loop_points_to_arun_job() -> None:
    async def call() -> None:
        run_job(ext, "shop-echo")

    with pytest.raises(ConfigError, match="arun_job"):
        asyncio.run(call())


# In-process runs import the plugin and pgsched again, already imported: not rewritten, fine.
INNER = ("-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning")

USER_TESTS = """
import pytest
from pgsched import Extension, JobContext, JobResult

ext = Extension("billing")


@ext.job("billing-invoice")
def invoice(ctx: JobContext) -> JobResult:
    with ctx.connection() as conn:
        conn.execute("INSERT INTO invoices (customer) VALUES (%s)", [ctx.params["customer"]])
    return JobResult.success("invoiced").with_stats(processed=1)


@ext.job("billing-count")
async def count(ctx: JobContext) -> str:
    async with ctx.aconnection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM invoices WHERE customer = %s", [ctx.params["customer"]]
        )
        row = await cur.fetchone()
    return f"{row[0]} invoices"


def test_invoice(pgsched_run):
    result = pgsched_run(ext, "billing-invoice", params={"customer": "ada"})
    assert result.message == "invoiced" and result.processed == 1


@pytest.mark.anyio
async def test_count(pgsched_arun):
    await pgsched_arun(ext, "billing-invoice", params={"customer": "bob"})
    result = await pgsched_arun(ext, "billing-count", params={"customer": "bob"})
    assert result.message == "1 invoices"


def test_a_failing_job_fails_the_test(pgsched_run):
    pgsched_run(ext, "billing-invoice", params={})
"""


@pytest.fixture
def invoices(empty_dsn: str) -> str:
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE invoices (customer text NOT NULL)")
    return empty_dsn


def test_the_pytest_plugin_runs_a_users_jobs_on_the_database_it_is_given(
    pytester: pytest.Pytester, invoices: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_billing=USER_TESTS)
    monkeypatch.delenv("PGSCHED_TEST_DATABASE_URL", raising=False)
    # anyio_backend: asyncio only (anyio's default parametrisation would add trio)
    pytester.makeconftest(
        "import pytest\n\n@pytest.fixture\ndef anyio_backend():\n    return 'asyncio'\n"
    )

    by_option = pytester.runpytest(*INNER, "--pgsched-dsn", invoices)
    by_option.assert_outcomes(passed=2, failed=1)
    by_option.stdout.fnmatch_lines(["*KeyError: 'customer'*"])  # the job's own exception
    by_option.stdout.no_fnmatch_line("*asyncio*")  # and its traceback, not pgsched's machinery
    assert rows(invoices, "SELECT customer FROM invoices ORDER BY 1") == [("ada",), ("bob",)]

    monkeypatch.setenv("PGSCHED_TEST_DATABASE_URL", invoices)
    pytester.runpytest(*INNER, "-k", "invoice").assert_outcomes(passed=1)


def test_without_a_database_the_plugins_fixtures_say_how_to_give_one(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGSCHED_TEST_DATABASE_URL", raising=False)
    monkeypatch.setenv("PGSCHED_DATABASE_URL", "postgresql://the-schedulers-own/db")  # not used
    pytester.makepyfile(test_billing=USER_TESTS)
    result = pytester.runpytest(*INNER, "-k", "invoice")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*no database for pgsched's job fixtures: pass --pgsched-dsn*"])


def test_the_plugin_is_registered_and_stays_out_of_the_way(pytester: pytest.Pytester) -> None:
    """Installed as pytest11 `pgsched`: no autouse fixture, pgsched itself not imported at
    start-up (every test session of a project with pgsched installed loads the plugin)."""
    pytester.makepyfile(
        test_plain="""
import sys

def test_nothing_of_pgsched_loaded(request):
    assert request.config.pluginmanager.has_plugin("pgsched")
    assert request.fixturenames == ["request"]
    assert "pgsched" not in sys.modules
"""
    )
    result = pytester.runpytest_subprocess(*INNER)
    result.assert_outcomes(passed=1)
