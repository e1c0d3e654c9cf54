"""Rough edges a first-time user hit (issue 13), each shown fixed through the CLI itself."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg

from pgsched.embedded import stop_embedded
from tests.runners import ROOT, env_for, pgsched, query, runners, wait_registered

APP = ("--app", "tests.apps.basic:ext")

BERLIN = """\
scheduler:
  jobs:
    - job: echo-params
      schedule: "0 30 2 * * *"
      timezone: Europe/Berlin
      timeout: 90m
"""


def test_jobs_show_reads_as_settings_not_python_reprs(dsn: str, tmp_path: Path) -> None:
    profile = tmp_path / "profile.yaml"
    profile.write_text(BERLIN)
    assert pgsched(*APP, "sync", dsn=dsn, profile=profile).returncode == 0
    out = pgsched(*APP, "jobs", "show", "echo-params", dsn=dsn, profile=profile).stdout
    print(out)
    settings = out.split("\n\n")[0].splitlines()
    lines = {line.split()[0]: line.split(None, 1)[1] for line in settings}
    assert lines["enabled"] == "yes" and lines["paused"] == "no"
    assert lines["timeout"] == "1h30m" and lines["misfire_grace"] == "1m"
    assert lines["retry_backoff"] == "5s"
    assert lines["isolation"] == "thread"
    assert "02:30:00 CE" in lines["next_run_at"]  # the job's own zone, labelled (CET/CEST)
    assert "True" not in out and "{" not in out
    # an override names the profile entry it came from
    assert f"schedule ← {profile}:3" in out and f"timeout ← {profile}:3" in out


def test_isolation_is_synced_and_shown_like_every_setting(dsn: str) -> None:
    """Until 0.3 sync left `isolation` out: nothing outside the code said a job ran in a
    killable worker process."""
    app = ("--app", "tests.apps.isolated:ext")
    assert pgsched(*app, "sync", dsn=dsn).returncode == 0
    out = pgsched(*app, "jobs", "show", "iso-echo", dsn=dsn).stdout
    assert "\nisolation " in out and out.split("\nisolation ")[1].split()[0] == "process"
    shown = json.loads(pgsched(*app, "jobs", "show", "iso-echo", "--json", dsn=dsn).stdout)
    assert shown["job"]["isolation"] == "process", shown
    rows = query(dsn, "SELECT name, isolation FROM pgsched.jobs ORDER BY name")
    assert {r["name"]: r["isolation"] for r in rows}["iso-echo"] == "process"
    assert {r["isolation"] for r in rows if r["name"].startswith("pgsched")} == {"thread"}


def test_jobs_list_shows_the_next_run_in_the_jobs_zone_with_its_label(
    dsn: str, tmp_path: Path
) -> None:
    profile = tmp_path / "profile.yaml"
    profile.write_text(BERLIN)
    assert pgsched(*APP, "sync", dsn=dsn, profile=profile).returncode == 0
    out = pgsched(*APP, "jobs", "list", "--wide", dsn=dsn, profile=profile).stdout
    (row,) = [line for line in out.splitlines() if line.startswith("echo-params")]
    assert "02:30:00 CE" in row


def test_jobs_run_wait_timeout_gives_up_when_no_runner_is_live(dsn: str) -> None:
    assert pgsched(*APP, "sync", dsn=dsn).returncode == 0
    out = pgsched(*APP, "jobs", "run", "echo-params", "--wait", "--timeout", "1", dsn=dsn)
    assert out.returncode == 1, out.stderr
    assert "no runner is alive" in out.stderr  # said up front
    assert "still pending after 1s: no live runner defines it" in out.stderr
    usage = pgsched(*APP, "jobs", "run", "echo-params", "--timeout", "1", dsn=dsn)
    assert usage.returncode == 2 and "--timeout goes with --wait" in usage.stderr


def test_jobs_status_exits_1_without_a_live_runner_and_marks_succeeded_retries(
    dsn: str, tmp_path: Path
) -> None:
    assert pgsched(*APP, "sync", dsn=dsn).returncode == 0
    (first,) = query(
        dsn,
        "INSERT INTO pgsched.runs (job_name, status, started_at, finished_at, message) "
        "VALUES ('raises', 'failed', now(), now(), 'boom') RETURNING id",
    )
    (retry,) = query(
        dsn,
        "INSERT INTO pgsched.runs (job_name, trigger, status, attempt, retry_of, started_at, "
        "finished_at) VALUES ('raises', 'retry', 'succeeded', 2, %s, now(), now()) RETURNING id",
        (first["id"],),
    )
    out = pgsched(*APP, "jobs", "status", "--wide", dsn=dsn)
    print(out.stdout)
    assert out.returncode == 1 and "no live runner" in out.stderr
    assert f"retried: succeeded at attempt 2 (run {retry['id']})" in out.stdout
    with runners(dsn, tmp_path) as procs:
        wait_registered(dsn, 1, procs)
        live = pgsched(*APP, "jobs", "status", "--json", dsn=dsn)
        assert live.returncode == 0, live.stderr
        status = json.loads(live.stdout)
        assert len(status["runners"]) == 1
        assert status["recent_failures"][0]["retry_succeeded_id"] == retry["id"]


def test_json_is_honoured_by_sync_migrate_pause_and_resume(dsn: str) -> None:
    synced = json.loads(pgsched(*APP, "--json", "sync", dsn=dsn).stdout)
    assert "echo-params" in synced["inserted"] and synced["orphaned"] == []
    migrated = json.loads(pgsched("migrate", "--json", dsn=dsn).stdout)
    assert migrated["changed"] is False and migrated["after"] == migrated["before"]
    paused = json.loads(pgsched(*APP, "jobs", "pause", "echo-params", "--json", dsn=dsn).stdout)
    assert paused == {"job": "echo-params", "paused": True}
    resumed = json.loads(pgsched(*APP, "--json", "jobs", "resume", "echo-params", dsn=dsn).stdout)
    assert resumed == {"job": "echo-params", "paused": False}


def test_cut_cells_say_how_to_see_them_and_wide_shows_them_whole(dsn: str) -> None:
    assert pgsched(*APP, "sync", dsn=dsn).returncode == 0
    message = "a long message " * 20
    query(
        dsn,
        "INSERT INTO pgsched.runs (job_name, status, started_at, finished_at, message) "
        "VALUES ('raises', 'failed', now(), now(), %s)",
        (message.strip(),),
    )
    cut = pgsched(*APP, "jobs", "history", dsn=dsn)
    assert "…" in cut.stdout and "--wide shows them whole" in cut.stderr
    wide = pgsched(*APP, "jobs", "history", "--wide", dsn=dsn)
    assert message.strip() in wide.stdout and "…" not in wide.stdout


def test_embedded_url_stop_and_its_notice_once_per_data_directory() -> None:
    root = Path(tempfile.mkdtemp(prefix="pgsched-embedded-"))
    env = env_for("unused")
    del env["PGSCHED_DATABASE_URL"]
    env["PGSCHED_DATA_DIR"] = str(root / "pgdata")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pgsched", *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )

    try:
        url = run("embedded", "url")
        assert url.returncode == 0, url.stderr
        dsn = url.stdout.strip()
        assert dsn.startswith("postgresql://")
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        first = run("migrate")
        assert first.returncode == 0 and "using the embedded PostgreSQL" in first.stderr
        again = run("jobs", "list")
        assert again.returncode == 0 and "embedded" not in again.stderr, again.stderr
        stopped = run("embedded", "stop")
        assert stopped.returncode == 0 and "stopped the embedded PostgreSQL" in stopped.stdout
        assert not os.path.exists(root / "pgdata" / "postmaster.pid")
        assert "is not running" in run("embedded", "stop").stdout
    finally:
        stop_embedded(root / "pgdata")
        shutil.rmtree(root, ignore_errors=True)
