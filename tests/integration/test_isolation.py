"""Process isolation (issue 10): runs executed by `ProcessPool` workers, recorded in the real
database like any run. Jobs live in tests/apps/isolated.py.

Each test claims a run with the store (as `pgsched jobs run --inline` does), executes it
through the pool, writes the outcome with `Store.finish`, and reads the `pgsched.runs` row.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

from pgsched import __version__
from pgsched.isolation import ProcessPool, WorkerSpec
from pgsched.registry import Registry
from pgsched.runs import ClaimedRun
from pgsched.store import Row, Store
from pgsched.worker import load_registry

APP = "tests.apps.isolated:ext"
SCHEMA = "pgsched"
RUNNER = f"test-isolation:{os.getpid()}"
T = TypeVar("T")


@dataclass
class Harness:
    store: Store
    pool: ProcessPool
    registry: Registry

    async def claim(self, job: str, params: dict[str, Any] | None = None) -> ClaimedRun:
        return await self.store.insert_inline_run(job, params or {}, RUNNER)

    async def execute(self, claimed: ClaimedRun) -> Row:
        outcome = await self.pool.run(claimed, self.registry.get(claimed.job_name))
        assert await self.store.finish([outcome]) == {claimed.id}  # the lease held
        row = await self.store.get_run(claimed.id)
        assert row is not None
        return row

    async def run(self, job: str, params: dict[str, Any] | None = None) -> Row:
        return await self.execute(await self.claim(job, params))


def spec(dsn: str, apps: tuple[str, ...] = (APP,)) -> WorkerSpec:
    return WorkerSpec(apps=apps, profile_path=None, dsn=dsn, schema=SCHEMA, runner_id=RUNNER)


@asynccontextmanager
async def harness(
    dsn: str, *, apps: tuple[str, ...] = (APP,), **pool_options: Any
) -> AsyncIterator[Harness]:
    """The registry a runner of APP builds, synced; a registered runner; a pool of workers."""
    registry = load_registry([APP], None, dsn, SCHEMA)
    store = Store(dsn, SCHEMA, max_size=2)
    await store.open()
    pool = ProcessPool(spec(dsn, apps), **{"max_workers": 2, **pool_options})
    try:
        await store.sync(registry)
        await store.register_runner(
            RUNNER, socket.gethostname(), os.getpid(), 2, __version__, registry
        )
        yield Harness(store, pool, registry)
    finally:
        await pool.close(grace=5)
        await store.close()


def scenario(dsn: str, body: Callable[[Harness], Awaitable[T]], **options: Any) -> T:
    async def go() -> T:
        async with harness(dsn, **options) as h:
            return await body(h)

    return asyncio.run(go())


def pid_of(row: Row) -> int:
    return int(row["data"]["pid"])


def is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def wait_started(started: Path) -> int:
    """The worker's pid, once the job has written it."""
    async with asyncio.timeout(60):
        while not started.exists() or not started.read_text():
            await asyncio.sleep(0.02)
    return int(started.read_text())


# --- outcomes --------------------------------------------------------------------------------


def test_a_process_isolated_job_succeeds_with_its_message_and_params(dsn: str) -> None:
    row = scenario(dsn, lambda h: h.run("iso-echo", {"tenant": 42}))
    assert row["status"] == "succeeded"
    assert row["message"] == f"pid {pid_of(row)}"
    assert pid_of(row) != os.getpid()
    assert row["params"] == {"tenant": 42}
    assert row["data"]["params"] == {"tenant": 42}  # the job saw them as ctx.params
    assert row["started_at"] <= row["finished_at"]  # the database clock, anchored at the claim


def test_os_exit_fails_the_run_with_the_exit_code_and_the_pool_serves_the_next(
    dsn: str,
) -> None:
    async def body(h: Harness) -> tuple[Row, Row]:
        return await h.run("iso-exit", {"code": 3}), await h.run("iso-echo")

    exited, next_run = scenario(dsn, body)
    assert exited["status"] == "failed"
    assert exited["message"] == "worker process exited with code 3"
    assert exited["error"]["type"] == "pgsched.WorkerDied"
    assert next_run["status"] == "succeeded"


def test_a_worker_that_dies_is_noticed_while_a_forked_grandchild_holds_its_pipes(
    dsn: str, tmp_path: Path
) -> None:
    note = tmp_path / "grandchild"
    try:
        row = scenario(dsn, lambda h: h.run("iso-fork-then-exit", {"grandchild": str(note)}))
    finally:
        if note.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(note.read_text()), signal.SIGKILL)
    assert (row["status"], row["message"]) == ("failed", "worker process exited with code 5")
    took = (row["finished_at"] - row["started_at"]).total_seconds()
    print(f"worker death noticed {took:.2f}s after the run started, its grandchild still alive")
    assert took < 10  # liveness only: not the grandchild's 30 s


