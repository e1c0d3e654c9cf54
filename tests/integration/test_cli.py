"""The CLI as a user runs it: subprocesses, exit codes, output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pgsched.migrate import current_revision, downgrade, head_revision
from tests.runners import pgsched, query, runners, wait_registered

APP = ("--app", "tests.apps.basic:ext", "--app", "tests.apps.basic:ClassExtension")


def test_migrate_is_idempotent(empty_dsn: str) -> None:
    first = pgsched("migrate", dsn=empty_dsn)
    assert first.returncode == 0, first.stderr
    assert "migrated" in first.stdout
    second = pgsched("migrate", dsn=empty_dsn)
    assert second.returncode == 0 and "up to date" in second.stdout


def test_hot_tables_are_vacuumed_without_cost_delay_and_the_downgrade_resets_it(
    empty_dsn: str,
) -> None:
    assert pgsched("migrate", dsn=empty_dsn).returncode == 0
    options = (
        "SELECT relname, reloptions FROM pg_class "
        "WHERE oid IN ('pgsched.runs'::regclass, 'pgsched.jobs'::regclass) ORDER BY relname"
    )
    rows = query(empty_dsn, options)
    assert [r["relname"] for r in rows] == ["jobs", "runs"]
    assert all("autovacuum_vacuum_cost_delay=0" in r["reloptions"] for r in rows)
    assert "fillfactor=90" in rows[1]["reloptions"]  # 0001's settings are kept

    downgrade(empty_dsn, "0001")
    assert current_revision(empty_dsn) == "0001"
    rows = query(empty_dsn, options)
    assert not any("autovacuum_vacuum_cost_delay=0" in r["reloptions"] for r in rows)
    assert "fillfactor=90" in rows[1]["reloptions"]
    again = pgsched("migrate", dsn=empty_dsn)
    assert again.returncode == 0 and current_revision(empty_dsn) == head_revision() == "0010"


def test_profile_overrides_reach_the_database_and_pause_survives_resync(
    dsn: str, tmp_path: Path
) -> None:
    profile = tmp_path / "profile.yaml"
    profile.write_text("""
scheduler:
  jobs:
    - extension: tests
      job: tick-every-second
      schedule: "0 */15 * * * *"
      tags: [nightly, "eu west"]
    - job: tick-every-two
      enabled: false
