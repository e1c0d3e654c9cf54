"""pgsched's cron against cronsim, an independent engine that follows Debian cron.

Hypothesis generates expressions (lists, ranges, steps, names, restricted and `*`-led day and
weekday fields, hours around the DST changes) and starts within hours of a DST change in zones
with different rules; both engines give the next fire times, which must be equal. The known
differences are encoded, not skipped:

- cronsim reads its start as a naive wall time, so from inside a repeated hour it can give the
  first occurrence of a time that is already past: ticks at or before the start are dropped.
- cronsim applies Debian cron's DST rules only to 5-field expressions (6-field ones follow
  elapsed time). pgsched applies them whatever the field count, so a 6-field fixed-time
  schedule is compared with cronsim's 5-field ticks of its other fields: each tick at a real
  wall time fires at each of the seconds; a skipped one fires once, at the change.

Seeded (`derandomize`) and bounded, so CI runs the same examples every time.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import cronsim  # a dev dependency: CI must run this test, never skip it
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pgsched.cron import parse_schedule
from pgsched.errors import CronError

ZONES = [
    "Europe/Berlin",  # 02:00 -> 03:00, 03:00 -> 02:00
    "Europe/London",  # 01:00 -> 02:00, 02:00 -> 01:00
    "Europe/Helsinki",  # 03:00 -> 04:00, 04:00 -> 03:00
    "America/New_York",  # 02:00 -> 03:00, 02:00 -> 01:00
    "Australia/Sydney",  # southern: 02:00 -> 03:00 in October, 03:00 -> 02:00 in April
    "UTC",
]
YEARS = range(2025, 2031)
COUNT = 6  # fire times compared per example
EXAMPLES_5 = 400
EXAMPLES_6 = 300
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_SECOND = timedelta(seconds=1)


@functools.cache
def dst_changes(zone_name: str) -> tuple[datetime, ...]:
    """UTC instants of the zone's offset changes in YEARS (Berlin's for UTC), to the minute."""
    zone = ZoneInfo("Europe/Berlin" if zone_name == "UTC" else zone_name)
    found = []
    day = datetime(YEARS[0], 1, 1, tzinfo=UTC)
    while day.year <= YEARS[-1]:
        nxt = day + timedelta(days=1)
        if day.astimezone(zone).utcoffset() != nxt.astimezone(zone).utcoffset():
            lo, hi = day, nxt
            while hi - lo > timedelta(minutes=1):
                mid = lo + (hi - lo) / 2
                same = mid.astimezone(zone).utcoffset() == lo.astimezone(zone).utcoffset()
                lo, hi = (mid, hi) if same else (lo, mid)
            found.append(hi.replace(second=0, microsecond=0))
        day = nxt
    return tuple(found)


def _field(
    low: int,
    high: int,
    names: list[str] | None = None,
    likely: list[int] | None = None,
    star: bool = True,
) -> st.SearchStrategy[str]:
    numbers = st.integers(low, high)
    if likely:
        numbers = st.one_of(st.sampled_from(likely), numbers)

    def show(n: int) -> st.SearchStrategy[str]:  # a name for some values (weekday 7 has none)
        if names is None or n - low >= len(names):
            return st.just(str(n))
        return st.sampled_from([str(n), names[n - low]])

    value = numbers.flatmap(show)
    pair = st.tuples(numbers, numbers).map(sorted)
    # cronsim reads a one-value range with a step ("5-5/2") as "5/2": not generated.
    wide = st.tuples(numbers, numbers).filter(lambda ab: ab[0] != ab[1]).map(sorted)
    steps = st.integers(1, high - low + 2)
    starred = [st.just("*"), steps.map(lambda n: f"*/{n}")] if star else []
    part = st.one_of(
        *starred,
        value,
        pair.map(lambda ab: f"{ab[0]}-{ab[1]}"),
        st.tuples(wide, steps).map(lambda p: f"{p[0][0]}-{p[0][1]}/{p[1]}"),
        st.tuples(numbers, steps).map(lambda p: f"{p[0]}/{p[1]}"),
    )
    return st.lists(part, min_size=1, max_size=3).map(",".join)


def _or_star(strategy: st.SearchStrategy[str], stars: int = 1) -> st.SearchStrategy[str]:
    return st.one_of(*[st.just("*")] * stars, strategy)


DAYS = [1, 7, 15, 28, 29, 30, 31]
FIVE_FIELDS = st.tuples(
    _field(0, 59, likely=[0, 15, 30, 45, 59]),
    _field(0, 23, likely=[0, 1, 2, 3, 4]),
    _or_star(  # restricted without a leading "*" too, so that day OR weekday is common
        st.one_of(_field(1, 31, likely=DAYS), _field(1, 31, likely=DAYS, star=False))
    ),
    _or_star(_field(1, 12, names=_MONTHS, likely=[3, 4, 10, 11]), stars=3),
    _or_star(st.one_of(_field(0, 7, names=_WEEKDAYS), _field(0, 7, _WEEKDAYS, star=False))),
).map(" ".join)
SECONDS = _field(0, 59, likely=[0, 30, 59])


@st.composite
def starts(draw: st.DrawFn) -> tuple[str, datetime]:
    zone = draw(st.sampled_from(ZONES))
    change = draw(st.sampled_from(dst_changes(zone)))
    minutes = draw(st.one_of(st.integers(-180, 180), st.integers(-36 * 60, 36 * 60)))
    seconds = draw(st.sampled_from([0, 0, 1, 30, 59]))
    return zone, change + timedelta(minutes=minutes, seconds=seconds)


def pgsched_ticks(expression: str, zone: str, start: datetime, count: int) -> list[datetime]:
    schedule = parse_schedule(expression, zone)
    found = []
    for _ in range(count):
        start = schedule.next_after(start)
        found.append(start)
    return found


def cronsim_ticks(expression: str, zone: str, start: datetime, count: int) -> list[datetime]:
    """cronsim's next ticks after `start`, in UTC (those at or before it dropped: see above)."""
    found: list[datetime] = []
    for tick in cronsim.CronSim(expression, start.astimezone(ZoneInfo(zone))):
        if tick.astimezone(UTC) > start:
            found.append(tick.astimezone(UTC))
        if len(found) == count:
            break
    return found


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def _wall_matches(five: str, wall: datetime) -> bool:
    """The fields match this naive wall time (cronsim on naive times: no DST rules)."""
    return next(cronsim.CronSim(five, wall - _SECOND)) == wall


