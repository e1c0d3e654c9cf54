"""The dashboard, /metrics, `pgsched health` and `pgsched jobs explain` on a real database."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the dashboard needs pip install 'pgsched[web]'")

import warnings

from markupsafe import escape
from prometheus_client.parser import text_string_to_metric_families

with warnings.catch_warnings():  # starlette 1.x would rather have httpx2; httpx works
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient

import pgsched as api
from pgsched.store import Store
from pgsched.web import Credentials, create_app
from tests.runners import pgsched, query, runners, wait_registered, wait_until

APP = ("--app", "tests.apps.basic:ext", "--app", "tests.apps.basic:ClassExtension")
AUTH = {"Authorization": "Basic " + base64.b64encode(b"ada:s3cret").decode()}
SAME = {"Sec-Fetch-Site": "same-origin"}


@pytest.fixture
def synced(dsn: str) -> str:
    out = pgsched(*APP, "sync", dsn=dsn)
    assert out.returncode == 0, out.stderr
    return dsn


@pytest.fixture
def client(synced: str) -> Iterator[TestClient]:
    app = create_app(synced, credentials=Credentials("ada", "s3cret"), lease_timeout=3)
    with TestClient(app, base_url="http://dash.test", follow_redirects=False) as c:
        yield c


@pytest.fixture
def readonly(synced: str) -> Iterator[TestClient]:
    with TestClient(create_app(synced, credentials=None), base_url="http://dash.test") as c:
        yield c


def csrf_of(client: TestClient, path: str) -> str:
    page = client.get(path, headers=AUTH)
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert match, "the page offers no action"
    return match.group(1)


def known_state(dsn: str) -> None:
    query(
        dsn, "INSERT INTO pgsched.runners (id, hostname, pid, concurrency) VALUES ('r1', 'h', 1, 4)"
    )
    query(
        dsn,
        "INSERT INTO pgsched.runs (job_name, status, started_at, finished_at) VALUES "
        "('echo-params', 'succeeded', to_timestamp(1700000000), to_timestamp(1700000005)),"
        "('echo-params', 'failed', to_timestamp(1700000010), to_timestamp(1700000011))",
    )
    query(dsn, "INSERT INTO pgsched.runs (job_name) VALUES ('echo-params'), ('echo-params')")
    query(
        dsn,
        "INSERT INTO pgsched.runs (job_name, status, started_at, runner) "
        "VALUES ('sleeps', 'running', now(), 'r1')",
    )
    query(
        dsn,
        "UPDATE pgsched.schedules SET next_run_at = now() - interval '1 hour' "
        "WHERE job_name = 'tick-every-second'",
    )


BAD_CRON = "0 61 * * * *"


def validate_as_a_runner(dsn: str) -> list[str]:
    """What a runner's validation duty does with rows written by SQL (Store.validate_schedules):
    the errors it stored."""

    async def go() -> list[str]:
        store = Store(dsn)
        await store.open()
        try:
            return (await store.validate_schedules())[1]
        finally:
            await store.close()

    return asyncio.run(go())


def three_schedules(dsn: str) -> None:
    """class-job: its code schedule ('default', 03:00 UTC), a runtime one added through the
    Python API with params and a zone, and one inserted by SQL with a bad expression, which a
    runner has marked as unable to fire."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        api.add_schedule(
            conn,
            "class-job",
            "tenant-42",
            "0 30 9 * * 1-5",
            timezone="Europe/Berlin",
            params={"tenant": 42, "region": "eu"},
        )
    query(
        dsn,
        "INSERT INTO pgsched.schedules (job_name, key, cron, params) "
        "VALUES ('class-job', 'tenant-7', %s, '{\"tenant\": 7}')",
        (BAD_CRON,),
    )
    (error,) = validate_as_a_runner(dsn)
    assert "'tenant-7'" in error and BAD_CRON in error


