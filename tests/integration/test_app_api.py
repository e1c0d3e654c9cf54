"""pgsched for applications: request_run and cancel_run on the caller's own connection (sync
and async), cancellation of pending and running runs, and a runner inside an asyncio app."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import threading
import time
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgsched
from pgsched.errors import UnknownJobError
from tests.runners import (
    pgsched as cli,
)
from tests.runners import (
    query,
    request,
    runners,
    wait_registered,
    wait_status,
    wait_until,
    write_profile,
)

FAULTS = "tests.apps.faults:ext"


def synced(dsn: str, app: str = FAULTS) -> None:
    assert cli("--app", app, "sync", dsn=dsn).returncode == 0


@pytest.mark.matrix
def test_request_run_commits_and_rolls_back_with_the_callers_transaction(dsn: str) -> None:
    synced(dsn)
    with psycopg.connect(dsn) as conn:  # not autocommit: the caller's own transaction
        run_id = pgsched.request_run(conn, "echo", params={"tenant": 42})
        conn.rollback()
    assert not query(dsn, "SELECT 1 FROM pgsched.runs WHERE id = %s", [run_id])
    with psycopg.connect(dsn) as conn:
        kept = pgsched.request_run(conn, "echo", {"tenant": 7})
        with pytest.raises(UnknownJobError, match="unknown job 'nope'"):
            pgsched.request_run(conn, "nope")
        conn.execute("SELECT 1")  # the caller's transaction is still usable
        conn.commit()
    (row,) = query(dsn, "SELECT params, status FROM pgsched.runs WHERE id = %s", [kept])
    assert row == {"params": {"tenant": 7}, "status": "pending"}


@pytest.mark.matrix
def test_request_and_cancel_work_on_an_async_connection(dsn: str) -> None:
    synced(dsn)

    async def go() -> tuple[int, str]:
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            run_id = await pgsched.request_run(conn, "echo")
            await conn.commit()
            status = await pgsched.cancel_run(conn, run_id, by="alice")
            await conn.commit()
            return run_id, status

    run_id, status = asyncio.run(go())
    (row,) = query(dsn, "SELECT * FROM pgsched.runs WHERE id = %s", [run_id])
    assert status == "cancelled" and row["status"] == "cancelled"
    assert row["cancelled_by"] == "alice" and "cancelled by alice" in row["message"]


@pytest.mark.matrix
def test_cancel_of_a_pending_and_of_a_running_run_ends_both_cancelled(
    dsn: str, tmp_path: Path
) -> None:
    synced(dsn)
    with runners(dsn, tmp_path, apps=[FAULTS], profile=write_profile(tmp_path)) as procs:
        wait_registered(dsn, 1, procs)
        running = request(dsn, "cooperative-sleep", {"seconds": 30})
        wait_status(dsn, running, procs, ["running"])
        with psycopg.connect(dsn) as conn:  # one transaction: no runner sees it pending
            pending = pgsched.request_run(conn, "stubborn-sleep", {"seconds": 30})
            pgsched.cancel_run(conn, pending, by="bob")
            conn.commit()
            said = pgsched.cancel_run(conn, running, by="bob")
            conn.commit()
        done = wait_status(dsn, running, procs, timeout=15)
        out = cli("jobs", "cancel", str(running), "--json", dsn=dsn)
    (first,) = query(dsn, "SELECT * FROM pgsched.runs WHERE id = %s", [pending])
    print(f"\ncancel: pending -> {first['message']!r}; running -> {done['message']!r}")
    assert said == "cancelling"
    assert first["status"] == "cancelled" and first["started_at"] is None
    assert done["status"] == "cancelled" and done["cancelled_by"] == "bob"
    assert "cancelled by bob" in done["message"] and "noticed cancellation" in done["message"]
    assert json.loads(out.stdout) == {"run_id": running, "status": "cancelled"}


@pytest.mark.matrix
def test_a_retry_chain_stops_at_a_cancelled_run(dsn: str, tmp_path: Path) -> None:
    app = "tests.apps.faults:retrying"
    synced(dsn, app)
    with runners(dsn, tmp_path, apps=[app], profile=write_profile(tmp_path)) as procs:
        wait_registered(dsn, 1, procs)
        run_id = request(dsn, "retry-sleeps", {"seconds": 30})
        wait_status(dsn, run_id, procs, ["running"])
        with psycopg.connect(dsn, autocommit=True) as conn:
            pgsched.cancel_run(conn, run_id, by="carol")
        wait_status(dsn, run_id, procs, timeout=15)
    rows = query(dsn, "SELECT status, trigger FROM pgsched.runs ORDER BY id")
    assert rows == [{"status": "cancelled", "trigger": "manual"}], rows


@pytest.mark.matrix
def test_a_cancel_waiting_on_a_failure_being_written_lands_on_the_retry_it_created(
    dsn: str,
) -> None:
    """The failure's transaction (which creates the retry) holds the run while the cancel
    arrives: the cancel waits for it, then cancels the retry that the failure created, in
    the statement's own snapshot of after the commit. Deterministic: the failure commits only
    once the cancel is seen waiting for its lock."""
    query(dsn, "INSERT INTO pgsched.jobs (name, extension, max_attempts) VALUES ('c', 'x', 3)")
    (run,) = query(
        dsn,
        "INSERT INTO pgsched.runs (job_name, status, started_at, runner, lease) "
        "VALUES ('c', 'running', now(), 'r', gen_random_uuid()) RETURNING id",
    )
    answer: list[str] = []
    with psycopg.connect(dsn) as failing:
        failing.execute(
            "UPDATE pgsched.runs SET status = 'failed', finished_at = now(), lease = NULL "
            "WHERE id = %s",
            [run["id"]],
        )  # the retry trigger has inserted attempt 2, not committed yet

        def cancel() -> None:
            with psycopg.connect(dsn, autocommit=True) as conn:
                answer.append(pgsched.cancel_run(conn, run["id"], by="test"))

        canceller = threading.Thread(target=cancel)
        canceller.start()
        wait_until(
            lambda: query(
                dsn,
                "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database()",
            ),
            30,
            "the cancel to wait for the failure's lock",
        )
        failing.commit()
        canceller.join(30)
    assert answer == ["cancelled"], answer
    rows = query(dsn, "SELECT attempt, status FROM pgsched.runs ORDER BY id")
    assert rows == [{"attempt": 1, "status": "failed"}, {"attempt": 2, "status": "cancelled"}]


def test_an_acknowledged_cancel_ends_the_retry_chain_even_when_the_run_fails_meanwhile(
    dsn: str, tmp_path: Path
) -> None:
    """The job (max_attempts=5) fails the moment the test lets it, and the test cancels it at
    about that moment, over and over. Whenever cancel_run answers 'cancelling' or 'cancelled',
    the attempt it landed on is the chain's last: no retry follows a run whose cancel was
    requested, and a failed run's waiting retry is what a late cancel lands on."""
    app = "tests.apps.faults:cancel_race"
    synced(dsn, app)
    query(dsn, "CREATE TABLE race_exec (run_id bigint, attempt int)")
    rng = random.Random(25)
    answers: list[str] = []
    with runners(dsn, tmp_path, apps=[app], profile=write_profile(tmp_path)) as procs:
        wait_registered(dsn, 1, procs)
        with psycopg.connect(dsn, autocommit=True) as conn:
            for i in range(40):
                go = tmp_path / f"go-{i}"
                run_id = request(dsn, "fails-on-go", {"go": str(go)})
                wait_until(partial(_started, dsn, run_id), 20, f"run {run_id} to start", procs)
                jitter = rng.uniform(0, 0.01)  # which lands first varies: that is the race
                if i % 2:
                    said = pgsched.cancel_run(conn, run_id, by="race")
                    time.sleep(jitter)
                    go.touch()
                else:
                    go.touch()
                    time.sleep(jitter)
                    said = pgsched.cancel_run(conn, run_id, by="race")
                answers.append(said)
                # not acknowledged (it had failed, its retry not yet visible): cancel again,
                # until a cancel lands or the chain has run out
                wait_until(
                    partial(_cancelled_to_the_end, conn, dsn, run_id),
                    30,
                    f"the retry chain of run {run_id} to end",
                    procs,
                )
                chain = query(
                    dsn,
                    "SELECT attempt, status, cancel_requested_at FROM pgsched.runs"
                    " WHERE coalesce(retry_of, id) = %s ORDER BY attempt",
                    [run_id],
                )
                asked = [r["attempt"] for r in chain if r["cancel_requested_at"] is not None]
                if said in ("cancelled", "cancelling"):
                    assert asked, chain
                if asked:
                    assert chain[-1]["attempt"] == min(asked), f"run {run_id}: {chain}"
                    executed = query(
                        dsn,
                        "SELECT e.attempt FROM race_exec e JOIN pgsched.runs r ON r.id = e.run_id"
                        " WHERE coalesce(r.retry_of, r.id) = %s",
                        [run_id],
                    )
                    assert max(e["attempt"] for e in executed) <= min(asked), executed
        assert procs[0].terminate() == 0
    print(f"\ncancel racing failure, first answers: {Counter(answers)}")
    assert "cancelling" in answers  # the race was run, not only cancels of ended runs


