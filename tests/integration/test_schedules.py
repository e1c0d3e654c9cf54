"""Schedules as rows: runtime schedules inserted by plain SQL, Python and the CLI, fired
exactly once per (schedule, tick) across runner processes, each tick with its schedule's
params; validation of rows written by SQL; sync and restarts leave runtime rows alone;
deleting a row stops it."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgsched
from pgsched.errors import CronError, ScheduleExistsError, UnknownJobError
from tests.runners import pgsched as cli
from tests.runners import query, runners, wait_registered, wait_until, write_profile

APP = "tests.apps.schedules:ext"
EXEC_TABLE = (
    "CREATE TABLE schedule_exec (run_id bigint, job_name text, schedule_key text, "
    "scheduled_for timestamptz, params jsonb, pid int)"
)


def prepared(dsn: str) -> None:
    assert cli("--app", APP, "sync", dsn=dsn).returncode == 0
    query(dsn, EXEC_TABLE)


def db_now(dsn: str) -> datetime:
    return query(dsn, "SELECT now() AS t")[0]["t"]


@pytest.mark.matrix
def test_two_sql_schedules_of_one_job_fire_once_per_tick_each_with_its_params(
    dsn: str, tmp_path: Path
) -> None:
    prepared(dsn)
    profile = write_profile(tmp_path)
    with runners(dsn, tmp_path, count=2, apps=[APP], profile=profile) as procs:
        wait_registered(dsn, 2, procs)
        query(
            dsn,
            "INSERT INTO pgsched.schedules (job_name, key, cron, params) VALUES "
            "('tenant-report', 'tenant-1', '* * * * * *', '{\"tenant\": 1}'), "
            "('tenant-report', 'tenant-2', '* * * * * *', '{\"tenant\": 2}')",
        )
        began = db_now(dsn)
        wait_until(
            lambda: db_now(dsn) > began + timedelta(seconds=7), 20, "7 seconds of ticks", procs
        )
        # read before the DELETE: its transaction's now(), which decides what it cancels, is
        # later (on a loaded machine, by a second or more)
        deleting = db_now(dsn)
        query(dsn, "DELETE FROM pgsched.schedules WHERE job_name = 'tenant-report'")
        wait_until(
            lambda: (
                not query(dsn, "SELECT 1 FROM pgsched.runs WHERE status IN ('pending', 'running')")
            ),
            20,
            "the last runs to finish",
            procs,
        )
        for p in procs:
            assert p.terminate() == 0, p.output()[-2000:]
    runs = query(
        dsn,
        "SELECT id, schedule_key, scheduled_for, status, params, trigger FROM pgsched.runs "
        "WHERE job_name = 'tenant-report' ORDER BY scheduled_for, schedule_key",
    )
    executed = query(
        dsn,
        "SELECT * FROM schedule_exec WHERE job_name = 'tenant-report' "
        "ORDER BY scheduled_for, schedule_key",
    )
    per_key = Counter((r["schedule_key"], r["scheduled_for"]) for r in executed)
    assert per_key and max(per_key.values()) == 1, "a (schedule, tick) executed twice"
    assert {r["pid"] for r in executed} <= {p.proc.pid for p in procs}
    by_key: dict[str, list[datetime]] = {}
    late = [r for r in runs if r["scheduled_for"] > deleting]
    # a tick claimed ahead of its time when the row was deleted is cancelled before it starts
    # and never executes; one that had started runs to its end
    assert all(r["status"] in ("cancelled", "succeeded") for r in late), late
    cancelled = {
        (r["schedule_key"], r["scheduled_for"]) for r in late if r["status"] == "cancelled"
    }
    assert not cancelled & set(per_key), "a tick cancelled before it started executed"
    finished_late = sum(r["status"] == "succeeded" for r in late)
    runs = [r for r in runs if r["scheduled_for"] <= deleting]
    for r in runs:
        assert r["trigger"] == "schedule" and r["status"] == "succeeded", r
        assert r["params"] == {"tenant": int(r["schedule_key"].split("-")[1])}, r
        by_key.setdefault(r["schedule_key"], []).append(r["scheduled_for"])
    for r in executed:
        assert r["params"] == {"tenant": int(r["schedule_key"].split("-")[1])}, r
    assert set(by_key) == {"tenant-1", "tenant-2"}
    for key, ticks in by_key.items():
        # every second from the first tick to the last, once: none lost, none doubled
        expected = [ticks[0] + timedelta(seconds=i) for i in range(len(ticks))]
        assert ticks == expected, f"{key}: {ticks}"
        assert len(ticks) >= 6, f"{key}: only {len(ticks)} ticks in 7 s"
    assert by_key["tenant-1"] == by_key["tenant-2"], "both schedules fire at each second"
    assert len(executed) == len(runs) + finished_late, "a deleted schedule fired"
    print(
        f"two SQL schedules, two runners: {len(runs)} runs, "
        f"{len(by_key['tenant-1'])} ticks each, runners used: {len({r['pid'] for r in executed})}"
    )


def _claimed_ahead(dsn: str, after: datetime | None) -> list[dict[str, Any]]:
    """The tick of schedule 't' a runner holds ahead of its time (later than `after`)."""
    return query(
        dsn,
        "SELECT scheduled_for FROM pgsched.runs WHERE schedule_key = 't' AND status = 'running'"
        " AND scheduled_for > now() AND scheduled_for > coalesce(%s::timestamptz, '-infinity')"
        " ORDER BY scheduled_for LIMIT 1",
        [after],
    )


def test_removing_and_re_adding_a_schedule_key_within_the_lookahead_keeps_every_tick_once(
    dsn: str, tmp_path: Path
) -> None:
    """A schedule is removed while a runner holds its next tick (claimed ahead), and added again
    under the same key starting at that tick, over and over, across two runners: the removed
    schedule's tick is cancelled before it starts, and the new one's tick runs in its place
    (its row revived, not refused by the unique key), once. misfire=all and overlap=allow: a
    runner late on a loaded machine runs a late tick rather than skipping it, so the count
    does not depend on timing. (A tick its runner started before it heard of the cancel ran
    under the removed schedule: it ends `cancelled`, once, and is not revived.)"""
    prepared(dsn)
    profile = write_profile(
        tmp_path,
        "\nscheduler:\n  jobs:\n    - job: tenant-report\n      misfire: all\n"
        "      overlap: allow\n",
    )
    add = (
        "INSERT INTO pgsched.schedules (job_name, key, cron, params, next_run_at)"
        " VALUES ('tenant-report', 't', '* * * * * *', '{\"tenant\": 1}', %s)"
    )
    remove = "DELETE FROM pgsched.schedules WHERE job_name = 'tenant-report' AND key = 't'"
    with runners(dsn, tmp_path, count=2, apps=[APP], profile=profile) as procs:
        wait_registered(dsn, 2, procs)
        query(dsn, add, [None])
        tick = None
        for i in range(10):
            # every other time, a tick of the re-added schedule runs before the next removal
            after = tick + timedelta(seconds=i % 2) if tick is not None else None
            ahead = wait_until(
                partial(_claimed_ahead, dsn, after), 20, "a tick claimed ahead", procs
            )
            tick = ahead[0]["scheduled_for"]
            with psycopg.connect(dsn, autocommit=True) as conn:
                if i % 2:
                    with conn.transaction():  # one transaction, or two: both are done
                        conn.execute(remove)
                        conn.execute(add, [tick])
                else:
                    conn.execute(remove)
                    conn.execute(add, [tick])
        wait_until(partial(_claimed_ahead, dsn, tick), 20, "the tick after the last re-add", procs)
        query(dsn, remove)
        stopped = db_now(dsn)
        wait_until(
            lambda: (
                not query(dsn, "SELECT 1 FROM pgsched.runs WHERE status IN ('pending', 'running')")
            ),
            20,
            "the last runs to finish",
            procs,
        )
        for p in procs:
            assert p.terminate() == 0, p.output()[-2000:]
    executed = [
        r["scheduled_for"]
        for r in query(
            dsn,
            "SELECT scheduled_for FROM schedule_exec WHERE schedule_key = 't'"
            " ORDER BY scheduled_for",
        )
    ]
    assert executed, "no tick ran"
    assert len(executed) == len(set(executed)), f"a tick ran twice: {executed}"
    runs = query(
        dsn,
        "SELECT id, scheduled_for, status, runner, created_at, started_at, finished_at, message"
        " FROM pgsched.runs WHERE schedule_key = 't' ORDER BY scheduled_for",
    )
    expected = [executed[0] + timedelta(seconds=i) for i in range(len(executed))]
    assert executed == expected, f"a tick was lost: {executed}\n{runs}"
    assert executed[-1] >= tick and executed[-1] <= stopped, (executed[-1], tick, stopped)
    ran = [r["scheduled_for"] for r in runs if r["started_at"] is not None]
    assert ran == executed, runs
    assert {r["status"] for r in runs} <= {"succeeded", "cancelled"}, runs
    after = [r for r in runs if r["scheduled_for"] > executed[-1]]  # the last removal's
    assert all(r["status"] == "cancelled" and r["started_at"] is None for r in after), after
    negative = query(dsn, "SELECT id FROM pgsched.runs WHERE duration < interval '0'")
    assert not negative, f"negative durations: {negative}"
    print(f"\nre-added 10 times: {len(executed)} ticks, each once")


@pytest.mark.matrix
def test_a_bad_expression_inserted_by_sql_gets_an_error_and_never_fires(
    dsn: str, tmp_path: Path
) -> None:
    prepared(dsn)
    with runners(dsn, tmp_path, apps=[APP], profile=write_profile(tmp_path)) as procs:
        wait_registered(dsn, 1, procs)
        query(
            dsn,
            "INSERT INTO pgsched.schedules (job_name, key, cron, timezone) VALUES "
            "('tenant-report', 'bad-minute', '0 61 * * * *', NULL), "
            "('tenant-report', 'bad-zone', '* * * * * *', 'Mars/Olympus'), "
            "('tenant-report', 'good', '* * * * * *', NULL)",
        )

        def settled() -> list[dict[str, object]]:
            rows = query(
                dsn,
                "SELECT key, error, next_run_at FROM pgsched.schedules "
                "WHERE job_name = 'tenant-report' ORDER BY key",
            )
            return rows if all(r["error"] or r["next_run_at"] for r in rows) else []

        rows = {r["key"]: r for r in wait_until(settled, 10, "validation", procs)}
        assert "'0 61 * * * *'" in rows["bad-minute"]["error"]
        assert "minute '61'" in rows["bad-minute"]["error"]
        assert "'Mars/Olympus'" in rows["bad-zone"]["error"]
        assert rows["bad-minute"]["next_run_at"] is None and rows["bad-zone"]["next_run_at"] is None
        assert rows["good"]["error"] is None
        wait_until(
            lambda: query(dsn, "SELECT 1 FROM schedule_exec WHERE schedule_key = 'good' LIMIT 1"),
            10,
            "the good schedule to fire",
            procs,
        )
        # An edit by SQL takes effect at once: the bad row fixed fires, the good one broken
        # stops, atomically, and says why.
        query(dsn, "UPDATE pgsched.schedules SET cron = '* * * * * *' WHERE key = 'bad-minute'")
        query(dsn, "UPDATE pgsched.schedules SET cron = 'every second' WHERE key = 'good'")
        wait_until(
            lambda: query(
                dsn, "SELECT 1 FROM schedule_exec WHERE schedule_key = 'bad-minute' LIMIT 1"
            ),
            10,
            "the fixed schedule to fire",
            procs,
        )
        (good,) = query(dsn, "SELECT error FROM pgsched.schedules WHERE key = 'good'")
        assert good["error"] and "'every second'" in good["error"]
        broken_at = db_now(dsn)
        listed = cli("--app", APP, "jobs", "list", dsn=dsn)
        assert listed.returncode == 0, listed.stderr
        assert "3 (2 errors)" in listed.stdout, listed.stdout  # bad-zone, and good broken
        explained = cli("--app", APP, "jobs", "explain", "tenant-report", dsn=dsn)
        assert "'every second'" in explained.stdout, explained.stdout
        wait_until(lambda: db_now(dsn) > broken_at + timedelta(seconds=2), 10)
        assert procs[0].terminate() == 0
    fired = query(
        dsn,
        "SELECT schedule_key, max(scheduled_for) AS last FROM pgsched.runs "
        "WHERE job_name = 'tenant-report' GROUP BY schedule_key",
    )
    last = {r["schedule_key"]: r["last"] for r in fired}
    assert "bad-zone" not in last
    assert last["good"] <= broken_at, "a schedule with an error fired"
    assert "schedule cannot fire" in procs[0].output()


def test_a_runtime_schedule_survives_sync_and_a_restart_and_deleting_it_stops_it(
    dsn: str, tmp_path: Path
) -> None:
    prepared(dsn)
    with psycopg.connect(dsn) as conn:
        sched = pgsched.add_schedule(
            conn, "coded", key="extra", cron="* * * * * *", params={"extra": True}
        )
        conn.commit()
    assert sched.source == "runtime" and sched.next_run_at is not None
    profile = write_profile(tmp_path)
    for round_ in range(2):  # a restart between the rounds, with a sync before each
        assert cli("--app", APP, "sync", dsn=dsn).returncode == 0
        began = db_now(dsn)

        def both_fired(since: datetime = began) -> bool:
            rows = query(
                dsn,
                "SELECT DISTINCT schedule_key FROM schedule_exec WHERE scheduled_for > %s",
                [since],
            )
            return len(rows) == 2

        with runners(dsn, tmp_path, apps=[APP], profile=profile) as procs:
            wait_until(both_fired, 15, f"both schedules to fire (round {round_})", procs)
            assert procs[0].terminate() == 0
    (row,) = query(dsn, "SELECT cron, params, source FROM pgsched.schedules WHERE key = 'extra'")
    assert row == {"cron": "* * * * * *", "params": {"extra": True}, "source": "runtime"}
    keys = {
        r["key"]: r["source"]
        for r in query(dsn, "SELECT key, source FROM pgsched.schedules WHERE job_name = 'coded'")
    }
    assert keys == {"default": "code", "extra": "runtime"}
    with psycopg.connect(dsn) as conn:
        assert pgsched.remove_schedule(conn, "coded", "extra") is True
        conn.commit()
        assert pgsched.remove_schedule(conn, "coded", "extra") is False
    removed_at = db_now(dsn)
    with runners(dsn, tmp_path, apps=[APP], profile=profile) as procs:
        wait_until(
            lambda: query(
                dsn,
                "SELECT 1 FROM schedule_exec WHERE schedule_key = 'default' "
                "AND scheduled_for > %s + interval '2 seconds'",
                [removed_at],
            ),
            15,
            "the default schedule to go on",
            procs,
        )
        assert procs[0].terminate() == 0
    late = query(
        dsn,
        "SELECT id FROM pgsched.runs WHERE schedule_key = 'extra' AND scheduled_for > %s",
        [removed_at],
    )
    assert not late, "a removed schedule fired"
    history = query(dsn, "SELECT count(*) AS n FROM pgsched.runs WHERE schedule_key = 'extra'")
    assert history[0]["n"] >= 2, "the removed schedule's history stays"


@pytest.mark.matrix
def test_add_schedule_validates_and_previews_and_if_exists_decides(dsn: str) -> None:
    prepared(dsn)
    with psycopg.connect(dsn) as conn:
        with pytest.raises(CronError, match=r"schedule 'k' of job 'tenant-report'.*'0 61"):
            pgsched.add_schedule(conn, "tenant-report", key="k", cron="0 61 * * * *")
        with pytest.raises(CronError, match="'Mars/Olympus'"):
            pgsched.add_schedule(
                conn, "tenant-report", key="k", cron="* * * * * *", timezone="Mars/Olympus"
            )
        with pytest.raises(UnknownJobError, match="'nope'"):
            pgsched.add_schedule(conn, "nope", key="k", cron="* * * * * *")
        with pytest.raises(pgsched.ConfigError, match="code schedule"):
            pgsched.add_schedule(conn, "coded", key="default", cron="* * * * * *")
        sched = pgsched.add_schedule(
            conn,
            "tenant-report",
            key="tenant-42",
            cron="0 0 9 * * 1-5",
            timezone="Europe/Berlin",
            params={"tenant": 42},
        )
        first, second, third = sched.next_fire_times(3)
        for t in (first, second, third):
            local = t.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Berlin"))
            assert (local.hour, local.minute, local.second) == (9, 0, 0)
            assert local.isoweekday() <= 5
        assert first == sched.next_run_at and first < second < third
        with pytest.raises(ScheduleExistsError, match="if_exists='replace'"):
            pgsched.add_schedule(conn, "tenant-report", key="tenant-42", cron="* * * * * *")
        kept = pgsched.add_schedule(
            conn, "tenant-report", key="tenant-42", cron="* * * * * *", if_exists="keep"
        )
        assert kept.cron == "0 0 9 * * 1-5" and kept.id == sched.id
        replaced = pgsched.add_schedule(
            conn,
            "tenant-report",
            key="tenant-42",
            cron="*/5 * * * * *",
            params={"tenant": 43},
            if_exists="replace",
        )
        assert replaced.id == sched.id and replaced.params == {"tenant": 43}
        assert replaced.zone == "UTC" and replaced.timezone is None
        assert replaced.next_run_at is not None and replaced.next_run_at.second % 5 == 0
        # a new expression whose first tick is the old one's keeps the tick pgsched computed
        for cron in ("0-59/5 * * * * *", "*/5 * * * * *", "0-59/5 * * * * *"):
            again = pgsched.add_schedule(
                conn, "tenant-report", key="tenant-42", cron=cron, if_exists="replace"
            )
            assert again.next_run_at is not None, cron  # not left for a runner to validate
        conn.rollback()  # all of it in the caller's transaction
    assert not query(dsn, "SELECT 1 FROM pgsched.schedules WHERE key = 'tenant-42'")

    async def go() -> list[pgsched.Schedule]:
        async with await psycopg.AsyncConnection.connect(dsn) as aconn:
            await pgsched.add_schedule(aconn, "tenant-report", key="a", cron="@hourly")
            await aconn.commit()
            return await pgsched.list_schedules(aconn, "tenant-report")

    import asyncio

    (listed,) = asyncio.run(go())
    assert (listed.key, listed.cron, listed.error) == ("a", "@hourly", None)
    assert listed.next_run_at is not None and listed.next_run_at.minute == 0


def test_schedules_cli_adds_lists_and_removes_with_clear_errors(dsn: str) -> None:
    prepared(dsn)
    added = cli(
        "--app", APP, "schedules", "add", "tenant-report", "t-7", "0 0 9 * * *",
        "-p", "tenant=7", "--timezone", "Europe/Berlin", dsn=dsn,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "t-7" in added.stdout and "next" in added.stdout
    bad = cli("--app", APP, "schedules", "add", "tenant-report", "t-8", "0 61 * * * *", dsn=dsn)
    assert bad.returncode == 2
    assert "schedule 't-8' of job 'tenant-report'" in bad.stderr and "'0 61 * * * *'" in bad.stderr
    again = cli("--app", APP, "schedules", "add", "tenant-report", "t-7", "* * * * * *", dsn=dsn)
    assert again.returncode == 2 and "--replace" in again.stderr, again.stderr
    listed = cli("--app", APP, "--json", "schedules", "list", "tenant-report", dsn=dsn)
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert row["key"] == "t-7" and row["params"] == {"tenant": 7}
    assert row["timezone"] == "Europe/Berlin"
    everything = cli("--app", APP, "schedules", "list", dsn=dsn)
    assert "coded" in everything.stdout and "default" in everything.stdout
    shown = cli("--app", APP, "jobs", "show", "tenant-report", dsn=dsn)
    assert "t-7" in shown.stdout, shown.stdout
    listed_jobs = cli("--app", APP, "jobs", "list", dsn=dsn)
    assert listed_jobs.returncode == 0
    removed = cli("--app", APP, "schedules", "remove", "tenant-report", "t-7", dsn=dsn)
    assert removed.returncode == 0, removed.stderr
    missing = cli("--app", APP, "schedules", "remove", "tenant-report", "t-7", dsn=dsn)
    assert missing.returncode == 1 and "no schedule 't-7'" in missing.stderr
    default = cli("--app", APP, "schedules", "remove", "coded", "default", dsn=dsn)
    assert default.returncode == 2 and "code schedule" in default.stderr


PROFILE_OVERRIDE = """
scheduler:
  jobs:
    - extension: tenants
      job: coded
      schedule: "*/2 * * * * *"
