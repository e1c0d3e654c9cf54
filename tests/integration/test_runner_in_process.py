"""The runner driven in-process against the real test database: its pacing, prefetch,
shutdown order and duty supervision, each checked by calling it rather than by spawning
processes and sleeping (procrastinate's tests/unit/test_worker.py is the model).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import psycopg
import pytest
import structlog

import pgsched
from pgsched import Extension, JobContext
from pgsched.errors import DatabaseUnavailableError
from pgsched.planning import plan_claim
from pgsched.profile import Profile
from pgsched.registry import Registry, build_registry
from pgsched.runner import Runner
from pgsched.runner.claiming import Claimer
from pgsched.runner.duty import MAX_FAILURES, Backoff, Duty, Health, drive
from pgsched.runner.results import Results
from pgsched.runner.slots import Slots
from pgsched.runner.supervisor import ControlThread
from pgsched.runs import ClaimedRun, RunOutcome
from pgsched.settings import RunnerSettings
from pgsched.store import Store
from tests.runners import query, request, wait_until

ext = Extension("in-process")
release = threading.Event()  # what `waits` waits for
unblock = threading.Event()  # what `hog` blocks the job loop for


@ext.job("quick", overlap="allow", description="returns at once")
def quick(ctx: JobContext) -> str:
    return "done"


@ext.job("waits", overlap="allow", description="waits until the test lets it go (or is cancelled)")
def waits(ctx: JobContext) -> str:
    while not release.wait(0.02):
        if ctx.cancelled:
            return "cancelled"
    return "released"


@ext.job("soon", schedule="* * * * * *", description="every second", enabled=False)
def soon(ctx: JobContext) -> None:
    return None


@ext.job("hog", overlap="allow", description="blocks the job event loop until the test says")
async def hog(ctx: JobContext) -> str:
    unblock.wait(60)  # a blocking call in async code: every async run waits behind it
    return "unblocked"


@ext.job(
    "victim",
    timeout=2,
    max_attempts=2,
    overlap="allow",  # claimed in the same statement as `hog`: handed to the loop with it
    description="records each execution it makes",
)
async def victim(ctx: JobContext) -> str:
    """Records, as it starts, the status its run row has then: `running` unless it executes
    after its outcome was recorded."""
    async with ctx.aconnection() as conn:
        await conn.execute(
            "INSERT INTO victim_executions SELECT id, attempt, status FROM pgsched.runs"
            " WHERE id = %s",
            [ctx.run_id],
        )
    return "ran"


REGISTRY = build_registry([ext], Profile(None, None))

ticking = Extension("ticking")


@ticking.job("every-second", schedule="* * * * * *", misfire_grace=1, description="ticks")
def every_second(ctx: JobContext) -> None:
    return None


TICKING = build_registry([ticking], Profile(None, None))


@dataclass
class Log:
    """A structlog-shaped logger that keeps what it is told."""

    events: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def _record(self, level: str, event: str, **kw: Any) -> None:
        self.events.append((level, event, kw))

    def info(self, event: str, **kw: Any) -> None:
        self._record("info", event, **kw)

    def warning(self, event: str, **kw: Any) -> None:
        self._record("warning", event, **kw)

    def error(self, event: str, **kw: Any) -> None:
        self._record("error", event, **kw)

    def exception(self, event: str, **kw: Any) -> None:
        self._record("exception", event, **kw)

    def names(self) -> list[str]:
        return [event for _, event, _ in self.events]


def synced(dsn: str, registry: Registry = REGISTRY) -> None:
    async def go() -> None:
        store = Store(dsn)
        await store.open()
        try:
            await store.sync(registry)
        finally:
            await store.close()

    asyncio.run(go())


@contextmanager
def runner_thread(
    dsn: str, log: Log, registry: Registry = REGISTRY, **settings: Any
) -> Iterator[tuple[Runner, ControlThread]]:
    synced(dsn, registry)
    values = {"heartbeat_interval": 0.5, "lease_timeout": 3, "poll_interval": 1, **settings}
    runner = Runner(Store(dsn), registry, RunnerSettings(**values), log=log)
    thread = ControlThread(runner.serve())
    thread.start()
    try:
        wait_until(lambda: query(dsn, "SELECT 1 FROM pgsched.runners"), 10, "registered")
        yield runner, thread
    finally:
        release.set()
        runner.request_stop()
        thread.join(30)


def statuses(dsn: str) -> dict[int, str]:
    return {r["id"]: r["status"] for r in query(dsn, "SELECT id, status FROM pgsched.runs")}


# --- the whole runner ------------------------------------------------------------------------


def test_prefetched_runs_start_one_after_another_as_the_slot_frees(dsn: str) -> None:
    release.set()
    with runner_thread(dsn, Log(), concurrency=1, prefetch=2) as _:
        ids = [request(dsn, "quick") for _ in range(5)]
        wait_until(lambda: all(statuses(dsn)[i] == "succeeded" for i in ids), 10, "all done")
    rows = query(dsn, "SELECT started_at, finished_at FROM pgsched.runs ORDER BY started_at")
    # One slot: never two at once. Each run's times are anchored to its own claim's reading
    # of the database clock, good to that claim's round trip: allow a few milliseconds.
    for before, after in itertools.pairwise(rows):
        assert after["started_at"] >= before["finished_at"] - timedelta(milliseconds=5)


def test_shutdown_gives_back_what_never_started_and_fails_what_outlives_the_grace(
    dsn: str,
) -> None:
    """The written order: no new claims; running jobs get the grace period; unstarted runs
    go back to pending; what still runs is failed; results are written; the runner leaves."""
    release.clear()
    log = Log()
    with runner_thread(dsn, log, concurrency=1, prefetch=1, grace_period=0.3, prefetch_hold=30) as (
        runner,
        thread,
    ):
        first, second = request(dsn, "waits"), request(dsn, "waits")
        wait_until(lambda: statuses(dsn) == {first: "running", second: "running"}, 10, "held")
        runner.request_stop()
        assert thread.wait() == 0
    rows = {r["id"]: r for r in query(dsn, "SELECT * FROM pgsched.runs")}
    assert rows[first]["status"] == "failed" and "shutdown" in rows[first]["message"]
    assert rows[second]["status"] == "pending" and rows[second]["runner"] is None
    assert not query(dsn, "SELECT 1 FROM pgsched.runners")
    order = [
        "stop requested: no new claims, finishing running jobs",
        "released prefetched runs",
        "runner stopped",
    ]
    names = log.names()
    assert [n for n in names if n in order] == order, names


def test_an_async_run_failed_behind_a_blocked_loop_never_executes_and_its_retry_runs_once(
    dsn: str,
) -> None:
    """`hog` blocks the job loop; `victim`, handed to the loop in the same batch, times out
    before it could start and is recorded failed. When the loop frees, it must not run after
    all (its retry may be running elsewhere by then); the retry runs, once."""
    query(dsn, "CREATE TABLE victim_executions (run_id bigint, attempt int, status_seen text)")
    unblock.clear()
    try:
        with runner_thread(dsn, Log()):
            rows = query(
                dsn,
                "INSERT INTO pgsched.runs (job_name) VALUES ('hog'), ('victim')"
                " RETURNING id, job_name",
            )
            ids = {r["job_name"]: r["id"] for r in rows}
            first = wait_until(
                lambda: query(
                    dsn,
                    "SELECT * FROM pgsched.runs WHERE id = %s AND status = 'failed'",
                    [ids["victim"]],
                ),
                30,
                "the victim recorded failed while the hog blocks the loop",
            )[0]
            unblock.set()
            retry = wait_until(
                lambda: query(
                    dsn,
                    "SELECT * FROM pgsched.runs WHERE retry_of = %s AND status IN"
                    " ('succeeded', 'failed')",
                    [ids["victim"]],
                ),
                60,
                "the victim's retry finished",
            )[0]
            wait_until(lambda: statuses(dsn)[ids["hog"]] == "succeeded", 30, "the hog done")
    finally:
        unblock.set()
    executions = query(dsn, "SELECT * FROM victim_executions ORDER BY attempt")
    # never after its failure was recorded, at most once per attempt: here only the retry
    assert executions == [{"run_id": retry["id"], "attempt": 2, "status_seen": "running"}]
    assert retry["status"] == "succeeded", retry["message"]
    assert "before it could start" in first["message"], first["message"]


def test_ticks_a_live_runner_claims_late_say_late_naming_it_not_no_runner(dsn: str) -> None:
    """Another transaction holds the schedule row past misfire_grace (the claim skips locked
    rows, as it would wait on a busy machine or a slow database): the ticks missed meanwhile
    say the claim came late while this runner was alive, not that no runner was."""
    schedule = "SELECT * FROM pgsched.schedules WHERE job_name = 'every-second'"
    with runner_thread(dsn, Log(), TICKING) as (runner, _):
        wait_until(
            lambda: query(dsn, "SELECT 1 FROM pgsched.runs WHERE status = 'succeeded'"),
            30,
            "a tick run on time: the runner is alive and claiming",
        )
        with psycopg.connect(dsn) as holder:  # one transaction, until the block ends
            holder.execute(schedule + " FOR UPDATE")
            wait_until(
                lambda: query(dsn, schedule + " AND next_run_at < now() - interval '3 s'"),
                30,
                "the held schedule's ticks past their grace",
            )
        missed = wait_until(
            lambda: query(
                dsn,
                "SELECT message FROM pgsched.runs WHERE status = 'skipped'"
                " AND message LIKE 'missed:%%'",
            ),
            30,
            "the late ticks recorded as missed",
        )
    for row in missed:
        assert "the claim came" in row["message"], row["message"]
        assert f"runner {runner.id} alive since" in row["message"], row["message"]
        assert "no runner" not in row["message"], row["message"]


def test_inline_run_goes_through_the_executor_and_the_result_path(dsn: str) -> None:
    synced(dsn)
    runner = Runner(Store(dsn), REGISTRY, RunnerSettings(), runner_id="cli:test", log=Log())
    thread = ControlThread(runner.serve_one("quick", {"a": 1}))
    thread.start()
    run_id = thread.wait()
    row = query(dsn, "SELECT * FROM pgsched.runs WHERE id = %s", [run_id])[0]
    assert row["status"] == "succeeded" and row["message"] == "done" and row["params"] == {"a": 1}
    assert row["runner"] == "cli:test" and not query(dsn, "SELECT 1 FROM pgsched.runners")


# --- claim pacing, with a stand-in executor that only records what it is asked to start ---------


class RecordingExecutor:
    def __init__(self) -> None:
        self.running: dict[int, ClaimedRun] = {}

    def __len__(self) -> int:
        return len(self.running)

    def start(self, run: ClaimedRun) -> None:
        self.running[run.id] = run


async def claimer_for(dsn: str, **settings: Any) -> tuple[Claimer, RecordingExecutor, Store]:
    store = Store(dsn)
    await store.open()
    await store.sync(REGISTRY)
    values = {"lookahead": 0.0, **settings}
    runner_settings = RunnerSettings(**values)
    executor = RecordingExecutor()
    slots = Slots(runner_settings, executor)  # type: ignore[arg-type]
    await store.register_runner(
        "test-runner", "host", 1, runner_settings.concurrency, "test", REGISTRY
    )
    results = Results(store, runner_settings, Log())
    claimer = Claimer(store, "test-runner", REGISTRY.code_version, runner_settings, slots, results)
    return claimer, executor, store


def test_a_claim_takes_no_more_than_the_free_slots_and_leaves_the_rest_pending(dsn: str) -> None:
    synced(dsn)
    ids = [request(dsn, "quick") for _ in range(5)]

    async def go() -> float | None:
        claimer, executor, store = await claimer_for(dsn, concurrency=2, prefetch=0)
        try:
            wait = await claimer.step()
            assert sorted(executor.running) == ids[:2]
            return wait
        finally:
            await store.close()

    assert asyncio.run(go()) is None  # full: the next finished run wakes it, not a timer
    states = statuses(dsn)
    assert [states[i] for i in ids] == ["running"] * 2 + ["pending"] * 3


def test_with_prefetch_a_claim_takes_slots_plus_prefetch_and_waits_for_half_of_it(
    dsn: str,
) -> None:
    synced(dsn)
    for _ in range(10):
        request(dsn, "quick")

    async def go() -> None:
        claimer, executor, store = await claimer_for(dsn, concurrency=2, prefetch=4)
        try:
            await claimer.step()
            assert len(executor.running) == 2 and len(claimer.slots.prefetched) == 4
            executor.running.popitem()  # one slot frees: the queue is still full
            assert not claimer.slots.worth_claiming(claimer.slots.capacity())
            claimer.slots.fill()
            claimer.slots.fill()
            executor.running.clear()
            claimer.slots.fill()  # two more start; the queue is down to half
            assert claimer.slots.worth_claiming(claimer.slots.capacity())
        finally:
            await store.close()

    asyncio.run(go())


def idle_claim_wait(dsn: str, poll_interval: float) -> float | None:
    """What one claim round with nothing due returns, the job's next tick 3 s away by the
    database clock."""

    async def go() -> float | None:
        claimer, _, store = await claimer_for(dsn, poll_interval=poll_interval)
        try:
            query(dsn, "UPDATE pgsched.jobs SET enabled = true WHERE name = 'soon'")
            query(
                dsn,
                "UPDATE pgsched.schedules SET next_run_at = now() + interval '3 seconds' "
                "WHERE job_name = 'soon'",
            )
            return await claimer.step()
        finally:
            await store.close()

    try:
        return asyncio.run(go())
    finally:
        query(dsn, "DELETE FROM pgsched.runners")


def test_an_idle_claim_sleeps_until_the_next_tick_by_the_database_clock(dsn: str) -> None:
    wait = idle_claim_wait(dsn, poll_interval=1)
    assert wait is not None and 0.5 < wait <= 1.0  # the poll interval (1 s) comes first
    wait = idle_claim_wait(dsn, poll_interval=30)  # ... else the tick's own time
    assert wait is not None and 2.0 < wait <= 3.0


# --- duty supervision (no database) -------------------------------------------------------------


class Failing(Duty):
    name = "failing"

    def __init__(self, errors: list[BaseException]) -> None:
        super().__init__()
        self.errors = errors
        self.steps = 0

    async def step(self) -> float | None:
        self.steps += 1
        if self.errors:
            raise self.errors.pop(0)
        self.stop()
        return None


def test_a_duty_that_keeps_failing_stops_the_runner_naming_itself() -> None:
    log, reasons = Log(), []
    duty = Failing([RuntimeError("bug")] * (MAX_FAILURES + 5))
    health = Health(log, on_back=lambda: None)
    asyncio.run(drive(duty, health, log, reasons.append, Backoff(0.001, 0.001)))
    assert duty.steps == MAX_FAILURES
    assert reasons and "failing duty failed 10 times" in reasons[0]
    assert all(kw["duty"] == "failing" for level, _, kw in log.events if level == "exception")


def test_a_database_outage_is_waited_out_and_logged_once() -> None:
    log, reasons, backs = Log(), [], []
    outage = [DatabaseUnavailableError("database unavailable: gone")] * (MAX_FAILURES * 2)
    duty = Failing(list(outage))
    health = Health(log, on_back=lambda: backs.append(1))
    asyncio.run(drive(duty, health, log, reasons.append, Backoff(0.001, 0.001)))
    assert not reasons and duty.steps == MAX_FAILURES * 2 + 1
    assert [level for level, _, _ in log.events] == ["error", "info"]  # down once, back once
    assert backs == [1]


def test_an_outage_is_remembered_from_the_last_success_to_the_first_one_after() -> None:
    """What the claimer tells the planner: ticks missed inside this window were missed
    because the database was unreachable from this runner."""
    health = Health(Log(), on_back=lambda: None)
    assert health.last_outage is None
    health.back()
    before = time.monotonic()
    health.down(DatabaseUnavailableError("gone"), "claim")
    health.down(DatabaseUnavailableError("gone"), "heartbeat")
    assert health.last_outage is None  # not over yet
    health.back()
    assert health.last_outage is not None
    lost, back = health.last_outage
    assert lost <= before <= back


def test_a_failure_in_between_successes_is_retried_not_fatal() -> None:
    log, reasons = Log(), []
    duty = Failing([RuntimeError("once")])
    started = time.monotonic()
    asyncio.run(drive(duty, Health(log, lambda: None), log, reasons.append, Backoff(0.001, 0.01)))
    assert not reasons and duty.steps == 2 and time.monotonic() - started < 5


pytestmark = [
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.matrix,  # the runner in-process on 16 and 17 too
]


# --- a schedule key removed and added again while its tick is held ahead ---------------------


async def claim_ticks(store: Store, runner_id: str) -> list[ClaimedRun]:
    """One tick claim round as the claimer makes it, with a lookahead of 10 s."""
    async with store.tick_claim(runner_id, REGISTRY.code_version) as claim:
        due = await claim.lock_due_jobs(4, 4, 10.0, 30.0)
        if due:
            await claim.record(plan_claim(due, 4, 4))
    return claim.claimed


def test_a_re_added_key_waits_for_the_removed_schedules_tick_to_end_then_revives_it(
    dsn: str,
) -> None:
    """Runner a holds tick T of schedule 't' ahead of its time when 't' is removed and added
    again at T. Until a writes the end of that run (it was asked to cancel it, and may yet
    start it), runner b's claim leaves 't' at T and writes nothing; once a has ended it
    `cancelled` before it started, b's claim revives that row as the new schedule's tick:
    T runs once, and the cancelled run never shows a start (nor a negative duration)."""
    synced(dsn)
    add = (
        "INSERT INTO pgsched.schedules (job_name, key, cron, params, next_run_at)"
        " VALUES ('quick', 't', '* * * * * *', %s, %s)"
    )
    (row,) = query(dsn, "SELECT date_trunc('second', now()) + interval '5 s' AS t")
    tick = row["t"]
    query(dsn, add, ['{"n": 1}', tick])

    async def go() -> None:
        store = Store(dsn)
        await store.open()
        try:
            for runner_id in ("a", "b"):
                await store.register_runner(runner_id, "host", 1, 4, "test", REGISTRY)
            (held,) = await claim_ticks(store, "a")
            assert held.scheduled_for == tick
            query(dsn, "DELETE FROM pgsched.schedules WHERE key = 't'")
            query(dsn, add, ['{"n": 2}', tick])
            assert await claim_ticks(store, "b") == []
            (waiting,) = query(dsn, "SELECT next_run_at FROM pgsched.schedules WHERE key = 't'")
            assert waiting["next_run_at"] == tick  # not past T: T is not lost
            # a ends it as its runner does a tick cancelled before its time
            ended = RunOutcome(held.id, held.lease, "cancelled", None, None, "cancelled by x")
            assert await store.finish([ended]) == {held.id}
            (cancelled,) = query(dsn, "SELECT * FROM pgsched.runs WHERE id = %s", [held.id])
            assert cancelled["status"] == "cancelled" and cancelled["started_at"] is None
            (revived,) = await claim_ticks(store, "b")
            assert (revived.id, revived.scheduled_for, revived.params) == (held.id, tick, {"n": 2})
        finally:
            await store.close()

    try:
        asyncio.run(go())
    finally:
        query(dsn, "DELETE FROM pgsched.runners")
    (run,) = query(dsn, "SELECT * FROM pgsched.runs WHERE schedule_key = 't'")
    assert run["status"] == "running" and run["runner"] == "b", run
    assert run["cancel_requested_at"] is None and run["cancelled_by"] is None, run
    assert not query(dsn, "SELECT 1 FROM pgsched.runs WHERE duration < interval '0'")


# --- inside a host's logging -------------------------------------------------------------------
# An application that runs a background runner has its own `logging` set-up: pgsched's lines
# are records of it, under `pgsched`, whatever the host's handlers, levels and formats.

CHATTY = "tests.apps.chatty:ext"
QUICK = {"heartbeat_interval": 0.5, "lease_timeout": 3, "poll_interval": 1}


class Kept(logging.Handler):
    """A host's handler: keeps the records it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def named(self, event: str) -> list[logging.LogRecord]:
        return [r for r in self.records if vars(r).get("event", r.getMessage()) == event]


