"""Cron: seconds-first fields, timezone evaluation, DST, and errors a user can act on."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from croniter import croniter

from pgsched.cron import (
    CronSchedule,
    _compile,
    _normalise,
    _parse_field,
    _parse_fields,
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


def test_daily_berlin_across_spring_forward_fires_once_at_the_change() -> None:
    # 2027-03-28 02:30 does not exist in Berlin (02:00 CET -> 03:00 CEST at 01:00 UTC): like
    # cronie and Debian cron, it fires right after the change, at 03:00 CEST = 01:00 UTC.
    assert ticks("0 30 2 * * *", utc(2027, 3, 26), 4, "Europe/Berlin") == [
        utc(2027, 3, 26, 1, 30),  # CET
        utc(2027, 3, 27, 1, 30),  # CET
        utc(2027, 3, 28, 1, 0),  # in the gap: at the change, 03:00 CEST
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
    # 2027-03-14 02:30 does not exist in New York: fires at the change, 03:00 EDT = 07:00 UTC.
    assert ticks("30 2 * * *", utc(2027, 3, 13, 12), 2, "America/New_York") == [
        utc(2027, 3, 14, 7, 0),
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
        ("0 0 0 31 4,6,9,11 *", "never matches a real date"),
        ("0 */0 * * * *", "the step in '*/0' must be 1 or more"),
        ("0 0 0 1,,2 * *", "day '1,,2' is not valid"),
        ("0 0 0 * * 1-", "weekday '1-' is not valid"),
        ("0 0 0 * * ٣", "weekday '٣' is not valid"),
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


def test_what_the_fast_validation_accepts_the_full_parse_accepts_too() -> None:
    """check_schedule skips the full parse for plainly valid expressions: that shortcut must
    never let through an expression the parse refuses (it would fail later, at next_after)."""
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
        if not isinstance(compiled, str):  # whatever validation accepts can fire
            assert parse_schedule(expression).next_after(utc(2027, 1, 1)) > utc(2027, 1, 1)
        if plain:
            fast += 1
            assert not isinstance(compiled, str), (expression, compiled)
            check_schedule(expression)  # and agrees
        else:
            slow += 1
    assert fast > 1_000 and slow > 1_000  # both paths were exercised


@pytest.mark.parametrize(
    "expression",
    [
        "61 * * * * *",
        "0 0 0 30 2 *",
        "x * * * * *",
        "* * * *",
        "H * * * * *",
        "0 5-3 * * * *",
        "0 0 0 5-1 * *",
        "0 0 0 ? * *",
        "0 0 0 L * *",
        "0 0 0 * * 5#2",
        "0 0 0 31 4,6,9,11 *",
    ],
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


# --- crontab(5) semantics. Expected times are written from crontab(5)'s rules and the calendar
# (January 2027 starts on a Friday, February and March 2027 on a Monday), not from the code.


def test_day_and_weekday_both_restricted_fire_on_either() -> None:
    # crontab(5)'s own example: "30 4 1,15 * 5" runs at 4:30 on the 1st and 15th of each
    # month, plus every Friday.
    assert ticks("30 4 1,15 * 5", utc(2027, 1, 1), 7) == [
        utc(2027, 1, 1, 4, 30),  # Friday the 1st
        utc(2027, 1, 8, 4, 30),  # Friday
        utc(2027, 1, 15, 4, 30),  # Friday the 15th
        utc(2027, 1, 22, 4, 30),
        utc(2027, 1, 29, 4, 30),
        utc(2027, 2, 1, 4, 30),  # Monday the 1st
        utc(2027, 2, 5, 4, 30),  # Friday
    ]


def test_a_weekday_starting_with_a_star_leaves_the_day_in_charge() -> None:
    # "*/7" starts with "*": both must match, so days 1-7 that are Sundays (0 and 7): the first
    # Sunday of each month. (croniter ORs them: every one of days 1-7, plus every Sunday.)
    assert ticks("1 1 1-7 * */7", utc(2027, 1, 1), 3) == [
        utc(2027, 1, 3, 1, 1),
        utc(2027, 2, 7, 1, 1),
        utc(2027, 3, 7, 1, 1),
    ]


def test_a_day_starting_with_a_star_leaves_the_weekday_in_charge() -> None:
    # "*/10" (1, 11, 21, 31) starts with "*": only those days that are Mondays.
    assert ticks("0 0 0 */10 * mon", utc(2027, 1, 1), 3) == [
        utc(2027, 1, 11),
        utc(2027, 2, 1),
        utc(2027, 3, 1),
    ]


def test_a_star_day_or_weekday_means_only_the_other_field() -> None:
    assert ticks("0 0 * * 1", utc(2027, 1, 1), 2) == [utc(2027, 1, 4), utc(2027, 1, 11)]
    assert ticks("0 0 13 * *", utc(2027, 1, 1), 2) == [utc(2027, 1, 13), utc(2027, 2, 13)]


def test_weekday_names_numbers_and_seven_for_sunday() -> None:
    sundays = [utc(2027, 1, 3), utc(2027, 1, 10)]
    assert ticks("0 0 * * 7", utc(2027, 1, 1), 2) == sundays
    assert ticks("0 0 * * SUN", utc(2027, 1, 1), 2) == sundays
    assert ticks("0 0 * * 6-7", utc(2027, 1, 1), 3) == [
        utc(2027, 1, 2),
        sundays[0],
        utc(2027, 1, 9),
    ]
    assert ticks("0 0 1 jan-mar *", utc(2027, 1, 1), 3) == [
        utc(2027, 2, 1),
        utc(2027, 3, 1),
        utc(2028, 1, 1),
    ]


def test_a_value_with_a_step_runs_to_the_end_of_the_field() -> None:
    # "5/15" is "5-59/15", as Quartz and cronsim read it.
    assert ticks("5/15 * * * * *", utc(2027, 1, 1), 4) == [
        utc(2027, 1, 1, 0, 0, 5),
        utc(2027, 1, 1, 0, 0, 20),
        utc(2027, 1, 1, 0, 0, 35),
        utc(2027, 1, 1, 0, 0, 50),
    ]


def test_a_range_with_a_step() -> None:
    assert ticks("0 1-10/3 * * * *", utc(2027, 1, 1), 5) == [
        utc(2027, 1, 1, 0, 1),
        utc(2027, 1, 1, 0, 4),
        utc(2027, 1, 1, 0, 7),
        utc(2027, 1, 1, 0, 10),
        utc(2027, 1, 1, 1, 1),
    ]


# --- croniter does the arithmetic, on a form of the fields that pgsched's parse wrote for it.

_FULL = [range(60), range(60), range(24), range(1, 32), range(1, 13), range(7)]
_CRONITER_ORDER = [5, 0, 1, 2, 3, 4]  # where croniter keeps second, minute, ... weekday


def _croniter_reads(expression: str) -> list[set[int]]:
    """The values croniter reads from 6 seconds-first fields, seconds first ("*" as all)."""
    expanded = croniter.expand(expression, second_at_beginning=True)[0]
    found = [expanded[i] for i in _CRONITER_ORDER]
    return [set(full) if v == ["*"] else set(v) for full, v in zip(_FULL, found, strict=True)]


def test_croniter_reads_the_values_the_validation_read() -> None:
    rng = random.Random(20261201)
    checked = either = 0
    for _ in range(30_000):
        restricted = [0.4, 0.4, 0.4, 0.9, 0.4, 0.9]  # day OR weekday wants both restricted
        fields = [_random_field(rng) if rng.random() < p else "*" for p in restricted]
        try:
            normalised = _normalise(" ".join(fields))
            handed = _parse_fields(normalised)
        except ValueError:
            continue
        ours = [set(_parse_field(i, text)[0]) for i, text in enumerate(normalised.split())]
        read = _croniter_reads(handed.croniter_expression)
        assert read[:3] == ours[:3] and read[4] == ours[4], (normalised, handed)
        day_text, weekday_text = normalised.split()[3::2]
        crontab_or = not day_text.startswith("*") and not weekday_text.startswith("*")
        if crontab_or and not handed.day_or:  # one of them is every day: so is the OR
            assert ours[3] == set(_FULL[3]) or ours[5] == set(_FULL[5]), normalised
            assert read[3] == set(_FULL[3]) and read[5] == set(_FULL[5])
        else:
            assert handed.day_or == crontab_or, normalised
            assert read[3] == ours[3] and read[5] == ours[5], (normalised, handed)
        checked += 1
        either += handed.day_or
    assert checked > 1_500 and either > 150


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # croniter alone reads an equal range as the whole field: every second, every day.
        ("5-5 * * * * *", [utc(2027, 1, 1, 0, 0, 5), utc(2027, 1, 1, 0, 1, 5)]),
        ("0 0 0 * * 7-7", [utc(2027, 1, 3), utc(2027, 1, 10)]),
        ("0 0 0 * * sun-sun", [utc(2027, 1, 3), utc(2027, 1, 10)]),
        ("0 0 0 * jun-jun *", [utc(2027, 6, 1), utc(2027, 6, 2)]),
        # Both restricted, one of them every day: the OR is every day (croniter, handed
        # "1,15" and a weekday field it folds into "*", would give the 1st and 15th only).
        ("0 0 0 1,15 * 0-6", [utc(2027, 1, 2), utc(2027, 1, 3)]),
        ("0 0 0 1,15 * sun-sat", [utc(2027, 1, 2), utc(2027, 1, 3)]),
        ("0 0 0 1-31 * 1-5", [utc(2027, 1, 2), utc(2027, 1, 3)]),
    ],
)
def test_equal_ranges_and_whole_fields_mean_what_crontab_says(
    expression: str, expected: list[datetime]
) -> None:
    assert ticks(expression, utc(2027, 1, 1), len(expected)) == expected


def test_a_croniter_failure_is_a_cron_error_naming_the_job_and_expression() -> None:
    schedule = parse_schedule("0 0 0 1 1 *", job="new-year")
    with pytest.raises(CronError, match=r"job 'new-year': invalid schedule '0 0 0 1 1 \*'"):
        schedule.next_after(utc(9999, 6, 1))  # the next 1 January is in year 10000


@pytest.mark.parametrize(
    ("expression", "field", "fix"),
    [
        ("0 5-3 * * * *", "minute '5-3'", "write '5-59,0-3'"),
        ("0 0 0 5-1 * *", "day '5-1'", "write '5-31,1'"),
        ("0 0 22-2 * * *", "hour '22-2'", "write '22-23,0-2'"),
        ("0 0 0 * nov-feb *", "month 'nov-feb'", "write '11-12,1-2'"),
        ("0 0 0 * * fri-mon", "weekday 'fri-mon'", "write '5-7,1'"),
        ("0 0 0 * * mon-sun", "weekday 'mon-sun'", "write '1-7'"),
    ],
)
def test_reversed_ranges_are_rejected_with_the_field_and_the_fix(
    expression: str, field: str, fix: str
) -> None:
    with pytest.raises(CronError) as info:
        parse_schedule(expression, job="nightly")
    message = str(info.value)
    assert f"job 'nightly': invalid schedule {expression!r}: {field} is not valid" in message
    assert "runs backwards" in message
    assert fix in message


@pytest.mark.parametrize(
    ("expression", "field", "token"),
    [
        ("0 0 0 ? * mon", "day '?'", "'?'"),
        ("0 0 0 * * ?", "weekday '?'", "'?'"),
        ("0 0 0 L * *", "day 'L'", "'L'"),
        ("0 0 0 LW * *", "day 'LW'", "'W'"),
        ("0 0 0 15W * *", "day '15W'", "'W'"),
        ("0 0 0 31W * *", "day '31W'", "'W'"),
        ("0 0 0 1,L * *", "day '1,L'", "'L'"),
        ("0 0 0 * * 5L", "weekday '5L'", "'L'"),
        ("0 0 0 * * 5#2", "weekday '5#2'", "'#'"),
        ("0 0 0 31 2 1#5", "weekday '1#5'", "'#'"),  # croniter raised at next_after
        ("H 0 0 * * *", "second 'H'", "hashed/random"),
        ("0 0 H(0-5) * * *", "hour 'H(0-5)'", "hashed/random"),
        ("0 R/5 * * * *", "minute 'R/5'", "hashed/random"),
    ],
)
def test_quartz_and_croniter_extensions_are_rejected_by_field_and_token(
    expression: str, field: str, token: str
) -> None:
    for check in (parse_schedule, check_schedule):
        with pytest.raises(CronError) as info:
            check(expression, job="nightly")
        message = str(info.value)
        assert message.startswith(f"job 'nightly': invalid schedule {expression!r}: {field} ")
        assert f"{token} (" in message or token in message
        assert "not supported" in message


@pytest.mark.parametrize(
    ("expression", "allowed"),
    [
        ("0 0 0 32 * *", "day must be 1-31, as values"),
        ("0 0 0 L * *", "day must be 1-31, as values"),
        ("0 0 0 * * 8", "weekday must be 0-7 or sun-sat, as values"),
        ("0 0 0 * * 5#2", "weekday must be 0-7 or sun-sat, as values"),
    ],
)
def test_error_messages_advertise_only_supported_syntax(expression: str, allowed: str) -> None:
    with pytest.raises(CronError) as info:
        parse_schedule(expression)
    message = str(info.value)
    assert allowed in message
    for advertised in ("15W", "L5", "(or L"):
        assert advertised not in message


# --- DST, Debian cron's rules (crontab(5)): a schedule whose minute or hour field starts with
# "*" follows elapsed time; any other fires each wall-clock time once: a repeated one at its
# first occurrence, skipped ones right after the change (all of them together, once).
# Berlin 2027: 02:00 CET -> 03:00 CEST on 03-28 at 01:00 UTC; 03:00 CEST -> 02:00 CET on
# 10-31 at 01:00 UTC. Helsinki is an hour ahead: its repeated hour is 03:00-04:00.


def test_all_24_hours_listed_is_not_a_wildcard_and_fires_once_in_the_repeated_hour() -> None:
    assert ticks("0 0 0-23 * * *", utc(2027, 10, 30, 23, 30), 3, "Europe/Berlin") == [
        utc(2027, 10, 31, 0),  # 02:00 CEST
        utc(2027, 10, 31, 2),  # 03:00 CET: 02:00 CET, the repeat, does not fire
        utc(2027, 10, 31, 3),  # 04:00 CET
    ]


def test_a_star_step_hour_follows_elapsed_time_through_the_repeated_hour() -> None:
    assert ticks("0 0 */2 * * *", utc(2027, 10, 30, 22, 30), 3, "Europe/Berlin") == [
        utc(2027, 10, 31, 0),  # 02:00 CEST
        utc(2027, 10, 31, 1),  # 02:00 CET, again
        utc(2027, 10, 31, 3),  # 04:00 CET
    ]
    assert ticks("0 30 */3 * * *", utc(2027, 10, 31), 3, "Europe/Helsinki") == [
        utc(2027, 10, 31, 0, 30),  # 03:30 EEST
        utc(2027, 10, 31, 1, 30),  # 03:30 EET, again
        utc(2027, 10, 31, 4, 30),  # 06:30 EET
    ]


def test_the_same_hours_without_a_leading_star_fire_once() -> None:
    for expression in ("0 30 3 * * *", "0 30 0-23/3 * * *"):
        got = ticks(expression, utc(2027, 10, 31), 2, "Europe/Helsinki")
        assert got[0] == utc(2027, 10, 31, 0, 30)  # 03:30 EEST
        assert got[1] > utc(2027, 10, 31, 1, 30)  # not 03:30 EET


def test_a_star_minute_in_a_fixed_hour_runs_through_both_repeated_hours() -> None:
    schedule = parse_schedule("0 * 2 * * *", "Europe/Berlin")
    got = schedule.ticks_between(utc(2027, 10, 30, 23), utc(2027, 10, 31, 3), 500)
    assert got == [utc(2027, 10, 31) + timedelta(minutes=i) for i in range(120)]


def test_every_minute_listed_in_a_fixed_hour_runs_once() -> None:
    schedule = parse_schedule("0 0-59 2 * * *", "Europe/Berlin")
    got = schedule.ticks_between(utc(2027, 10, 30, 23), utc(2027, 10, 31, 3), 500)
    assert got == [utc(2027, 10, 31) + timedelta(minutes=i) for i in range(60)]


def test_a_star_minute_in_the_skipped_hour_does_not_fire_that_day() -> None:
    assert ticks("0 * 2 * * *", utc(2027, 3, 28), 1, "Europe/Berlin") == [utc(2027, 3, 29)]


def test_all_skipped_wall_times_of_a_fixed_schedule_fire_once_at_the_change() -> None:
    for expression, next_day in [
        ("0 0-59 2 * * *", utc(2027, 3, 29, 0, 0)),
        ("0 0,30 2 * * *", utc(2027, 3, 29, 0, 0)),
        ("15 10 2 * * *", utc(2027, 3, 29, 0, 10, 15)),  # 02:10:15 CEST
    ]:
        assert ticks(expression, utc(2027, 3, 28), 2, "Europe/Berlin") == [
            utc(2027, 3, 28, 1),  # 03:00 CEST
            next_day,
        ], expression


def test_a_skipped_time_and_the_time_of_the_change_are_one_fire() -> None:
    assert ticks("0 0 2,3 * * *", utc(2027, 3, 27, 12), 3, "Europe/Berlin") == [
        utc(2027, 3, 28, 1),  # 02:00 (skipped) and 03:00 CEST
        utc(2027, 3, 29, 0),  # 02:00 CEST
        utc(2027, 3, 29, 1),  # 03:00 CEST
    ]


def test_sydney_changes_in_october_and_april() -> None:
    # 2027-10-03 02:00 AEST -> 03:00 AEDT (10-02 16:00 UTC); 2027-04-04 03:00 AEDT -> 02:00 AEST
    # (04-03 16:00 UTC).
    assert ticks("0 30 2 * * *", utc(2027, 10, 2), 2, "Australia/Sydney") == [
        utc(2027, 10, 2, 16),  # 03:00 AEDT, the change
        utc(2027, 10, 3, 15, 30),  # 02:30 AEDT
    ]
    assert ticks("0 30 2 * * *", utc(2027, 4, 3), 2, "Australia/Sydney") == [
        utc(2027, 4, 3, 15, 30),  # 02:30 AEDT, the first one
        utc(2027, 4, 4, 16, 30),  # 02:30 AEST the next day
    ]


def test_london_changes_at_one_in_the_morning() -> None:
    # 2027-03-28 01:00 GMT -> 02:00 BST at 01:00 UTC; 2027-10-31 02:00 BST -> 01:00 GMT.
    assert ticks("30 1 * * *", utc(2027, 3, 27, 12), 2, "Europe/London") == [
        utc(2027, 3, 28, 1),  # 02:00 BST, the change
        utc(2027, 3, 29, 0, 30),  # 01:30 BST
    ]
    assert ticks("30 1 * * *", utc(2027, 10, 30, 12), 2, "Europe/London") == [
        utc(2027, 10, 31, 0, 30),  # 01:30 BST, the first one
        utc(2027, 11, 1, 1, 30),  # 01:30 GMT the next day
    ]
