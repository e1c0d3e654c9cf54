"""The operator's words for schedules and job states (no database)."""

from __future__ import annotations

import pytest

from pgsched.insight import describe_schedule, job_state, settings_with_sources
from pgsched.schedules import schedule_state


@pytest.mark.parametrize(
    ("expression", "zone", "words"),
    [
        ("0 30 2 * * *", "Europe/Berlin", "At 02:30, Europe/Berlin"),  # seconds first
        ("30 */5 * * * *", "UTC", "At 30 seconds past the minute, every 5 minutes, UTC"),
        ("*/15 * * * *", "UTC", "Every 15 minutes, UTC"),  # 5 fields: seconds = 0
        ("@daily", "UTC", "At 00:00, UTC"),
        ("0 0 9 * * 1-5", "UTC", "At 09:00, Monday through Friday, UTC"),
        ("61 * * * * *", "UTC", "invalid schedule"),
        (None, "UTC", "manual only"),
    ],
)
def test_schedules_in_words_read_seconds_first(expression: str, zone: str, words: str) -> None:
    pytest.importorskip("cron_descriptor")
    assert describe_schedule(expression, zone) == words
    assert describe_schedule(expression, zone, with_zone=False) == words.removesuffix(f", {zone}")


def test_job_state_orphaned_wins_then_invalid_then_disabled_then_paused() -> None:
    base = {"schedule": "0 * * * * *", "timezone": "UTC", "enabled": True, "paused": False}
    assert job_state({**base, "orphaned": True, "paused": True}) == "orphaned"
    assert job_state({**base, "schedule": "0 0 0 31 2 *"}) == "invalid"  # never fires
    assert job_state({**base, "enabled": False, "paused": True}) == "disabled"
    assert job_state({**base, "paused": True}) == "paused"
    assert job_state(base) == "enabled"


def test_schedule_state_error_wins_then_disabled_then_paused_then_validating() -> None:
    now = "2026-12-01T00:00:00Z"
    base = {"enabled": True, "paused": False, "next_run_at": now, "error": None}
    assert schedule_state(base) == "enabled"
    assert schedule_state({**base, "error": "bad", "enabled": False}) == "error"
    assert schedule_state({**base, "enabled": False, "paused": True}) == "disabled"
    assert schedule_state({**base, "paused": True}) == "paused"
    assert schedule_state({**base, "next_run_at": None}) == "validating"


def test_each_setting_says_where_it_came_from() -> None:
    job = {"schedule": "0 * * * * *", "timeout": 5.0, "overrides": {"schedule": "p.yaml:10"}}
    sources = {s["setting"]: s["source"] for s in settings_with_sources(job)}
    assert sources["schedule"] == "p.yaml:10" and sources["timeout"] == "code"


def test_no_query_name_means_two_things() -> None:
    """queries.sql and insight.sql once both had nine names with different bodies."""
    from pgsched.queries import named_queries, operator_queries

    merged = operator_queries("pgsched")
    assert len(merged) == len(named_queries("pgsched")) + len(
        named_queries("pgsched", "insight.sql")
    )
