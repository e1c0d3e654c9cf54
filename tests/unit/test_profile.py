"""Profile loading: defaults, overrides with their source, and errors citing file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgsched.errors import ProfileError
from pgsched.profile import (
    JobOverride,
    Profile,
    RetentionOptions,
    RunnerSettings,
    load_profile,
    profile_from_env,
)

FULL = """\
database:
  url: postgresql://user:pass@host/db
  schema: jobs
extensions:
  - myapp.jobs:MyExtension
scheduler:
  enabled: true
  timezone: Europe/Berlin
  jobs:
    - extension: my-extension
      job: my-extension-cleanup
      schedule: "0 */30 * * * *"
      enabled: yes
      timeout: 5m
      tags: [nightly]
    - job: report
      misfire: all
runner:
  concurrency: 4
  poll_interval: 10s
  listen: false
retention:
  keep_days: 7
  prune_schedule: "@hourly"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "profile.yaml"
    path.write_text(text)
    return path


def error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    message = str(info.value)
    assert message.startswith(str(path))
    return message.removeprefix(str(path))


def test_no_profile_gives_defaults() -> None:
    assert load_profile(None) == Profile(path=None, database_url=None)


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "# nothing yet\n")
    assert load_profile(path) == Profile(path=path, database_url=None)


def test_full_profile_is_read_and_normalised(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    profile = load_profile(str(path))
    assert profile.path == path
    assert profile.database_url == "postgresql://user:pass@host/db"
    assert profile.schema == "jobs"
    assert profile.extensions == ("myapp.jobs:MyExtension",)
    assert profile.scheduler_enabled is True
    assert profile.timezone == "Europe/Berlin"
    assert profile.jobs == (
        JobOverride(
            job="my-extension-cleanup",
            extension="my-extension",
            values={
                "schedule": "0 */30 * * * *",
                "enabled": True,
                "timeout": 300.0,
                "tags": ("nightly",),
            },
            source=f"{path}:10",
        ),
        JobOverride(job="report", extension=None, values={"misfire": "all"}, source=f"{path}:16"),
    )
    assert profile.runner == RunnerSettings(concurrency=4, poll_interval=10.0, listen=False)
    assert profile.retention == RetentionOptions(keep_days=7.0, prune_schedule="@hourly")


def test_file_not_found_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(
        ProfileError, match=r"missing\.yaml: profile file not found.*PGSCHED_PROFILE"
    ):
        load_profile(tmp_path / "missing.yaml")


def test_malformed_yaml_cites_line_and_column(tmp_path: Path) -> None:
    message = error(tmp_path, "scheduler:\n  jobs: [\n  enabled: true\n")
    assert message.startswith(":4:1: malformed YAML:")
    assert "while parsing a flow sequence at line 2" in message
    message = error(tmp_path, "scheduler:\n  enabled: true\n bad: indent\n")
    assert message.startswith(":3:") and "malformed YAML" in message


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    message = error(tmp_path, "- just\n- a list\n")
    assert message.startswith(":1: top level: expected a mapping, got a list")


def test_unknown_top_level_key_suggests(tmp_path: Path) -> None:
    message = error(tmp_path, "database:\n  url: x\nschedular:\n  enabled: true\n")
    assert message.startswith(":3: profile.schedular: unknown key 'schedular'")
    assert "did you mean 'scheduler'" in message


def test_unknown_job_setting_suggests_with_line_and_entry(tmp_path: Path) -> None:
    text = "scheduler:\n  jobs:\n    - job: a\n    - job: b\n      schedul: '@daily'\n"
    message = error(tmp_path, text)
    assert message.startswith(":5: scheduler.jobs[1].schedul: unknown key 'schedul'")
    assert "did you mean 'schedule'" in message


def test_job_pool_timeout_is_a_duration(tmp_path: Path) -> None:
    assert RunnerSettings().job_pool_timeout == 10.0
    profile = load_profile(write(tmp_path, "runner:\n  job_pool_timeout: 2500ms\n"))
    assert profile.runner.job_pool_timeout == 2.5


def test_unknown_runner_key_suggests(tmp_path: Path) -> None:
    message = error(tmp_path, "runner:\n  concurency: 3\n")
    assert message.startswith(":2: runner.concurency:") and "did you mean 'concurrency'" in message


def test_job_entry_without_job_name(tmp_path: Path) -> None:
    message = error(tmp_path, "scheduler:\n  jobs:\n    - schedule: '@daily'\n")
    assert message.startswith(":3: scheduler.jobs[0]: missing 'job'")


def test_bad_schedule_names_file_line_entry_field(tmp_path: Path) -> None:
    text = "scheduler:\n  jobs:\n    - job: a\n      schedule: '61 * * * * *'\n"
    message = error(tmp_path, text)
    assert message.startswith(":4 (scheduler.jobs[0].schedule): setting 'schedule'")
    assert "second '61' is not valid" in message


def test_bad_job_setting_value_names_file_line_entry_field(tmp_path: Path) -> None:
    text = "scheduler:\n  jobs:\n    - job: a\n      enabled: maybe\n"
    message = error(tmp_path, text)
    assert message.startswith(":4 (scheduler.jobs[0].enabled): setting 'enabled'")
    assert "'maybe'" in message


def test_bad_scheduler_timezone(tmp_path: Path) -> None:
    message = error(tmp_path, "scheduler:\n  timezone: Europe/Berln\n")
    assert message.startswith(":2: scheduler.timezone: unknown timezone 'Europe/Berln'")


def test_bad_job_timezone(tmp_path: Path) -> None:
    text = "scheduler:\n  jobs:\n    - job: a\n      timezone: Mars/Base\n"
    message = error(tmp_path, text)
    assert message.startswith(":4 (scheduler.jobs[0].timezone):") and "unknown timezone" in message


def test_duplicate_override_cites_both_lines(tmp_path: Path) -> None:
    text = "scheduler:\n  jobs:\n    - job: a\n    - job: b\n    - job: a\n      enabled: false\n"
    message = error(tmp_path, text)
    assert message.startswith(":5: scheduler.jobs[2].job: second override for job 'a'")
    assert f"first at {tmp_path / 'profile.yaml'}:3" in message


def test_duplicate_key_is_an_error_not_a_silent_override(tmp_path: Path) -> None:
    message = error(tmp_path, "scheduler:\n  enabled: true\n  enabled: false\n")
    assert message.startswith(":3: scheduler.enabled: duplicate key (first at line 2)")


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ("scheduler:\n  enabled: maybe\n", ":2: scheduler.enabled: expected true or false"),
        ("scheduler: [1]\n", ":1: scheduler: expected a mapping, got a list"),
        ("scheduler:\n  jobs: {job: a}\n", ":2: scheduler.jobs: expected a list"),
        ("extensions: myapp:Ext\n", ":1: extensions: expected a list"),
        ("extensions:\n  - not an import path\n", ":2: extensions[0]: 'not an import path'"),
        ("database:\n  url: [x]\n", ":2: database.url: expected a single value, got a list"),
        ("database:\n  schema: 'drop table'\n", ":2: database.schema:"),
        (
            "runner:\n  concurrency: 0\n",
            ":2: runner: setting 'concurrency': invalid value 0, expected a whole",
        ),
        (
            "runner:\n  poll_interval: soon\n",
            ":2: runner: setting 'poll_interval': invalid",
        ),
        (
            "runner:\n  lease_timeout: 1\n",
            ":2: runner: setting 'lease_timeout': lease_timeout",
        ),
        (
            "runner:\n  job_pool_timeout: 0\n",
            ":2: runner: setting 'job_pool_timeout': invalid",
        ),
        ("retention:\n  keep_days: -1\n", ":2: retention.keep_days: expected a number >= 0"),
        ("retention:\n  prune_schedule: nope\n", ":2: retention.prune_schedule: "),
        ("scheduler:\n  jobs:\n    - job: 3\n", ":3: scheduler.jobs[0].job: expected text"),
    ],
)
def test_wrong_types_name_file_line_and_field(tmp_path: Path, text: str, start: str) -> None:
    assert error(tmp_path, text).startswith(start)