@pytest.mark.parametrize(
    ("job", "named"),
    [
        ("iso-sigkill", "worker process killed by SIGKILL (signal 9)"),
        ("iso-segfault", "worker process killed by SIGSEGV (signal 11)"),
    ],
)
def test_a_worker_killed_by_a_signal_fails_the_run_naming_the_signal(
    dsn: str, job: str, named: str
) -> None:
    async def body(h: Harness) -> tuple[Row, Row]:
        return await h.run(job), await h.run("iso-echo")

    died, next_run = scenario(dsn, body)
    assert (died["status"], died["message"]) == ("failed", named)
    assert next_run["status"] == "succeeded"


def test_a_segfault_leaves_the_jobs_python_traceback_in_the_error(dsn: str) -> None:
    row = scenario(dsn, lambda h: h.run("iso-segfault"))
    trace = row["error"]["traceback"]
    assert "Segmentation fault" in trace
    assert "isolated.py" in trace and "segfault" in trace  # faulthandler names the job's line


# --- timeouts --------------------------------------------------------------------------------


def test_a_job_holding_the_gil_past_its_timeout_is_killed_and_the_loop_never_stalls(
    dsn: str,
) -> None:
    """`sum(range(10**10))` holds the GIL for minutes; the worker is killed at timeout + 0.5 s
    while this process's event loop (where heartbeats would run) keeps ticking."""

    async def body(h: Harness) -> tuple[Row, float, float]:
        await h.pool.start(prewarm=1)  # the figure is about the kill, not the imports
        claimed = await h.claim("iso-gil")
        longest_gap = 0.0
        ticking = True

        async def tick() -> None:
            nonlocal longest_gap
            last = time.monotonic()
            while ticking:
                await asyncio.sleep(0.05)
                now = time.monotonic()
                longest_gap, last = max(longest_gap, now - last), now

        ticker = asyncio.create_task(tick())
        began = time.monotonic()
        row = await h.execute(claimed)
        elapsed = time.monotonic() - began
        ticking = False
        await ticker
        return row, elapsed, longest_gap

    row, elapsed, longest_gap = scenario(dsn, body)
    took = (row["finished_at"] - row["started_at"]).total_seconds()
    print(
        f"GIL-holding job (timeout=1): recorded after {elapsed:.2f}s, ran {took:.2f}s (database"
        f" clock); longest event-loop gap meanwhile {longest_gap:.3f}s"
    )
    assert (row["status"], row["message"]) == (
        "failed",
        "timed out after 1s: worker process killed",
    )
    assert elapsed < 10  # liveness only: killed, not left to run for minutes
    assert longest_gap < 5  # the parent's loop ran all along (in thread mode: frozen for minutes)


def test_a_sync_job_past_its_soft_timeout_retires_its_worker(dsn: str) -> None:
    """time.sleep ignores cancellation: the worker reports the timeout and exits, so the
    stuck thread ends with it, and the next run gets a fresh worker."""

    async def body(h: Harness) -> tuple[Row, Row, Row]:
        return await h.run("iso-echo"), await h.run("iso-sleep"), await h.run("iso-echo")

    before, timed_out, after = scenario(dsn, body)
    assert timed_out["status"] == "failed"
    assert timed_out["message"].startswith("timed out after 1s")
    assert pid_of(before) != pid_of(after)
    assert after["status"] == "succeeded"


# --- the JobContext in the worker ------------------------------------------------------------


def test_cancellation_reaches_ctx_cancelled_in_the_worker(dsn: str, tmp_path: Path) -> None:
    started = tmp_path / "started"

    async def body(h: Harness) -> Row:
        claimed = await h.claim("iso-cancellable", {"started": str(started)})
        running = asyncio.create_task(h.execute(claimed))
        await wait_started(started)
        h.pool.cancel(claimed.id, "cancelled by the operator")
        return await running

    row = scenario(dsn, body)
    assert row["status"] == "succeeded"
    assert row["message"] == "noticed cancellation: cancelled by the operator"


def test_a_cancel_before_the_worker_is_ready_reaches_the_job(dsn: str, tmp_path: Path) -> None:
    async def body(h: Harness) -> Row:
        claimed = await h.claim("iso-cancellable", {"started": str(tmp_path / "started")})
        running = asyncio.create_task(h.execute(claimed))
        await asyncio.sleep(0)  # the run is waiting for its worker to import the app
        h.pool.cancel(claimed.id, "early")
        return await running

    row = scenario(dsn, body)
    assert row["message"] == "noticed cancellation: early"


def test_ctx_connection_works_in_the_worker(dsn: str) -> None:
    database = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]

    async def body(h: Harness) -> tuple[Row, Row, Row]:
        return await h.run("iso-db"), await h.run("iso-async-db"), await h.run("iso-async-db")

    sync_row, async_row, async_again = scenario(dsn, body)
    assert sync_row["status"] == "succeeded", sync_row["error"]
    assert sync_row["message"].startswith(f"{database} backend ")
    assert async_row["status"] == "succeeded", async_row["error"]
    # the async pool stays usable from one run to the next on the same worker
    assert async_again["status"] == "succeeded", async_again["error"]
    assert async_row["message"] == async_again["message"]