def _started(dsn: str, run_id: int) -> bool:
    return bool(query(dsn, "SELECT 1 FROM race_exec WHERE run_id = %s", [run_id]))


def _cancelled_to_the_end(conn: psycopg.Connection[Any], dsn: str, run_id: int) -> bool:
    """Cancel the chain of `run_id` once more; True when no attempt of it is left to run."""
    pgsched.cancel_run(conn, run_id, by="race")
    live = (
        "SELECT 1 FROM pgsched.runs WHERE coalesce(retry_of, id) = %s"
        " AND status IN ('pending', 'running')"
    )
    return not query(dsn, live, [run_id])


@pytest.mark.matrix
def test_background_runner_runs_ticks_inside_an_asyncio_app_and_stops_with_it(
    dsn: str,
) -> None:
    from tests.apps.basic import ext

    async def app() -> list[str]:
        handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
        async with pgsched.background_runner(
            dsn, app=ext, heartbeat_interval=0.5, lease_timeout=3, poll_interval=1
        ) as runner:
            assert {s: signal.getsignal(s) for s in handlers} == handlers  # none taken
            await asyncio.sleep(0)  # the host's loop is free meanwhile
            ticks = await asyncio.to_thread(
                wait_until,
                lambda: query(
                    dsn,
                    "SELECT job_name FROM pgsched.runs WHERE trigger = 'schedule' "
                    "AND status = 'succeeded' AND runner = %s",
                    [runner.id],
                ),
                15,
                "ticks run by the background runner",
            )
            return [t["job_name"] for t in ticks]

    ran = asyncio.run(app())
    assert "tick-every-second" in ran
    assert not query(dsn, "SELECT 1 FROM pgsched.runners")  # it left when the app did
    assert not query(dsn, "SELECT 1 FROM pgsched.runs WHERE status = 'running'")