""")
    assert pgsched(*APP, "sync", dsn=dsn, profile=profile).returncode == 0
    listed = pgsched(*APP, "jobs", "list", "--json", dsn=dsn, profile=profile)
    assert listed.returncode == 0, listed.stderr
    jobs = {j["name"]: j for j in json.loads(listed.stdout)}
    assert jobs["tick-every-second"]["schedule"] == "0 */15 * * * *"
    assert jobs["tick-every-two"]["enabled"] is False
    assert jobs["class-job"]["extension"] == "tests-class"
    row = query(
        dsn,
        "SELECT schedule, overrides, next_run_at, tags FROM pgsched.jobs "
        "WHERE name = 'tick-every-second'",
    )[0]
    assert row["schedule"] == "0 */15 * * * *"
    assert row["tags"] == ["nightly", "eu west"]
    assert row["overrides"]["schedule"].startswith(f"{profile}:")
    assert row["next_run_at"].minute % 15 == 0 and row["next_run_at"].second == 0

    assert pgsched(*APP, "jobs", "pause", "echo-params", dsn=dsn).returncode == 0
    assert pgsched(*APP, "sync", dsn=dsn, profile=profile).returncode == 0
    assert query(dsn, "SELECT paused FROM pgsched.jobs WHERE name = 'echo-params'")[0]["paused"]
    assert pgsched(*APP, "jobs", "resume", "echo-params", dsn=dsn).returncode == 0
    assert not query(dsn, "SELECT paused FROM pgsched.jobs WHERE name = 'echo-params'")[0]["paused"]


def test_resync_writes_only_changed_definitions(dsn: str, tmp_path: Path) -> None:
    """An unchanged re-sync leaves every row as it was (no new row version: `xmin` stays);
    a changed override rewrites that row alone and keeps its next_run_at."""
    profile = tmp_path / "profile.yaml"
    profile.write_text(
        "scheduler:\n  jobs:\n    - job: tick-every-second\n      timeout: 30\n"
        "      tags: [a, 'b c']\n"
    )
    first = pgsched(*APP, "sync", dsn=dsn, profile=profile)
    assert first.returncode == 0, first.stderr
    versions = "SELECT name, xmin::text AS v, next_run_at, timeout FROM pgsched.jobs"
    before = {r["name"]: r for r in query(dsn, versions)}

    again = pgsched(*APP, "sync", dsn=dsn, profile=profile)
    assert again.returncode == 0, again.stderr
    assert f"0 new, 0 changed, {len(before)} unchanged" in again.stderr
    assert {r["name"]: r for r in query(dsn, versions)} == before

    profile.write_text("scheduler:\n  jobs:\n    - job: tick-every-second\n      timeout: 45\n")
    changed = pgsched(*APP, "sync", dsn=dsn, profile=profile)
    assert changed.returncode == 0, changed.stderr
    assert f"0 new, 1 changed, {len(before) - 1} unchanged" in changed.stderr
    after = {r["name"]: r for r in query(dsn, versions)}
    assert [n for n in after if after[n]["v"] != before[n]["v"]] == ["tick-every-second"]
    assert after["tick-every-second"]["timeout"].total_seconds() == 45
    assert after["tick-every-second"]["next_run_at"] == before["tick-every-second"]["next_run_at"]


def test_job_removed_from_code_is_orphaned_with_history_kept(dsn: str) -> None:
    assert pgsched(*APP, "sync", dsn=dsn).returncode == 0
    query(dsn, "INSERT INTO pgsched.runs (job_name) VALUES ('class-job') RETURNING id")
    assert pgsched("--app", "tests.apps.basic:ext", "sync", dsn=dsn).returncode == 0
    row = query(dsn, "SELECT orphaned FROM pgsched.jobs WHERE name = 'class-job'")[0]
    assert row["orphaned"] is True
    assert (
        query(dsn, "SELECT count(*) AS n FROM pgsched.runs WHERE job_name = 'class-job'")[0]["n"]
        == 1
    )


def test_jobs_run_inline_records_the_run(dsn: str) -> None:
    assert pgsched(*APP, "sync", dsn=dsn).returncode == 0
    ok = pgsched(*APP, "jobs", "run", "class-job", "--inline", "--json", dsn=dsn)
    assert ok.returncode == 0, ok.stderr
    run = json.loads(ok.stdout)
    assert run["status"] == "succeeded" and run["message"] == "answer 42"
    bad = pgsched(*APP, "jobs", "run", "raises", "--inline", dsn=dsn)
    assert bad.returncode == 1
    assert "ValueError: boom" in bad.stdout


def test_jobs_run_wait_follows_the_run_and_fails_with_it(dsn: str, tmp_path: Path) -> None:
    assert pgsched(*APP, "sync", dsn=dsn).returncode == 0
    with runners(dsn, tmp_path) as procs:
        wait_registered(dsn, 1, procs)
        ok = pgsched(
            *APP,
            "jobs",
            "run",
            "echo-params",
            "-p",
            "n=3",
            "-p",
            "who=ada",
            "--wait",
            "--json",
            dsn=dsn,
        )
        assert ok.returncode == 0, ok.stderr
        assert json.loads(ok.stdout)["data"]["params"] == {"n": 3, "who": "ada"}
        bad = pgsched(*APP, "jobs", "run", "raises", "--wait", dsn=dsn)
        assert bad.returncode == 1 and "failed" in bad.stdout
    history = pgsched(*APP, "jobs", "history", "raises", "--json", dsn=dsn)
    assert [r["status"] for r in json.loads(history.stdout)] == ["failed"]


def test_request_with_no_live_runner_says_so(dsn: str) -> None:
    assert pgsched(*APP, "sync", dsn=dsn).returncode == 0
    out = pgsched(*APP, "jobs", "run", "echo-params", dsn=dsn)
    assert out.returncode == 0
    assert "no runner is alive" in out.stderr


@pytest.mark.parametrize(
    ("args", "profile_text", "expected"),
    [
        (("jobs", "show", "no-such-job"), None, "unknown job 'no-such-job'"),
        (("jobs", "run", "no-such-job"), None, "unknown job 'no-such-job'"),
        (("jobs", "pause", "tick-every-sekond"), None, "did you mean 'tick-every-second'"),
        (
            ("sync",),
            "scheduler:\n  jobs:\n    - job: tick-every-second\n      schedule: '61 * * * * *'\n",
            "61 * * * * *",
        ),
        (("sync",), "scheduler:\n  jobs:\n    - job: nope\n", "job 'nope'"),
        (
            ("sync",),
            "scheduler:\n  jobs:\n    - job: echo-params\n      schedul: '* * * * * *'\n",
            "schedule",
        ),
        (("sync",), "scheduler: [unclosed\n", "profile.yaml"),
        (("--app", "tests.apps.nope:ext", "sync"), None, "tests.apps.nope"),
        (("jobs", "run", "echo-params", "-p", "novalue"), None, "KEY=VALUE"),
    ],
)
def test_bad_input_exits_2_and_names_the_problem(
    dsn: str, tmp_path: Path, args: tuple[str, ...], profile_text: str | None, expected: str
) -> None:
    assert pgsched(*APP, "sync", dsn=dsn).returncode == 0
    profile = None
    if profile_text is not None:
        profile = tmp_path / "profile.yaml"
        profile.write_text(profile_text)
    out = pgsched(*APP, *args, dsn=dsn, profile=profile)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert expected in out.stderr, out.stderr


def test_unreachable_database_exits_2_with_advice() -> None:
    out = pgsched("jobs", "list", dsn="postgresql://nobody@127.0.0.1:1/nothing")
    assert out.returncode == 2
    assert "PGSCHED_DATABASE_URL" in out.stderr
