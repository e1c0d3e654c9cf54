"""pgsched.schedules without a database: validation that names the job, the key and the
expression; `resolve`, whose cache must give exactly what croniter gives; the preview."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgsched import schedules
from pgsched.cron import parse_schedule
from pgsched.errors import CronError
from pgsched.schedules import Schedule, check_schedule_row, resolve

T0 = datetime(2026, 12, 1, 8, 59, 58, 500000, tzinfo=UTC)


def row(i: int, cron: str, zone: str = "UTC") -> dict[str, object]:
    return {"id": i, "job_name": "reports", "key": f"t-{i}", "cron": cron, "zone": zone}


def test_a_bad_row_gets_an_error_naming_job_key_expression_and_reason() -> None:
    found = resolve(
        [row(1, "0 61 * * * *"), row(2, "* * * * * *", "Mars/Olympus"), row(3, "@hourly")], T0
    )
    assert [f.id for f in found] == [1, 2, 3]
    assert found[0].next_run_at is None and found[0].error is not None
    assert "schedule 't-1' of job 'reports'" in found[0].error
    assert "'0 61 * * * *'" in found[0].error and "minute '61'" in found[0].error
    assert found[1].error is not None and "'Mars/Olympus'" in found[1].error
    assert found[2] == schedules.Resolved(3, datetime(2026, 12, 1, 9, tzinfo=UTC), None)


def test_rows_sharing_an_expression_share_one_computation_but_never_a_stale_tick() -> None:
    schedules._known.clear()
    first = resolve([row(1, "* * * * * *"), row(2, "* * * * * *")], T0)
    assert {f.next_run_at for f in first} == {datetime(2026, 12, 1, 8, 59, 59, tzinfo=UTC)}
    assert len(schedules._known) == 1
    later = resolve([row(3, "* * * * * *")], T0 + timedelta(seconds=1))  # past the tick
    assert later[0].next_run_at == datetime(2026, 12, 1, 9, 0, 0, tzinfo=UTC)
    earlier = resolve([row(4, "* * * * * *")], T0 - timedelta(seconds=5))  # before the cache
    assert earlier[0].next_run_at == datetime(2026, 12, 1, 8, 59, 54, tzinfo=UTC)


EXPRESSIONS = ["* * * * * *", "*/7 * * * * *", "0 */5 * * * *", "30 0 9 * * 1-5", "@daily"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(EXPRESSIONS), st.integers(-3600, 3 * 86400)),
        min_size=1,
        max_size=20,
    ),
    st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]),
)
def test_resolve_with_its_cache_agrees_with_the_cron_engine(
    calls: list[tuple[str, int]], zone: str
) -> None:
    schedules._known.clear()
    for i, (cron, offset) in enumerate(calls):
        now = T0 + timedelta(seconds=offset, microseconds=offset % 7)
        (found,) = resolve([row(i, cron, zone)], now)
        assert found.next_run_at == parse_schedule(cron, zone).next_after(now), (cron, now)


def test_check_and_preview() -> None:
    with pytest.raises(CronError, match=r"schedule 'k' of job 'j': invalid schedule 'nope'"):
        check_schedule_row("j", "k", "nope", "UTC")
    with pytest.raises(CronError, match="key must be a non-empty string"):
        check_schedule_row("j", "", "* * * * * *", "UTC")
    s = Schedule("j", "k", "0 0 9 * * *", "Europe/Berlin", "Europe/Berlin")
    ticks = s.next_fire_times(3, after=T0)
    assert [t.isoformat() for t in ticks] == [
        "2026-12-02T08:00:00+00:00",
        "2026-12-03T08:00:00+00:00",
        "2026-12-04T08:00:00+00:00",
    ]
    assert s.next_fire_times(0) == []
    with pytest.raises(CronError, match="'0 61"):
        Schedule("j", "k", "0 61 * * * *", None, "UTC").next_fire_times(1)