def test_env_profile_and_dsn_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "database:\n  url: postgresql://file/db\n")
    monkeypatch.delenv("PGSCHED_PROFILE", raising=False)
    monkeypatch.delenv("PGSCHED_DATABASE_URL", raising=False)
    assert profile_from_env(None, None) == Profile(path=None, database_url=None)
    assert profile_from_env(str(path), None).database_url == "postgresql://file/db"

    monkeypatch.setenv("PGSCHED_PROFILE", str(path))
    assert profile_from_env(None, None).path == path
    monkeypatch.setenv("PGSCHED_DATABASE_URL", "postgresql://env/db")
    assert profile_from_env(None, None).database_url == "postgresql://env/db"
    assert profile_from_env(None, "postgresql://cli/db").database_url == "postgresql://cli/db"

    with pytest.raises(ProfileError, match="not found"):
        profile_from_env(str(tmp_path / "other.yaml"), None)


def test_keep_days_zero_disables_pruning_as_the_readme_says(tmp_path: Path) -> None:
    from pgsched.housekeeping import PRUNE_JOB, builtin_extension

    path = tmp_path / "profile.yaml"
    path.write_text("retention:\n  keep_days: 0\n")
    retention = load_profile(path).retention
    assert retention.keep_days == 0
    (prune,) = [
        job for job in builtin_extension(retention, "pgsched").jobs() if job.name == PRUNE_JOB
    ]
    assert prune.settings().enabled is False
    assert "disabled" in prune.description


def test_database_connection_settings_are_read(tmp_path: Path) -> None:
    from pgsched.profile import DatabaseOptions

    path = tmp_path / "profile.yaml"
    path.write_text(
        "database:\n  pooler: transaction\n  listen_url: postgresql://direct/db\n"
        "  lock_timeout: 2m\n"
    )
    assert load_profile(path).database == DatabaseOptions(
        pooler="transaction", listen_url="postgresql://direct/db", lock_timeout=120.0
    )
    assert load_profile(None).database == DatabaseOptions(pooler="auto", lock_timeout=60.0)


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ("database:\n  pooler: pgbouncer\n", ":2: database.pooler: unknown pooler mode"),
        ("database:\n  lock_timeout: 0\n", ":2: database.lock_timeout: invalid value 0"),
        ("database:\n  listen: x\n", ":2: database.listen: unknown key"),
    ],
)
def test_bad_database_settings_name_file_line_and_field(
    tmp_path: Path, text: str, start: str
) -> None:
    assert error(tmp_path, text).startswith(start)


def test_listen_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGSCHED_PROFILE", raising=False)
    monkeypatch.setenv("PGSCHED_LISTEN_URL", "postgresql://direct/db")
    assert profile_from_env(None, "postgresql://bouncer/db").database.listen_url == (
        "postgresql://direct/db"
    )


def test_runner_metrics_port_and_bind(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("runner:\n  metrics_port: 9464\n  metrics_bind: 0.0.0.0\n")
    runner = load_profile(path).runner
    assert (runner.metrics_port, runner.metrics_bind) == (9464, "0.0.0.0")
    assert load_profile(None).runner.metrics_port is None
    message = error(tmp_path, "runner:\n  metrics_port: 70000\n")
    assert message.startswith(
        ":2: runner: setting 'metrics_port': invalid value 70000, expected a whole number >= 0 "
        "and <= 65535"
    )