@pytest.fixture
def host_logging() -> Iterator[Kept]:
    """The host's set-up: its handler on `pgsched`, at INFO; as it was afterwards."""
    logger = logging.getLogger("pgsched")
    level = logger.level
    kept = Kept()
    logger.addHandler(kept)
    logger.setLevel(logging.INFO)
    try:
        yield kept
    finally:
        logger.removeHandler(kept)
        logger.setLevel(level)


def fields(record: logging.LogRecord, *names: str) -> dict[str, Any]:
    return {name: vars(record).get(name) for name in names}


def in_a_host(dsn: str, kept: Kept, job: str, until: str, **settings: Any) -> tuple[str, int]:
    """A background runner inside an asyncio app: one run of `job`, left once `kept` has a
    record of the event `until`; the runner's id and the run's."""

    async def app() -> tuple[str, int]:
        async with pgsched.background_runner(dsn, app=CHATTY, **QUICK, **settings) as runner:
            run_id = request(dsn, job, {"who": "host"})
            await asyncio.to_thread(wait_until, lambda: kept.named(until), 30, repr(until))
            return runner.id, run_id

    return asyncio.run(app())


def test_a_background_runners_lines_are_records_of_the_hosts_logging(
    dsn: str, host_logging: Kept
) -> None:
    config, root = structlog.get_config(), logging.getLogger().handlers[:]
    runner_id, run_id = in_a_host(dsn, host_logging, "chatty", "said it loudly", concurrency=2)

    (started,) = host_logging.named("runner started")
    assert (started.name, started.levelno, started.module) == ("pgsched.runner", 20, "supervisor")
    assert fields(started, "runner", "concurrency", "listen") == {
        "runner": runner_id,
        "concurrency": 2,
        "listen": True,
    }
    assert started.getMessage().startswith(f"runner started runner={runner_id} concurrency=2 ")
    (hello,) = host_logging.named("said hello")
    assert (hello.name, hello.levelno, hello.funcName) == ("pgsched.jobs", 20, "chatty")
    assert fields(hello, "job", "run_id", "attempt", "who") == {
        "job": "chatty",
        "run_id": run_id,
        "attempt": 1,
        "who": "host",
    }
    assert hello.getMessage() == (
        f"said hello runner={runner_id} job=chatty run_id={run_id} attempt=1 who=host"
    )
    assert host_logging.named("runner stopped")  # as the block was left
    # Nothing of the host's was set up anew: no handler on the root, structlog's as it was.
    assert logging.getLogger().handlers == root
    assert structlog.get_config() == config


