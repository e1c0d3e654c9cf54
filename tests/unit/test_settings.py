"""Job and runner settings: one validation path for code, profile, CLI and
`background_runner`."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from pgsched import Extension, background_runner
from pgsched.errors import ConfigError, CronError
from pgsched.settings import (
    DURATION_SETTINGS,
    SETTING_NAMES,
    SYNCED_SETTINGS,
    JobSettings,
    RunnerSettings,
    check_setting,
    merge_runner_settings,
    merge_settings,
)

WHERE = "job 'x'"


def test_setting_names_are_the_jobsettings_fields() -> None:
    assert {
        "schedule",
        "enabled",
        "timezone",
        "timeout",
        "max_attempts",
        "retry_backoff",
        "overlap",
        "misfire",
        "misfire_grace",
        "misfire_cap",
        "tags",
        "isolation",
    } == SETTING_NAMES


def test_defaults_are_the_safe_choice() -> None:
    s = JobSettings()
    assert (s.schedule, s.enabled, s.timeout, s.max_attempts) == (None, True, None, 1)
    assert (s.overlap, s.misfire, s.misfire_cap) == ("skip", "once", 100)
    assert s.isolation == "thread"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (30, 30.0),
        (1.5, 1.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("1d", 86400.0),
        ("45", 45.0),
        (" 1h 30m ", 5400.0),
    ],
)
def test_durations_accept_numbers_and_unit_strings(text: object, seconds: float) -> None:
    assert check_setting("timeout", text, where=WHERE) == seconds


@pytest.mark.parametrize("value", ["soon", "5 minutes", "1x", True, -1, 0, float("inf"), [1]])
def test_bad_timeouts_are_rejected_naming_where_field_and_value(value: object) -> None:
    with pytest.raises(ConfigError) as info:
        check_setting("timeout", value, where=WHERE)
    message = str(info.value)
    assert message.startswith("job 'x': setting 'timeout'")
    assert repr(value) in message


def test_misfire_grace_may_be_zero_but_not_negative() -> None:
    assert check_setting("misfire_grace", 0, where=WHERE) == 0.0
    with pytest.raises(ConfigError, match=">= 0"):
        check_setting("misfire_grace", -1, where=WHERE)


def test_timeout_none_means_no_timeout() -> None:
    assert check_setting("timeout", None, where=WHERE) is None


def test_booleans_must_be_real_booleans() -> None:
    assert check_setting("enabled", False, where=WHERE) is False
    with pytest.raises(ConfigError, match="'maybe', expected true or false"):
        check_setting("enabled", "maybe", where=WHERE)
    with pytest.raises(ConfigError):
        check_setting("enabled", 1, where=WHERE)


@pytest.mark.parametrize("name", ["max_attempts", "misfire_cap"])
def test_counts_are_whole_numbers_at_least_one(name: str) -> None:
    assert check_setting(name, 3, where=WHERE) == 3
    for bad in (0, -1, 1.5, "3", True):
        with pytest.raises(ConfigError, match=f"setting '{name}'.*>= 1"):
            check_setting(name, bad, where=WHERE)


def test_policies_list_the_allowed_values() -> None:
    assert check_setting("overlap", "queue", where=WHERE) == "queue"
    assert check_setting("misfire", "all", where=WHERE) == "all"
    with pytest.raises(ConfigError, match="'skip', 'queue', 'allow'"):
        check_setting("overlap", "parallel", where=WHERE)
    with pytest.raises(ConfigError, match="'skip', 'once', 'all'"):
        check_setting("misfire", "never", where=WHERE)


def test_isolation_is_thread_or_process() -> None:
    assert check_setting("isolation", "process", where=WHERE) == "process"
    with pytest.raises(ConfigError, match=r"setting 'isolation'.*'thread', 'process'"):
        check_setting("isolation", "subprocess", where=WHERE)


def test_tags_become_a_tuple_of_strings() -> None:
    assert check_setting("tags", ["a", "b", "a"], where=WHERE) == ("a", "b")
    for bad in ("nightly", ["ok", 3], [""]):
        with pytest.raises(ConfigError, match="setting 'tags'"):
            check_setting("tags", bad, where=WHERE)


def test_schedule_is_validated_as_cron() -> None:
    assert check_setting("schedule", "0 */15 * * * *", where=WHERE) == "0 */15 * * * *"
    assert check_setting("schedule", None, where=WHERE) is None
    with pytest.raises(CronError, match=r"^job 'x': setting 'schedule': invalid schedule"):
        check_setting("schedule", "61 * * * * *", where=WHERE)
    with pytest.raises(ConfigError, match="cron string"):
        check_setting("schedule", 5, where=WHERE)


def test_timezone_is_validated() -> None:
    assert check_setting("timezone", "Europe/Berlin", where=WHERE) == "Europe/Berlin"
    with pytest.raises(ConfigError, match=r"job 'x': setting 'timezone'.*unknown timezone"):
        check_setting("timezone", "Mars/Olympus", where=WHERE)


def test_unknown_setting_suggests_the_closest_name() -> None:
    with pytest.raises(ConfigError, match="unknown setting 'schedul'; did you mean 'schedule'"):
        check_setting("schedul", "* * * * *", where=WHERE)


def test_merge_settings_applies_normalised_overrides() -> None:
    base = JobSettings(schedule="0 0 * * * *", tags=("a",))
    merged = merge_settings(
        base, {"schedule": "@daily", "timeout": "5m", "enabled": False}, where=WHERE
    )
    assert merged == JobSettings(schedule="@daily", timeout=300.0, enabled=False, tags=("a",))
    assert base.schedule == "0 0 * * * *"  # frozen, untouched


def test_merge_settings_rejects_any_bad_value() -> None:
    with pytest.raises(ConfigError, match="did you mean 'timeout'"):
        merge_settings(JobSettings(), {"timout": 5}, where=WHERE)


def test_merge_settings_checks_the_schedule_in_the_overridden_timezone() -> None:
    with pytest.raises(ConfigError, match="unknown timezone"):
        merge_settings(
            JobSettings(), {"timezone": "Nowhere/Land", "schedule": "@daily"}, where=WHERE
        )


# Runner settings: the same rules whichever entry point fills them.

BAD_RUNNER = [
    ({"concurrency": 0}, "setting 'concurrency': invalid value 0, expected a whole number >= 1"),
    ({"poll_interval": "soon"}, "setting 'poll_interval': invalid value 'soon'"),
    ({"poll_interval": 0}, "setting 'poll_interval': invalid value 0"),
    ({"lease_timeout": 1, "heartbeat_interval": 5}, "lease_timeout (1s) must be longer than"),
    ({"metrics_port": 70000}, "setting 'metrics_port': invalid value 70000"),
    ({"prefetch": -1}, "setting 'prefetch': invalid value -1"),
    ({"listen": "yes"}, "setting 'listen': invalid value 'yes', expected true or false"),
    ({"concurency": 3}, "unknown runner setting 'concurency'; did you mean 'concurrency'?"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_RUNNER)
def test_merge_runner_settings_refuses_naming_where_and_the_setting(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        merge_runner_settings(RunnerSettings(), overrides, where="here")
    assert str(caught.value).startswith("here: ") and message in str(caught.value)


@pytest.mark.parametrize(("overrides", "message"), [b for b in BAD_RUNNER if "unknown" not in b[1]])
def test_no_runner_settings_object_can_hold_a_bad_value(
    overrides: dict[str, object], message: str
) -> None:
    """Constructed directly or by dataclasses.replace (the CLI's way), the rules still hold."""
    with pytest.raises(ConfigError, match=r"^runner settings: ") as caught:
        dataclasses.replace(RunnerSettings(), **overrides)
    assert message in str(caught.value)


def test_runner_durations_are_normalised_to_seconds() -> None:
    merged = merge_runner_settings(
        RunnerSettings(),
        {"poll_interval": "1m", "lookahead": 0, "grace_period": "1h30m"},
        where="x",
    )
    assert (merged.poll_interval, merged.lookahead, merged.grace_period) == (60.0, 0.0, 5400.0)
    assert RunnerSettings(job_pool_timeout="500ms").job_pool_timeout == 0.5  # type: ignore[arg-type]


def test_background_runner_refuses_bad_settings_before_connecting() -> None:
    """The ZeroDivisionError of issue 19: accepted, then the claim loop divided by zero."""
    ext = Extension("settings-test")

    async def start() -> None:
        async with background_runner(
            "postgresql://nobody@127.0.0.1:1/none",  # never reached
            app=ext,
            concurrency=0,
            lease_timeout=1,
            heartbeat_interval=5,
            poll_interval="5s",
        ):
            raise AssertionError("started")

    with pytest.raises(ConfigError, match=r"^background_runner: setting 'concurrency'"):
        asyncio.run(start())


def test_synced_settings_are_every_job_setting_in_declaration_order() -> None:
    """What sync writes and `jobs show` lists comes from the dataclass: a new setting cannot
    be forgotten by one of them (isolation was, until 0.3)."""
    assert tuple(f.name for f in dataclasses.fields(JobSettings)) == SYNCED_SETTINGS
    assert {"timeout", "retry_backoff", "misfire_grace"} == DURATION_SETTINGS