def test_metrics_parse_and_report_the_tables(client: TestClient, synced: str) -> None:
    known_state(synced)
    response = client.get("/metrics")
    assert response.status_code == 200
    samples = {
        (s.name, s.labels.get("job")): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    assert samples[("pgsched_runners_live", None)] == 1
    assert samples[("pgsched_runs_pending", "echo-params")] == 2
    assert samples[("pgsched_runs_running", "sleeps")] == 1
    assert samples[("pgsched_job_last_success_timestamp_seconds", "echo-params")] == 1700000005
    assert samples[("pgsched_ticks_overdue", "tick-every-second")] == 1
    (next_run,) = query(
        synced,
        "SELECT extract(epoch FROM next_run_at)::float8 AS t FROM pgsched.jobs "
        "WHERE name = 'class-job'",
    )
    assert samples[("pgsched_job_next_run_timestamp_seconds", "class-job")] == next_run["t"]
    assert ("pgsched_job_next_run_timestamp_seconds", "echo-params") not in samples  # manual
    assert samples[("pgsched_schedules", "class-job")] == 1
    assert ("pgsched_schedules", "echo-params") not in samples  # manual only
    assert not [s for s in samples if s[0] == "pgsched_schedules_invalid"]


def test_metrics_count_schedules_and_those_that_cannot_fire(
    client: TestClient, synced: str
) -> None:
    three_schedules(synced)
    query(
        synced,
        "UPDATE pgsched.schedules SET next_run_at = now() + interval '5 s' WHERE key = 'tenant-42'",
    )
    samples = {
        (s.name, s.labels.get("job")): s.value
        for family in text_string_to_metric_families(client.get("/metrics").text)
        for s in family.samples
    }
    assert samples[("pgsched_schedules", "class-job")] == 3
    assert samples[("pgsched_schedules_invalid", "class-job")] == 1
    assert ("pgsched_schedules_invalid", "tick-every-two") not in samples
    (soonest,) = query(
        synced,
        "SELECT extract(epoch FROM next_run_at)::float8 AS t FROM pgsched.schedules "
        "WHERE key = 'tenant-42'",
    )
    assert samples[("pgsched_job_next_run_timestamp_seconds", "class-job")] == soonest["t"]


def test_job_page_lists_every_schedule_with_its_state_and_the_error_in_full(
    client: TestClient, synced: str
) -> None:
    three_schedules(synced)
    (error,) = query(synced, "SELECT error FROM pgsched.schedules WHERE key = 'tenant-7'")
    page = client.get("/jobs/class-job", headers=AUTH).text
    rows = dict(re.findall(r'<tr data-schedule="([^"]+)"[^>]*>(.*?)</tr>', page, re.S))
    assert list(rows) == ["default", "tenant-7", "tenant-42"]  # default, broken, then by key
    assert "<td>At 03:00</td>" in rows["default"] and ">code<" in rows["default"]
    assert "st-enabled" in rows["default"] and "job's" in rows["default"]
    berlin = rows["tenant-42"]
    assert "<code>0 30 9 * * 1-5</code>" in berlin and "Europe/Berlin" in berlin
    assert "{&#34;region&#34;: &#34;eu&#34;, &#34;tenant&#34;: 42}" in berlin  # compact JSON
    assert ">runtime<" in berlin and "st-enabled" in berlin and " CE" in berlin  # CET/CEST
    broken = rows["tenant-7"]
    assert "st-error" in broken and "invalid schedule" in broken
    assert f'<div class="alert">{escape(error["error"])}</div>' in page  # in full, not cut
    assert "1 error" in page and "Manual only" not in page
    assert "Manual only" in client.get("/jobs/echo-params", headers=AUTH).text


def test_job_page_says_how_many_schedules_it_does_not_show(client: TestClient, synced: str) -> None:
    query(
        synced,
        "INSERT INTO pgsched.schedules (job_name, key, cron) "
        "SELECT 'echo-params', format('t-%s', lpad(i::text, 3, '0')), '0 0 * * * *' "
        "FROM generate_series(1, 60) i",
    )
    page = client.get("/jobs/echo-params", headers=AUTH).text
    assert "showing 50 of 60" in page and page.count("<tr data-schedule=") == 50
    assert "st-validating" in page and "waits for a runner" in page  # not validated yet


def test_jobs_page_counts_schedules_flags_errors_and_shows_the_earliest_tick(
    client: TestClient, synced: str
) -> None:
    three_schedules(synced)
    query(
        synced,
        "UPDATE pgsched.schedules SET next_run_at = '2030-01-02 03:04:05+00' "
        "WHERE key = 'tenant-42'",
    )
    query(
        synced,
        "UPDATE pgsched.schedules SET next_run_at = '2030-06-01 00:00:00+00' "
        "WHERE job_name = 'class-job' AND key = 'default'",
    )
    page = client.get("/jobs", headers=AUTH).text
    rows = dict(re.findall(r'<tr data-job="([^"]+)">(.*?)</tr>', page, re.S))
    assert re.search(
        r'<td class="schedules"><a [^>]*>3</a> <a class="badge bad"', rows["class-job"]
    )
    assert "1 error</a>" in rows["class-job"]
    assert "2030-01-02 03:04:05 UTC" in rows["class-job"]  # the runtime one, not the default
    assert "badge" not in rows["tick-every-two"] and ">1</a>" in rows["tick-every-two"]
    assert "manual only" in rows["echo-params"]


def test_overview_warns_of_schedules_that_cannot_fire(client: TestClient, synced: str) -> None:
    assert 'id="schedule-errors"' not in client.get("/", headers=AUTH).text
    three_schedules(synced)
    query(
        synced,
        "INSERT INTO pgsched.schedules (job_name, key, cron) VALUES ('sleeps', 'x', 'nope')",
    )
    validate_as_a_runner(synced)
    page = client.get("/", headers=AUTH).text
    (warning,) = re.findall(r'<p class="alert" id="schedule-errors">(.*?)</p>', page, re.S)
    assert "2 schedules cannot fire" in warning and "in 2 jobs" in warning
    assert 'href="/jobs/class-job#schedules"' in warning  # the first by name


def test_pages_show_jobs_ticks_runs_and_zones(client: TestClient, synced: str) -> None:
    known_state(synced)
    query(
        synced,
        "INSERT INTO pgsched.runs (job_name, trigger, status, scheduled_for, started_at, "
        "finished_at, message) VALUES "
        "('tick-every-two', 'schedule', 'succeeded', now() - interval '4 s', "
        "now() - interval '4 s', now(), NULL),"
        "('tick-every-two', 'schedule', 'skipped', now() - interval '2 s', NULL, now(), "
        "'missed: 1 tick(s) from x to y were not claimed; misfire=skip')",
    )
    overview = client.get("/", headers=AUTH)
    assert overview.status_code == 200
    assert "live runners" in overview.text and "tick-every-second" in overview.text  # overdue
    jobs = client.get("/jobs?q=tick", headers=AUTH).text
    assert "Every 2 seconds, UTC" in jobs
    assert 'class="tick f-on_time"' in jobs and 'class="tick f-missed"' in jobs
    assert "class-job" not in jobs  # filtered out by the search
    job = client.get("/jobs/class-job", headers=AUTH).text
    assert "At 03:00" in job and ">code<" in job
    (failed,) = query(synced, "SELECT id FROM pgsched.runs WHERE status = 'failed'")
    run = client.get(f"/runs/{failed['id']}", headers=AUTH).text
    assert "Retry chain" in run and " UTC" in run
    runs = client.get("/runs?status=pending", headers=AUTH).text
    assert runs.count('class="status s-pending"') == 2
    assert client.get("/jobs/nope", headers=AUTH).status_code == 404


def test_a_failure_whose_retry_succeeded_is_marked(client: TestClient, synced: str) -> None:
    (first,) = query(
        synced,
        "INSERT INTO pgsched.runs (job_name, status, started_at, finished_at) "
        "VALUES ('raises', 'failed', now(), now()) RETURNING id",
    )
    query(
        synced,
        "INSERT INTO pgsched.runs (job_name, trigger, status, attempt, retry_of, started_at, "
        "finished_at) VALUES ('raises', 'retry', 'succeeded', 2, %s, now(), now())",
        (first["id"],),
    )
    assert "retry succeeded" in client.get("/", headers=AUTH).text


def test_with_credentials_run_now_pause_and_cancel_are_recorded(
    client: TestClient, synced: str
) -> None:
    token = csrf_of(client, "/jobs/echo-params")
    form = {"csrf": token, "params": '{"tenant": 42}'}
    ran = client.post(
        "/jobs/echo-params/run", data=form, headers={**AUTH, **SAME, "HX-Request": "true"}
    )
    assert ran.status_code == 200 and "requested" in ran.text
    (run,) = query(synced, "SELECT id, params, requested_by FROM pgsched.runs")
    assert run["params"] == {"tenant": 42} and run["requested_by"] == "ada"
    assert (
        client.post(
            "/jobs/echo-params/pause", data={"csrf": token}, headers={**AUTH, **SAME}
        ).status_code
        == 303
    )
    assert query(synced, "SELECT paused FROM pgsched.jobs WHERE name = 'echo-params'")[0]["paused"]
    cancel = client.post(
        f"/runs/{run['id']}/cancel",
        data={"csrf": token},
        headers={**AUTH, **SAME, "HX-Request": "1"},
    )
    assert "cancelled" in cancel.text
    assert query(synced, "SELECT status FROM pgsched.runs")[0]["status"] == "cancelled"
    actions = query(
        synced, "SELECT actor, action, job_name, run_id FROM pgsched.actions ORDER BY id"
    )
    assert [(a["actor"], a["action"]) for a in actions] == [
        ("ada", "run"),
        ("ada", "pause"),
        ("ada", "cancel"),
    ]
    assert actions[0]["run_id"] == run["id"]


def test_a_running_run_is_asked_to_stop_and_retry_copies_params(
    client: TestClient, synced: str
) -> None:
    (running,) = query(
        synced,
        "INSERT INTO pgsched.runs (job_name, status, started_at, params) "
        "VALUES ('sleeps', 'running', now(), '{\"seconds\": 1}') RETURNING id",
    )
    token = csrf_of(client, "/jobs/sleeps")
    page = client.get(f"/runs/{running['id']}", headers=AUTH).text
    assert 'name="cancel"' in page
    asked = client.post(
        f"/runs/{running['id']}/cancel",
        data={"csrf": token},
        headers={**AUTH, **SAME, "HX-Request": "1"},
    )
    assert "asked to stop it" in asked.text
    (row,) = query(synced, "SELECT * FROM pgsched.runs WHERE id = %s", [running["id"]])
    assert row["status"] == "running" and row["cancelled_by"] == "dashboard:ada"
    assert 'name="cancel"' not in client.get(f"/runs/{running['id']}", headers=AUTH).text
    client.post(f"/runs/{running['id']}/retry", data={"csrf": token}, headers={**AUTH, **SAME})
    rows = query(synced, "SELECT status, params, requested_by FROM pgsched.runs ORDER BY id")
    assert rows[1] == {"status": "pending", "params": {"seconds": 1}, "requested_by": "ada"}


def test_cross_site_and_tokenless_posts_are_refused(client: TestClient, synced: str) -> None:
    token = csrf_of(client, "/jobs/echo-params")
    for headers in (
        {**AUTH, "Sec-Fetch-Site": "cross-site"},
        {**AUTH, "Sec-Fetch-Site": "same-site"},
        {**AUTH, "Origin": "http://evil.test"},
    ):
        assert (
            client.post(
                "/jobs/echo-params/pause", data={"csrf": token}, headers=headers
            ).status_code
            == 403
        )
    assert client.post("/jobs/echo-params/pause", headers={**AUTH, **SAME}).status_code == 403
    assert (
        client.post(
            "/jobs/echo-params/pause", data={"csrf": "0" * 64}, headers={**AUTH, **SAME}
        ).status_code
        == 403
    )
    assert (
        client.post("/jobs/echo-params/pause", data={"csrf": token}, headers=SAME).status_code
        == 401
    )
    assert client.get("/", headers={}).status_code == 401
    assert not query(synced, "SELECT paused FROM pgsched.jobs WHERE name = 'echo-params'")[0][
        "paused"
    ]
    assert query(synced, "SELECT count(*) AS n FROM pgsched.actions")[0]["n"] == 0


def test_without_credentials_it_is_read_only(readonly: TestClient, synced: str) -> None:
    page = readonly.get("/jobs/echo-params")
    assert page.status_code == 200 and "read-only" in page.text
    assert 'name="csrf"' not in page.text and "Run now" not in page.text
    assert readonly.post("/jobs/echo-params/pause", headers=SAME).status_code == 403


def test_health_fails_without_a_live_runner_and_passes_with_one(
    synced: str, tmp_path: Path
) -> None:
    sick = pgsched("health", dsn=synced)
    assert sick.returncode == 1 and "no live runner" in sick.stdout
    with runners(synced, tmp_path) as procs:
        wait_registered(synced, 1, procs)
        ok = wait_until(
            lambda: (r := pgsched("health", "--json", dsn=synced)).returncode == 0 and r,
            timeout=30,
            what="health to pass",
            procs=procs,
        )
        assert '"ok": true' in ok.stdout


def test_health_names_overdue_ticks(synced: str) -> None:
    query(
        synced,
        "INSERT INTO pgsched.runners (id, hostname, pid, concurrency) VALUES ('r1', 'h', 1, 4)",
    )
    query(
        synced,
        "UPDATE pgsched.schedules SET next_run_at = now() - interval '1 hour' "
        "WHERE job_name = 'class-job'",
    )
    out = pgsched("health", dsn=synced)
    assert out.returncode == 1 and "overdue" in out.stdout and "class-job" in out.stdout


def test_explain_says_paused(synced: str) -> None:
    assert pgsched("jobs", "pause", "class-job", dsn=synced).returncode == 0
    out = pgsched("jobs", "explain", "class-job", dsn=synced)
    assert out.returncode == 0, out.stderr
    assert "class-job: paused" in out.stdout and "pgsched jobs resume class-job" in out.stdout


def test_explain_names_the_running_run_that_blocks_a_job(synced: str) -> None:
    (run,) = query(
        synced,
        "INSERT INTO pgsched.runs (job_name, status, started_at) "
        "VALUES ('sleeps', 'running', now()) RETURNING id",
    )
    out = pgsched("jobs", "explain", "sleeps", "--json", dsn=synced)
    assert out.returncode == 0, out.stderr
    assert f"blocked: run {run['id']} is running" in out.stdout and "overlap=skip" in out.stdout


def test_runs_filter_by_time_range_in_the_dashboard_zone(client: TestClient, synced: str) -> None:
    query(
        synced,
        "INSERT INTO pgsched.runs (job_name, created_at) VALUES "
        "('echo-params', '2026-01-10 12:00+00'), ('uses-db', '2026-01-12 12:00+00')",
    )
    page = client.get("/runs?since=2026-01-11T00:00&until=2026-01-13T00:00", headers=AUTH).text
    assert "uses-db" in page and "echo-params" not in page


def test_pgsched_dashboard_serves_pages_and_metrics(synced: str) -> None:
    import socket
    import subprocess
    import sys

    import httpx

    from tests.runners import ROOT, env_for

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgsched", "dashboard", "--bind", f"127.0.0.1:{port}"],
        env=env_for(synced),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:

        def metrics() -> httpx.Response | None:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
            except httpx.TransportError:
                return None

        response = wait_until(metrics, timeout=30, what="the dashboard to listen")
        assert response.status_code == 200 and "pgsched_runners_live 0.0" in response.text
        jobs = httpx.get(f"http://127.0.0.1:{port}/jobs", timeout=5)
        assert jobs.status_code == 200 and "read-only" in jobs.text
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_read_only_dashboard_runs_under_the_reader_role(synced: str) -> None:
    import uuid

    from psycopg.conninfo import make_conninfo

    role = f"pgsched_reader_{uuid.uuid4().hex[:8]}"
    query(synced, f'CREATE ROLE "{role}" LOGIN')
    assert pgsched("grant", "reader", role, dsn=synced).returncode == 0
    app = create_app(make_conninfo(synced, user=role), credentials=None)
    with TestClient(app, base_url="http://dash.test") as reader:
        for path in ("/", "/jobs", "/jobs/echo-params", "/runs", "/metrics"):
            assert reader.get(path).status_code == 200, path