def test_a_host_that_sets_pgsched_to_warning_gets_no_info_records(
    dsn: str, host_logging: Kept
) -> None:
    logging.getLogger("pgsched").setLevel(logging.WARNING)
    in_a_host(dsn, host_logging, "chatty", "said it loudly")
    assert host_logging.named("said it loudly")
    assert [r.getMessage() for r in host_logging.records if r.levelno < logging.WARNING] == []
    assert not host_logging.named("runner started")


def test_a_process_isolated_jobs_records_reach_the_host_from_its_worker(
    dsn: str, host_logging: Kept, capfd: pytest.CaptureFixture[str]
) -> None:
    """A worker process sends its records to the runner, which hands them to the host's
    loggers of their names: pgsched's own and the job's (logging's, structlog's), at the
    host's levels."""
    own = logging.getLogger("tests.apps.chatty")
    own.addHandler(host_logging)
    try:
        in_a_host(dsn, host_logging, "chatty-process", "failed politely")
    finally:
        own.removeHandler(host_logging)

    (hello,) = host_logging.named("said hello from a worker")
    pid = vars(hello)["pid"]
    assert (hello.name, hello.levelno, hello.process) == ("pgsched.jobs", 20, pid)
    assert (hello.module, hello.funcName) == ("chatty", "chatty_process")  # the job's line
    assert pid != os.getpid()
    assert fields(hello, "job", "attempt") == {"job": "chatty-process", "attempt": 1}
    (failed,) = host_logging.named("failed politely")
    assert failed.levelno == logging.ERROR
    assert "ValueError: shown with its traceback" in logging.Formatter().format(failed)
    mine, structlogs = [r for r in host_logging.records if r.name == "tests.apps.chatty"]
    assert (mine.levelno, mine.getMessage()) == (30, f"the job's own logger, pid {pid}")
    assert (structlogs.levelno, structlogs.getMessage()) == (
        30,
        f"the job's own structlog pid={pid}",
    )
    assert not host_logging.named("whispered")  # debug: below the host's INFO
    assert "pgsched-record" not in capfd.readouterr().err  # none printed as it came