"""


def test_upgrading_a_database_with_history_from_0_1_keeps_every_tick_once(
    dsn: str, tmp_path: Path
) -> None:
    """A database at revision 0006 (0.1) with history: 0007 makes each job's code/profile
    schedule its `default` row with the same next tick, every run belongs to it, and the
    runner goes on from that tick: nothing fires twice, nothing is skipped."""
    import time

    from pgsched.migrate import downgrade, upgrade

    profile = write_profile(tmp_path, PROFILE_OVERRIDE)
    assert cli("--app", APP, "sync", dsn=dsn, profile=profile).returncode == 0
    query(dsn, EXEC_TABLE)
    with runners(dsn, tmp_path, apps=[APP], profile=profile) as procs:
        wait_until(
            lambda: len(query(dsn, "SELECT 1 FROM schedule_exec")) >= 2, 15, "history", procs
        )
        assert procs[0].terminate() == 0
    downgrade(dsn, "0006")  # what 0.1 left: no schedules table, no schedule_key
    assert not query(dsn, "SELECT to_regclass('pgsched.schedules') AS t")[0]["t"]
    # Years of 0.1 history, then the job's next tick two seconds ahead, as 0.1 left it.
    query(
        dsn,
        "INSERT INTO pgsched.runs (job_name, trigger, status, scheduled_for, started_at, "
        "finished_at) SELECT 'coded', 'schedule', 'succeeded', t, t, t "
        "FROM generate_series(now() - interval '30 days', now() - interval '1 hour', "
        "interval '10 seconds') AS t",
    )
    query(dsn, "INSERT INTO pgsched.runs (job_name) VALUES ('tenant-report')")
    (before,) = query(dsn, "SELECT count(*) AS runs, max(id) AS last FROM pgsched.runs")
    (job,) = query(
        dsn,
        "UPDATE pgsched.jobs SET next_run_at = date_trunc('second', now()) + interval '4 seconds'"
        " - make_interval(secs => floor(extract(second FROM now()))::int % 2) "
        "WHERE name = 'coded' RETURNING next_run_at",
    )
    began = time.monotonic()
    upgrade(dsn)
    took = time.monotonic() - began
    rows = query(
        dsn,
        "SELECT job_name, key, cron, timezone, source, next_run_at, error FROM pgsched.schedules "
        "ORDER BY job_name",
    )
    by_job = {r["job_name"]: r for r in rows}
    assert "tenant-report" not in by_job, "a manual-only job has no schedule row"
    assert by_job["coded"] == {
        "job_name": "coded",
        "key": "default",
        "cron": "*/2 * * * * *",
        "timezone": None,
        "source": "profile",
        "next_run_at": job["next_run_at"],
        "error": None,
    }
    assert by_job["pgsched-prune-history"]["source"] == "code"
    (after,) = query(
        dsn,
        "SELECT count(*) AS runs, count(*) FILTER (WHERE schedule_key = 'default') AS default "
        "FROM pgsched.runs",
    )
    assert after == {"runs": before["runs"], "default": before["runs"]}
    assert cli("--app", APP, "sync", dsn=dsn, profile=profile).returncode == 0
    (kept,) = query(dsn, "SELECT next_run_at FROM pgsched.schedules WHERE job_name = 'coded'")
    assert kept["next_run_at"] == job["next_run_at"], "sync after the upgrade moved the tick"
    with runners(dsn, tmp_path, apps=[APP], profile=profile) as procs:
        wait_until(
            lambda: query(
                dsn,
                "SELECT 1 FROM pgsched.runs WHERE job_name = 'coded' AND scheduled_for > %s "
                "AND status = 'succeeded'",
                [job["next_run_at"] + timedelta(seconds=2)],
            ),
            20,
            "ticks after the upgrade",
            procs,
        )
        assert procs[0].terminate() == 0
    ticks = [
        r["scheduled_for"]
        for r in query(
            dsn,
            "SELECT scheduled_for FROM pgsched.runs WHERE job_name = 'coded' "
            "AND trigger = 'schedule' AND id > %s ORDER BY scheduled_for",
            [before["last"]],
        )
    ]
    assert ticks[0] == job["next_run_at"], "the first tick after the upgrade is 0.1's next"
    assert ticks == [ticks[0] + timedelta(seconds=2 * i) for i in range(len(ticks))]
    print(
        f"0.1 -> 0010 with {before['runs']} runs of history: upgrade took {took:.2f}s; "
        f"next tick kept ({job['next_run_at']:%H:%M:%S}), {len(ticks)} ticks after it, once each"
    )


@pytest.mark.matrix
def test_sync_owns_the_default_row_and_leaves_runtime_rows_alone(dsn: str, tmp_path: Path) -> None:
    prepared(dsn)
    with psycopg.connect(dsn) as conn:
        pgsched.add_schedule(conn, "coded", key="zoned", cron="0 0 9 * * *", timezone="UTC")
        pgsched.add_schedule(conn, "coded", key="follows-job", cron="0 0 9 * * *")
        conn.commit()

    def state() -> dict[str, dict[str, object]]:
        rows = query(
            dsn,
            "SELECT key, cron, timezone, source, next_run_at, updated_at FROM pgsched.schedules "
            "WHERE job_name = 'coded'",
        )
        return {r["key"]: r for r in rows}

    before = state()
    assert before["default"]["source"] == "code" and before["default"]["cron"] == "* * * * * *"
    override = tmp_path / "override.yaml"
    override.write_text(
        "scheduler:\n  jobs:\n    - extension: tenants\n      job: coded\n"
        "      schedule: '*/2 * * * * *'\n      timezone: Europe/Berlin\n"
    )
    assert cli("--app", APP, "sync", dsn=dsn, profile=override).returncode == 0
    after = state()
    assert (after["default"]["cron"], after["default"]["source"]) == ("*/2 * * * * *", "profile")
    assert after["default"]["next_run_at"] is not None
    # the runtime rows' definitions are untouched; the one in the job's zone is computed again
    for key in ("zoned", "follows-job"):
        assert after[key]["cron"] == before[key]["cron"]
        assert after[key]["updated_at"] == before[key]["updated_at"]
    assert after["zoned"]["next_run_at"] == before["zoned"]["next_run_at"]
    assert after["follows-job"]["next_run_at"] is None, "a runner recomputes it in Berlin time"
    assert cli("--app", APP, "sync", dsn=dsn).returncode == 0  # the override removed
    again = state()
    assert (again["default"]["cron"], again["default"]["source"]) == ("* * * * * *", "code")
    assert set(again) == {"default", "zoned", "follows-job"}


@pytest.mark.matrix
def test_a_tick_claim_never_waits_for_a_job_row_someone_holds(dsn: str, tmp_path: Path) -> None:
    """Sync and `jobs pause` lock a job row, then its schedule rows; a tick claim holds
    schedule rows and only copies the tick to the job row when nobody holds it: the two never
    deadlock, and the tick fires while the job row is held."""
    prepared(dsn)
    with runners(dsn, tmp_path, apps=[APP], profile=write_profile(tmp_path)) as procs:
        wait_registered(dsn, 1, procs)
        with psycopg.connect(dsn) as holder:
            holder.execute("SELECT 1 FROM pgsched.jobs WHERE name = 'coded' FOR NO KEY UPDATE")
            held_at = db_now(dsn)
            wait_until(
                lambda: query(
                    dsn,
                    "SELECT 1 FROM schedule_exec WHERE job_name = 'coded' AND scheduled_for > %s",
                    [held_at + timedelta(seconds=1)],
                ),
                15,
                "ticks while the job row is held",
                procs,
            )
            holder.rollback()
        # the copy in pgsched.jobs catches up at the next claim
        wait_until(
            lambda: query(
                dsn,
                "SELECT 1 FROM pgsched.jobs j JOIN pgsched.schedules s ON s.job_name = j.name "
                "AND s.key = 'default' WHERE j.name = 'coded' AND j.next_run_at = s.next_run_at "
                "AND j.next_run_at > now()",
            ),
            10,
            "jobs.next_run_at to follow the schedule",
            procs,
        )
        assert procs[0].terminate() == 0


@pytest.mark.matrix
def test_schedules_of_a_paused_job_leave_the_due_index(dsn: str) -> None:
    """A paused (or disabled, or orphaned) job's schedules are not in schedules_due_idx: the
    claim does not wade through them, however many there are and however overdue."""
    prepared(dsn)
    query(
        dsn,
        "INSERT INTO pgsched.schedules (job_name, key, cron, next_run_at) "
        "SELECT 'tenant-report', 't-' || i, '* * * * * *', now() - interval '1 hour' "
        "FROM generate_series(1, 2000) AS i",
    )
    assert cli("--app", APP, "jobs", "pause", "tenant-report", dsn=dsn).returncode == 0
    (row,) = query(
        dsn,
        "SELECT count(*) FILTER (WHERE job_active) AS active, count(*) AS total "
        "FROM pgsched.schedules WHERE job_name = 'tenant-report'",
    )
    assert row == {"active": 0, "total": 2000}
    from pgsched.queries import named_queries

    claim = named_queries("pgsched")["seconds_until_due"]
    with psycopg.connect(dsn) as conn:
        conn.execute(named_queries("pgsched")["plan_by_index"])
        plan = conn.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + claim, {"code_version": "x"}
        ).fetchone()
    assert plan is not None
    text = json.dumps(plan[0])
    assert "schedules_due_idx" in text
    assert "Rows Removed by Join Filter" not in text or '"Rows Removed by Join Filter": 0' in text
    assert cli("--app", APP, "jobs", "resume", "tenant-report", dsn=dsn).returncode == 0
    (row,) = query(
        dsn,
        "SELECT count(*) FILTER (WHERE job_active) AS active FROM pgsched.schedules "
        "WHERE job_name = 'tenant-report'",
    )
    assert row["active"] == 2000
    # new rows of a paused job start inactive
    assert cli("--app", APP, "jobs", "pause", "tenant-report", dsn=dsn).returncode == 0
    query(
        dsn,
        "INSERT INTO pgsched.schedules (job_name, key, cron) "
        "VALUES ('tenant-report', 'x', '@daily')",
    )
    (new,) = query(dsn, "SELECT job_active FROM pgsched.schedules WHERE key = 'x'")
    assert new["job_active"] is False


def test_downgrading_0007_keeps_one_run_per_tick_preferring_the_default_schedule(
    dsn: str,
) -> None:
    from pgsched.migrate import downgrade, upgrade

    prepared(dsn)
    query(
        dsn,
        "INSERT INTO pgsched.runs (job_name, schedule_key, trigger, status, scheduled_for, "
        "finished_at) VALUES "
        "('coded', 'tenant-1', 'schedule', 'succeeded', '2026-01-01 10:00Z', now()), "
        "('coded', 'default', 'schedule', 'succeeded', '2026-01-01 10:00Z', now()), "
        "('coded', 'tenant-1', 'schedule', 'succeeded', '2026-01-01 10:01Z', now()), "
        "('coded', 'tenant-2', 'schedule', 'succeeded', '2026-01-01 10:01Z', now())",
    )
    downgrade(dsn, "0006")
    rows = query(
        dsn, "SELECT id, scheduled_for FROM pgsched.runs WHERE job_name = 'coded' ORDER BY id"
    )
    assert [r["id"] for r in rows] == [2, 3], rows  # the default's 10:00, the first 10:01
    upgrade(dsn)
    (row,) = query(dsn, "SELECT count(*) AS n FROM pgsched.schedules WHERE key = 'default'")
    assert row["n"] >= 2