# --- the pool --------------------------------------------------------------------------------


def test_workers_are_reused_and_close_leaves_no_process(dsn: str) -> None:
    async def body(h: Harness) -> tuple[Row, Row]:
        return await h.run("iso-echo"), await h.run("iso-echo")

    first, second = scenario(dsn, body)
    assert pid_of(first) == pid_of(second)
    assert is_gone(pid_of(first))  # closed and reaped by pool.close


def test_a_run_handed_to_an_idle_worker_that_was_killed_runs_in_another(dsn: str) -> None:
    """The OOM killer likes big idle processes: the run never started there, so it must not
    fail for it (and the worker may not be reaped yet when the run is handed over)."""

    async def body(h: Harness) -> tuple[Row, Row]:
        first = await h.run("iso-echo")
        os.kill(pid_of(first), signal.SIGKILL)
        return first, await h.run("iso-echo")

    first, second = scenario(dsn, body)
    assert second["status"] == "succeeded", second["message"]
    assert pid_of(second) != pid_of(first)


def test_max_tasks_per_child_one_gives_a_fresh_worker_per_run(dsn: str) -> None:
    async def body(h: Harness) -> list[Row]:
        return [await h.run("iso-echo") for _ in range(3)]

    rows = scenario(dsn, body, max_tasks_per_child=1)
    assert all(row["status"] == "succeeded" for row in rows)
    assert len({pid_of(row) for row in rows}) == 3


def test_prewarmed_workers_serve_concurrent_runs(dsn: str) -> None:
    async def body(h: Harness) -> list[Row]:
        await h.pool.start(prewarm=2)
        claims = [await h.claim("iso-echo") for _ in range(2)]
        return list(await asyncio.gather(*(h.execute(c) for c in claims)))

    rows = scenario(dsn, body)
    assert all(row["status"] == "succeeded" for row in rows)
    assert len({pid_of(row) for row in rows}) == 2


def test_a_worker_that_cannot_import_the_app_fails_the_run_with_the_import_error(
    dsn: str,
) -> None:
    async def body(h: Harness) -> tuple[Row, Row]:
        return await h.run("iso-echo"), await h.run("iso-echo")

    first, second = scenario(dsn, body, apps=("tests.apps.no_such_module:ext",))
    for row in (first, second):  # one attempt per run, no loop of restarts
        assert row["status"] == "failed"
        assert row["message"].startswith("worker process could not start: --app: cannot import")
        assert "tests.apps.no_such_module" in row["message"]


def test_a_runner_that_stops_waiting_for_a_run_leaves_no_worker_behind(
    dsn: str, tmp_path: Path
) -> None:
    started = tmp_path / "started"

    async def body(h: Harness) -> int:
        claimed = await h.claim("iso-cancellable", {"started": str(started)})
        running = asyncio.create_task(h.pool.run(claimed, h.registry[claimed.job_name]))
        pid = await wait_started(started)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        await h.pool.close(grace=5)
        return pid

    assert is_gone(scenario(dsn, body))


def test_close_kills_a_busy_worker_after_the_grace(dsn: str, tmp_path: Path) -> None:
    started = tmp_path / "started"

    async def body(h: Harness) -> Row:
        claimed = await h.claim("iso-cancellable", {"started": str(started)})
        running = asyncio.create_task(h.pool.run(claimed, h.registry[claimed.job_name]))
        await wait_started(started)
        await h.pool.close(grace=0.2)
        await h.store.finish([await running])
        row = await h.store.get_run(claimed.id)
        assert row is not None
        return row

    row = scenario(dsn, body)
    assert row["status"] == "failed"
    assert row["message"] == (
        "worker process killed by SIGKILL (signal 9): the runner shut down (grace of 0.2s)"
    )


def test_close_ends_a_worker_still_importing_the_app(dsn: str) -> None:
    async def body(h: Harness) -> tuple[Row, float]:
        claimed = await h.claim("iso-echo")
        running = asyncio.create_task(h.pool.run(claimed, h.registry[claimed.job_name]))
        await asyncio.sleep(0.5)  # the worker is somewhere in its 30 s import
        began = time.monotonic()
        await h.pool.close(grace=0.2)
        took = time.monotonic() - began
        await h.store.finish([await running])
        row = await h.store.get_run(claimed.id)
        assert row is not None
        return row, took

    row, took = scenario(dsn, body, apps=(APP, "tests.apps.slow_import:ext"))
    print(f"close(grace=0.2) with a worker importing the app took {took:.2f}s")
    assert row["status"] == "failed"
    assert row["message"].startswith("worker process could not start")
    assert row["message"].endswith("before it was ready: the runner shut down (grace of 0.2s)")
    assert took < 10  # liveness only: not the import's 30 s