def _skipped_and_fired_at(five: str, tick: datetime, zone: ZoneInfo) -> bool:
    """`tick` is a spring-forward change, and the fields match a wall time it skipped."""
    before, after = _wall(tick - _SECOND, zone) + _SECOND, _wall(tick, zone)
    return after > before and next(cronsim.CronSim(five, before - _SECOND)) < after


def expected_six_field(
    seconds: str, five: str, zone_name: str, start: datetime, count: int
) -> list[datetime]:
    """pgsched's ticks of `seconds five`, from cronsim: see the module docstring."""
    minute, hour = five.split()[:2]
    if minute.startswith("*") or hour.startswith("*"):  # elapsed time: cronsim's 6-field rule
        return cronsim_ticks(f"{seconds} {five}", zone_name, start, count)
    zone = ZoneInfo(zone_name)
    second_values = _seconds_of(seconds)
    found: set[datetime] = set()
    for tick in cronsim_ticks(five, zone_name, start - timedelta(minutes=1), count + 1):
        if _skipped_and_fired_at(five, tick, zone):
            found.add(tick)
        if _wall_matches(five, _wall(tick, zone)):
            found.update(tick + timedelta(seconds=s) for s in second_values)
    return sorted(t for t in found if t > start)[:count]


def _seconds_of(seconds: str) -> list[int]:
    """The seconds a field names, read by cronsim over one minute."""
    minute = datetime(2000, 1, 1)
    values = []
    for tick in cronsim.CronSim(f"{seconds} * * * * *", minute - _SECOND):
        if tick >= minute + timedelta(minutes=1):
            break
        values.append(tick.second)
    return values


_SETTINGS = settings(
    derandomize=True,  # seeded from the test: the same examples on every run
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@settings(_SETTINGS, max_examples=EXAMPLES_5)
@given(FIVE_FIELDS, starts())
@example("0 0 30 2 *", ("UTC", datetime(2027, 1, 1, tzinfo=UTC)))  # never fires: both refuse
@example("30 4 1,15 * 5", ("Europe/Berlin", datetime(2027, 3, 27, tzinfo=UTC)))
@example("1 1 1-7 * */7", ("America/New_York", datetime(2027, 3, 1, tzinfo=UTC)))
@example("30 2 * * *", ("Europe/Berlin", datetime(2027, 3, 27, 12, tzinfo=UTC)))
@example("0-59 2 * * *", ("Europe/Berlin", datetime(2027, 10, 31, 0, 58, tzinfo=UTC)))
@example("* 2 * * *", ("Europe/Berlin", datetime(2027, 10, 31, 0, 58, tzinfo=UTC)))
def test_five_field_schedules_fire_when_cronsim_fires(
    five: str, zone_and_start: tuple[str, datetime]
) -> None:
    zone, start = zone_and_start
    try:
        parse_schedule(five, zone)
    except CronError as exc:
        assert "never matches a real date" in str(exc)
        with pytest.raises(cronsim.CronSimError):
            cronsim.CronSim(five, start)
        return
    assert pgsched_ticks(five, zone, start, COUNT) == cronsim_ticks(five, zone, start, COUNT)


@settings(_SETTINGS, max_examples=EXAMPLES_6)
@given(SECONDS, FIVE_FIELDS, starts())
def test_six_field_schedules_fire_when_cronsim_fires_with_seconds_encoded(
    seconds: str, five: str, zone_and_start: tuple[str, datetime]
) -> None:
    zone, start = zone_and_start
    expression = f"{seconds} {five}"
    try:
        parse_schedule(expression, zone)
    except CronError as exc:
        assert "never matches a real date" in str(exc)
        return
    expected = expected_six_field(seconds, five, zone, start, COUNT)
    assert pgsched_ticks(expression, zone, start, COUNT) == expected
