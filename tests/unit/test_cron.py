"""Cron: seconds-first fields, timezone evaluation, DST, and errors a user can act on."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from pgsched.cron import (
    CronSchedule,
    _compile,
    _normalise,
    _plainly_valid,
    check_schedule,
    parse_schedule,
)
from pgsched.errors import CronError


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def ticks(expr: str, start: datetime, count: int, tz: str = "UTC") -> list[datetime]:
    schedule = parse_schedule(expr, tz)
    result: list[datetime] = []
    for _ in range(count):
        start = schedule.next_after(start)
        result.append(start)
    return result


def test_six_fields_are_seconds_first() -> None:
    assert ticks("0 */15 * * * *", utc(2027, 1, 1, 15), 3) == [
        utc(2027, 1, 1, 15, 15),
        utc(2027, 1, 1, 15, 30),
        utc(2027, 1, 1, 15, 45),
    ]


def test_seconds_field_is_honoured() -> None:
    assert ticks("30 0 * * * *", utc(2027, 1, 1, 15), 2) == [
        utc(2027, 1, 1, 15, 0, 30),
        utc(2027, 1, 1, 16, 0, 30),
    ]


def test_every_second() -> None:
    assert ticks("* * * * * *", utc(2027, 1, 1, 15), 2) == [
        utc(2027, 1, 1, 15, 0, 1),
        utc(2027, 1, 1, 15, 0, 2),
    ]


def test_next_after_is_strictly_after() -> None:
    schedule = parse_schedule("0 0 * * * *")
    assert schedule.next_after(utc(2027, 1, 1, 15)) == utc(2027, 1, 1, 16)
    assert schedule.next_after(utc(2027, 1, 1, 14, 59, 59, 999999)) == utc(2027, 1, 1, 15)


def test_result_is_utc_whatever_the_input_zone() -> None:
    after = datetime(2027, 1, 1, 17, tzinfo=timezone(timedelta(hours=2)))  # 15:00Z
    result = parse_schedule("0 */15 * * * *").next_after(after)
    assert result == utc(2027, 1, 1, 15, 15)
    assert result.tzinfo is UTC


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_schedule("* * * * * *").next_after(datetime(2027, 1, 1))


def test_five_fields_are_standard_cron_with_second_zero() -> None:
    assert ticks("*/15 * * * *", utc(2027, 1, 1, 15, 0, 1), 2) == [
        utc(2027, 1, 1, 15, 15),
        utc(2027, 1, 1, 15, 30),
    ]


@pytest.mark.parametrize(
    ("macro", "expected"),
    [
        ("@yearly", utc(2028, 1, 1)),
        ("@annually", utc(2028, 1, 1)),
        ("@monthly", utc(2027, 2, 1)),
        ("@weekly", utc(2027, 1, 3)),  # 2027-01-03 is a Sunday
        ("@daily", utc(2027, 1, 2)),
        ("@midnight", utc(2027, 1, 2)),
        ("@hourly", utc(2027, 1, 1, 16)),
        ("@HOURLY", utc(2027, 1, 1, 16)),
    ],
)
def test_macros(macro: str, expected: datetime) -> None:
    assert parse_schedule(macro).next_after(utc(2027, 1, 1, 15, 30)) == expected


def test_schedule_is_evaluated_in_its_timezone() -> None:
    # 02:30 in Berlin in winter is 01:30 UTC.
    assert ticks("0 30 2 * * *", utc(2027, 1, 1), 1, "Europe/Berlin") == [utc(2027, 1, 1, 1, 30)]


def test_daily_berlin_across_spring_forward_fires_once_shifted_by_the_gap() -> None:
    # 2027-03-28 02:30 does not exist in Berlin; it fires at 03:30 CEST = 01:30 UTC.
    assert ticks("0 30 2 * * *", utc(2027, 3, 26), 4, "Europe/Berlin") == [
        utc(2027, 3, 26, 1, 30),  # CET
        utc(2027, 3, 27, 1, 30),  # CET
        utc(2027, 3, 28, 1, 30),  # in the gap: 03:30 CEST
        utc(2027, 3, 29, 0, 30),  # CEST
    ]


def test_daily_berlin_across_fall_back_fires_once_at_first_occurrence() -> None:
    # 2027-10-31 02:30 happens twice in Berlin (CEST, then CET); only the first fires.
    assert ticks("0 30 2 * * *", utc(2027, 10, 29), 4, "Europe/Berlin") == [
        utc(2027, 10, 29, 0, 30),  # CEST
        utc(2027, 10, 30, 0, 30),  # CEST
        utc(2027, 10, 31, 0, 30),  # first 02:30, CEST
        utc(2027, 11, 1, 1, 30),  # CET
    ]


def test_hourly_wildcard_follows_elapsed_time_through_the_repeated_hour() -> None:
    assert ticks("0 30 * * * *", utc(2027, 10, 30, 23), 4, "Europe/Berlin") == [
        utc(2027, 10, 30, 23, 30),  # 01:30 CEST
        utc(2027, 10, 31, 0, 30),  # 02:30 CEST
        utc(2027, 10, 31, 1, 30),  # 02:30 CET, the repeated hour fires again
        utc(2027, 10, 31, 2, 30),  # 03:30 CET
    ]


def test_hourly_wildcard_across_spring_forward_fires_each_elapsed_hour_once() -> None:
    assert ticks("0 30 * * * *", utc(2027, 3, 27, 23), 4, "Europe/Berlin") == [
        utc(2027, 3, 27, 23, 30),  # 00:30 CET
        utc(2027, 3, 28, 0, 30),  # 01:30 CET
        utc(2027, 3, 28, 1, 30),  # 02:30 (gap) and 03:30 CEST are the same instant
        utc(2027, 3, 28, 2, 30),  # 04:30 CEST
    ]


def test_every_second_is_continuous_across_both_dst_changes() -> None:
    schedule = parse_schedule("* * * * * *", "Europe/Berlin")
    for change in (utc(2027, 3, 28, 1), utc(2027, 10, 31, 1)):
        start = change - timedelta(seconds=2)
        got = schedule.ticks_between(start, change + timedelta(seconds=2), 10)
        assert got == [start + timedelta(seconds=i) for i in range(5)]


def test_new_york_uses_its_own_transitions() -> None:
    # 2027-03-14 02:30 does not exist in New York: fires at 03:30 EDT = 07:30 UTC.
    assert ticks("30 2 * * *", utc(2027, 3, 13, 12), 2, "America/New_York") == [
        utc(2027, 3, 14, 7, 30),
        utc(2027, 3, 15, 6, 30),
    ]


def test_wildcard_hour_schedule_is_every_20_elapsed_minutes_over_a_dst_year() -> None:
    schedule = parse_schedule("0 */20 * * * *", "Europe/Berlin")
    got = schedule.ticks_between(utc(2027, 1, 1), utc(2028, 1, 1), 100_000)
    assert got == [utc(2027, 1, 1) + timedelta(minutes=20 * i) for i in range(365 * 72 + 1)]


def test_fixed_hour_schedule_fires_once_per_day_over_a_dst_year() -> None:
    schedule = parse_schedule("0 30 2 * * *", "Europe/Berlin")
    got = schedule.ticks_between(utc(2027, 1, 1), utc(2028, 1, 1), 1000)
    assert len(got) == 365
    assert all(a < b for a, b in itertools.pairwise(got))


def test_ticks_between_is_inclusive_and_bounded() -> None:
    schedule = parse_schedule("0 * * * * *")
    assert schedule.ticks_between(utc(2027, 1, 1, 0, 1), utc(2027, 1, 1, 0, 3), 10) == [
        utc(2027, 1, 1, 0, 1),
        utc(2027, 1, 1, 0, 2),
        utc(2027, 1, 1, 0, 3),
    ]
    assert schedule.ticks_between(utc(2027, 1, 1), utc(2027, 1, 2), 2) == [
        utc(2027, 1, 1, 0, 0),
        utc(2027, 1, 1, 0, 1),
    ]
    assert schedule.ticks_between(utc(2027, 1, 1, 0, 0, 1), utc(2027, 1, 1, 0, 0, 59), 5) == []


def test_fixed_offset_zone() -> None:
    assert ticks("0 0 9 * * *", utc(2027, 1, 1), 1, "Etc/GMT-3") == [utc(2027, 1, 1, 6)]


def test_schedule_keeps_what_the_user_wrote() -> None:
    schedule = parse_schedule("@hourly", "Europe/Berlin")
    assert (schedule.expression, schedule.timezone) == ("@hourly", "Europe/Berlin")
    assert schedule.normalised == "0 0 * * * *"
    assert schedule == CronSchedule("@hourly", "Europe/Berlin")


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("61 * * * * *", "second '61' is not valid, second must be 0-59"),
        ("0 60 * * * *", "minute '60' is not valid"),
        ("0 0 24 * * *", "hour '24' is not valid"),
        ("0 0 0 32 * *", "day '32' is not valid"),
        ("0 0 0 * 13 *", "month '13' is not valid"),
        ("0 0 0 * * 8", "weekday '8' is not valid"),
        ("* * * * * * *", "it has 7 fields"),
        ("* * * *", "it has 4 fields"),
        ("@reboot", "unknown macro '@reboot'"),
        ("every day", "it has 2 fields"),
        ("", "the expression is empty"),
        ("   ", "the expression is empty"),
        ("x * * * * *", "second 'x' is not valid"),
        ("H * * * * *", "hashed/random"),
        ("0 0 0 30 2 *", "never matches a real date"),
    ],
)
def test_bad_expressions_name_job_expression_and_what_is_expected(
    expression: str, reason: str
) -> None:
    with pytest.raises(CronError) as info:
        parse_schedule(expression, job="nightly")
    message = str(info.value)
    assert message.startswith(f"job 'nightly': invalid schedule {expression!r}: ")
    assert reason in message
    assert "seconds first" in message


def test_error_without_job_still_names_the_expression() -> None:
    with pytest.raises(CronError, match=r"invalid schedule '61 \* \* \* \* \*'"):
        CronSchedule("61 * * * * *")


def test_unknown_timezone_names_job_and_zone() -> None:
    with pytest.raises(CronError, match="job 'nightly': unknown timezone 'Europe/Berln'") as info:
        parse_schedule("0 * * * * *", "Europe/Berln", job="nightly")
    assert "Europe/Berlin" in str(info.value)  # suggestion


@pytest.mark.parametrize("zone", ["", "../etc/passwd", "Not/AZone"])
def test_invalid_timezones_are_rejected(zone: str) -> None:
    with pytest.raises(CronError, match="unknown timezone"):
        CronSchedule("0 * * * * *", zone)


def _random_field(rng: random.Random) -> str:
    def number() -> str:
        return str(
            rng.choice([rng.randrange(0, 8), rng.randrange(1, 13), rng.randrange(0, 62), 99])
        )

    def part() -> str:
        shape = rng.randrange(7)
        if shape == 0:
            return "*"
        if shape == 1:
            return f"*/{rng.randrange(0, 70)}"
        if shape == 2:
            return number()
        if shape == 3:
            return f"{number()}-{number()}"
        if shape == 4:
            return f"{number()}-{number()}/{rng.randrange(0, 70)}"
        if shape == 5:
            return f"{number()}/{rng.randrange(1, 20)}"
        return rng.choice(["L", "5W", "mon", "jan", "2#3", "-1", "1-", "٣", "01", "007"])

    return ",".join(part() for _ in range(rng.choice([1, 1, 1, 2, 3])))


def test_what_the_fast_validation_accepts_croniter_accepts_too() -> None:
    """check_schedule skips croniter for plainly valid expressions: that shortcut must never
    let through an expression croniter refuses (it would fail later, at next_after)."""
    rng = random.Random(20261125)
    fast = slow = 0
    for _ in range(10_000):
        fields = [_random_field(rng) if rng.random() < 0.35 else "*" for _ in range(6)]
        expression = " ".join(fields)
        try:
            plain = _plainly_valid(_normalise(expression))
        except ValueError:
            continue
        compiled = _compile(expression, "UTC")
        if plain:
            fast += 1
            assert not isinstance(compiled, str), (expression, compiled)
            check_schedule(expression)  # and agrees
        else:
            slow += 1
    assert fast > 1_000 and slow > 1_000  # both paths were exercised


@pytest.mark.parametrize(
    "expression", ["61 * * * * *", "0 0 0 30 2 *", "x * * * * *", "* * * *", "H * * * * *"]
)
def test_check_schedule_fails_like_parse_schedule(expression: str) -> None:
    with pytest.raises(CronError) as parsed:
        parse_schedule(expression, job="nightly")
    with pytest.raises(CronError) as checked:
        check_schedule(expression, job="nightly")
    assert str(checked.value) == str(parsed.value)


def test_check_schedule_names_an_unknown_timezone() -> None:
    with pytest.raises(CronError, match="job 'nightly': unknown timezone 'Europe/Berln'"):
        check_schedule("0 * * * * *", "Europe/Berln", job="nightly")


def test_check_schedule_remembers_only_good_schedules() -> None:
    """Checks are cached per (expression, zone); a bad one must fail every time, each time
    naming the job that asked."""
    check_schedule("0 */15 * * * *", "UTC", job="first")
    check_schedule("0 */15 * * * *", "UTC", job="second")  # cached: still fine
    for job in ("first", "second"):
        with pytest.raises(CronError, match=f"job '{job}'.*61"):
            check_schedule("61 * * * * *", "UTC", job=job)
    with pytest.raises(CronError, match="unknown timezone 'Mars/Base'"):
        check_schedule("0 */15 * * * *", "Mars/Base", job="third")  # same expression, bad zone


@pytest.mark.parametrize("expression", ["0 0 * * * *", "0 0 12 * * MON-FRI", "0 30 9 * JAN-MAR *"])
def test_hash_letters_in_names_are_not_hashed_values(expression: str) -> None:
    """The H/R pre-filter only decides whether to look closer: names with H or R still pass."""
    check_schedule(expression, job="names")
    assert parse_schedule(expression).next_after(datetime(2026, 1, 1, tzinfo=UTC))