def test_the_example_web_app_runs_jobs_its_requests_ask_for(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """examples/web_app.py: a Starlette app whose lifespan holds a background runner and
    whose handlers request runs on their own connection."""
    pytest.importorskip("starlette.testclient")
    import importlib

    from starlette.testclient import TestClient

    monkeypatch.setenv("PGSCHED_DATABASE_URL", dsn)
    import examples.web_app as web_app

    web_app = importlib.reload(web_app)
    with TestClient(web_app.app) as client:
        accepted = client.post("/greetings/Ada")
        run_id = accepted.json()["run_id"]
        done = wait_until(
            lambda: (r := client.get(f"/runs/{run_id}").json())["status"] == "succeeded" and r,
            20,
            "the requested run",
        )
    assert accepted.status_code == 202
    assert "Ada" in done["message"]
    assert not query(dsn, "SELECT 1 FROM pgsched.runners")  # the app's shutdown stopped it


def test_the_example_web_app_gives_each_user_a_schedule_of_their_own(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """examples/web_app.py: PUT /users/NAME/greeting adds (or replaces) one runtime schedule
    per user with the user as params; a bad expression is a 400 naming it; DELETE stops it."""
    pytest.importorskip("starlette.testclient")
    import importlib

    from starlette.testclient import TestClient

    monkeypatch.setenv("PGSCHED_DATABASE_URL", dsn)
    import examples.web_app as web_app

    web_app = importlib.reload(web_app)
    with TestClient(web_app.app) as client:
        bad = client.put("/users/Bob/greeting", json={"cron": "0 61 * * * *"})
        assert bad.status_code == 400 and "'0 61 * * * *'" in bad.json()["error"]
        for user in ("Ada", "Grace"):
            put = client.put("/users/" + user + "/greeting", json={"cron": "* * * * * *"})
            assert put.status_code == 200 and put.json()["key"] == f"user-{user}"
            assert len(put.json()["next"]) == 3

        def greeted() -> list[dict[str, object]]:
            rows = query(
                dsn,
                "SELECT DISTINCT schedule_key, params, message FROM pgsched.runs "
                "WHERE job_name = 'demo-greet' AND trigger = 'schedule' AND status = 'succeeded'",
            )
            return rows if {r["schedule_key"] for r in rows} == {"user-Ada", "user-Grace"} else []

        rows = wait_until(greeted, 20, "both users' scheduled greetings")
        assert all(r["params"]["name"] in str(r["message"]) for r in rows), rows
        assert client.delete("/users/Ada/greeting").json() == {"removed": True}
        assert client.delete("/users/Ada/greeting").status_code == 404
    keys = query(dsn, "SELECT key FROM pgsched.schedules WHERE job_name = 'demo-greet'")
    assert [r["key"] for r in keys] == ["user-Grace"]
    assert not query(dsn, "SELECT 1 FROM pgsched.schedules WHERE key = 'user-Bob'")


def test_constraint_errors_are_translated_by_constraint_name(dsn: str) -> None:
    """Whatever statement hits them (plain SQL here, not pgsched's): the foreign key to
    jobs.name is an unknown job, the (job, key) unique key an existing schedule, each named
    from the server's detail."""
    from pgsched.dberrors import translate_error
    from pgsched.errors import DatabaseRefusedError, ScheduleExistsError

    synced(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.ForeignKeyViolation) as fkey:
            conn.execute("INSERT INTO pgsched.runs (job_name) VALUES ('no-such-job')")
        add = (
            "INSERT INTO pgsched.schedules (job_name, key, cron) "
            "VALUES ('echo', 'k1', '* * * * * *')"
        )
        conn.execute(add)
        with pytest.raises(psycopg.errors.UniqueViolation) as unique:
            conn.execute(add)
        with pytest.raises(psycopg.errors.CheckViolation) as check:
            conn.execute("INSERT INTO pgsched.runs (job_name, params) VALUES ('echo', '[]')")
    unknown = translate_error(fkey.value, "pgsched")
    assert isinstance(unknown, UnknownJobError) and "unknown job 'no-such-job'" in str(unknown)
    exists = translate_error(unique.value, "pgsched")
    assert isinstance(exists, ScheduleExistsError), exists
    assert "schedule 'k1' of job 'echo' exists already" in str(exists)
    other = translate_error(check.value, "pgsched")
    assert isinstance(other, DatabaseRefusedError) and "runs_params_is_object" in str(other)
