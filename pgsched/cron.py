"""Cron schedules: seconds-first 6-field expressions evaluated in a job's timezone.

The fields mean what crontab(5) says (Vixie cron, cronie, Debian): values, ranges, steps and
names, and the day of the month OR the day of the week only when both are restricted. This
module parses each field itself, so that an error names the field, the token and the fix
(reversed ranges, Quartz's `?`, `L`, `W`, `#` and croniter's hashing are refused, and so is a
schedule that can never fire), and hands croniter only a rewritten form it cannot misread.
croniter does the field arithmetic on naive wall-clock times, seconds first, with `day_or`
set by crontab(5)'s rule; this module maps those wall times to UTC instants with Debian cron's
rules for DST changes, which croniter's own timezone handling does not follow: a fixed-time
schedule fires once per wall-clock tick, a wildcard one (`*` leading its minute or hour field)
follows elapsed time.
"""

from __future__ import annotations

import bisect
import difflib
import functools
import itertools
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pgsched.errors import CronError

if TYPE_CHECKING:  # imported where a schedule is parsed: a CLI call that parses none skips it
    from croniter import croniter

__all__ = [
    "CronSchedule",
    "check_schedule",
    "get_zone",
    "next_tick",
    "parse_schedule",
    "schedule_error",
    "schedule_for",
]

EXPECTED = (
    '6 fields, seconds first: "sec min hour day month weekday", '
    "or 5-field cron, or @hourly-style macro"
)

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


@dataclass(frozen=True)
class _FieldSpec:
    name: str
    low: int
    high: int
    allowed: str
    names: dict[str, int] = field(default_factory=dict)


_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
# Seconds first; weekday 7 is Sunday, as in crontab(5).
_SPECS = (
    _FieldSpec("second", 0, 59, "0-59"),
    _FieldSpec("minute", 0, 59, "0-59"),
    _FieldSpec("hour", 0, 23, "0-23"),
    _FieldSpec("day", 1, 31, "1-31"),
    _FieldSpec("month", 1, 12, "1-12 or jan-dec", {n: i for i, n in enumerate(_MONTHS, 1)}),
    _FieldSpec("weekday", 0, 7, "0-7 or sun-sat", {n: i for i, n in enumerate(_WEEKDAYS)}),
)
_SYNTAX = "as values, a-b ranges, * and /n steps, separated by commas"
_PART_RE = re.compile(r"^(?:(\*)|([0-9a-z]+)(?:-([0-9a-z]+))?)(?:/([0-9]+))?$")
# croniter's hash/random syntax ("H", "R/5") would give each process a different schedule.
_HASH_RE = re.compile(r"^[hr](\(\d+-\d+\))?(/\d+)?$", re.IGNORECASE)
_LONGEST_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_US = timedelta(microseconds=1)
_PROBE_STEP = timedelta(hours=6)  # no zone has two transitions this close together
_FIXED_ZONE_RE = re.compile(r"^(UTC|UCT|GMT|Zulu|Universal|Greenwich|Etc/.+)$")


def _fail(expression: str, reason: str, job: str | None) -> CronError:
    prefix = f"job {job!r}: " if job is not None else ""
    return CronError(f"{prefix}invalid schedule {expression!r}: {reason} ({EXPECTED})")


def get_zone(name: str, *, job: str | None = None) -> ZoneInfo:
    """Resolve an IANA zone name, failing with a message a user can act on."""
    prefix = f"job {job!r}: " if job is not None else ""
    zone = _zone(name) if isinstance(name, str) and name.strip() == name and name else None
    if zone is None:
        close = difflib.get_close_matches(str(name), sorted(available_timezones()), n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise CronError(
            f"{prefix}unknown timezone {name!r}: expected an IANA name such as 'UTC' or "
            f"'Europe/Berlin'{hint}"
        )
    return zone


@functools.lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


@dataclass(frozen=True)
class _Transition:
    at: datetime  # naive UTC instant of the change
    before: timedelta  # UTC offset just before
    after: timedelta  # UTC offset from `at` on


def _offset(zone: ZoneInfo, instant: datetime) -> timedelta:
    offset = zone.fromutc(instant.replace(tzinfo=zone)).utcoffset()
    assert offset is not None
    return offset


@functools.lru_cache(maxsize=1024)
def _transitions(zone: ZoneInfo, year: int) -> tuple[_Transition, ...]:
    """Offset changes in one year, found by probing: zoneinfo does not expose its table."""
    found: list[_Transition] = []
    lo = datetime(year, 1, 1) - timedelta(seconds=1)  # so a change at midnight is found
    end = datetime(year + 1, 1, 1)
    lo_off = _offset(zone, lo)
    while lo < end:
        hi = min(lo + _PROBE_STEP, end)
        hi_off = _offset(zone, hi)
        if hi_off != lo_off:
            a, b = lo, hi  # off(a) == lo_off, off(b) != lo_off; bisect to the second
            while b - a > timedelta(seconds=1):
                mid = a + (b - a) // 2
                mid = mid.replace(microsecond=0)
                if _offset(zone, mid) == lo_off:
                    a = mid
                else:
                    b = mid
            if b < end:
                found.append(_Transition(b, lo_off, hi_off))
        lo, lo_off = hi, hi_off
    return tuple(found)


def _prev_transition(zone: ZoneInfo, instant: datetime) -> _Transition | None:
    """The last change at or before `instant` within about a year (older ones never matter)."""
    for year in (instant.year, instant.year - 1):
        trs = _transitions(zone, year)
        i = bisect.bisect_right([t.at for t in trs], instant)
        if i:
            return trs[i - 1]
    return None


def _next_transition(zone: ZoneInfo, instant: datetime, until: datetime) -> _Transition | None:
    """The first change strictly after `instant` and no later than `until`."""
    for year in range(instant.year, until.year + 1):
        for tr in _transitions(zone, year):
            if tr.at > instant:
                return tr if tr.at <= until else None
    return None


class _BadField(ValueError):
    """One field's problem, worded for the user."""


def _field_problem(spec: _FieldSpec, value: str, problem: str) -> _BadField:
    return _BadField(f"{spec.name} {value!r} is not valid: {problem}; {_must_be(spec)}")


def _must_be(spec: _FieldSpec) -> str:
    return f"{spec.name} must be {spec.allowed}, {_SYNTAX}"


def _unsupported(spec: _FieldSpec, part: str) -> str | None:
    """Name the extension a part uses, if it is one pgsched refuses (rather than a typo)."""
    lowered = part.lower()
    if _HASH_RE.match(part):
        return "hashed/random (H, R) values are not supported"
    if "?" in part:
        return "'?' (Quartz's 'no specific value') is not supported, write '*'"
    if "#" in part:
        return "'#' (Quartz's 'nth weekday of the month') is not supported"
    if spec.name == "day" and re.fullmatch(r"[0-9]+w|lw", lowered):
        return "'W' (Quartz's 'nearest weekday') is not supported"
    if spec.name == "day" and re.fullmatch(r"l(-[0-9]+)?", lowered):
        return "'L' (Quartz's 'last day of the month') is not supported"
    if spec.name == "weekday" and re.fullmatch(r"[0-9]?l", lowered):
        return "'L' (Quartz's 'last ... of the month') is not supported"
    return None


def _number(spec: _FieldSpec, value: str, token: str) -> int:
    if token.isdigit():  # ASCII only: the part matched _PART_RE
        number = int(token)
    elif token in spec.names:
        number = spec.names[token]
    else:
        raise _BadField(f"{spec.name} {value!r} is not valid, {_must_be(spec)}")
    if not spec.low <= number <= spec.high:
        raise _BadField(f"{spec.name} {value!r} is not valid, {_must_be(spec)}")
    return number


def _span(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"


def _backwards(spec: _FieldSpec, value: str, part: str, first: int, last: int) -> _BadField:
    if spec.name == "weekday":  # 7 is Sunday too: "fri-sun" is 5-7, "fri-mon" 5-7,1
        fix = _span(first, 7) if last == 0 else f"{_span(first, 7)},{_span(1, last)}"
    else:
        fix = f"{_span(first, spec.high)},{_span(spec.low, last)}"
    return _field_problem(
        spec, value, f"the range {part!r} runs backwards (ranges do not wrap around), write {fix!r}"
    )


def _parse_part(spec: _FieldSpec, value: str, part: str) -> range:
    unsupported = _unsupported(spec, part)
    if unsupported is not None:
        raise _field_problem(spec, value, unsupported)
    match = _PART_RE.match(part.lower())
    if match is None:
        raise _BadField(f"{spec.name} {value!r} is not valid, {_must_be(spec)}")
    star, first_text, last_text, step_text = match.groups()
    step = 1 if step_text is None else int(step_text)
    if step < 1:
        raise _field_problem(spec, value, f"the step in {part!r} must be 1 or more")
    if star:
        return range(spec.low, spec.high + 1, step)
    first = _number(spec, value, first_text)
    if last_text is None:  # "5/15" is 5-59/15, as Quartz and cronsim read it
        last = first if step_text is None else spec.high
    else:
        last = _number(spec, value, last_text)
    if last < first:
        raise _backwards(spec, value, part, first, last)
    return range(first, last + 1, step)


@functools.lru_cache(maxsize=4096)
def _parse_field(index: int, value: str) -> tuple[tuple[int, ...], str]:
    """The values one field names (weekday 7 read as 0), and the field in croniter's form;
    cached because 100,000 jobs share a few hundred field texts ("*", "0", "30", ...)."""
    spec = _SPECS[index]
    found: set[int] = set()
    for part in value.split(","):
        found.update(_parse_part(spec, value, part))
    if spec.name == "weekday" and 7 in found:
        found = (found - {7}) | {0}
    values = tuple(sorted(found))
    return values, _croniter_field(spec, values)


def _croniter_field(spec: _FieldSpec, values: tuple[int, ...]) -> str:
    """A field as croniter cannot misread it: `*`, `a-b` or `a-b/n` with a < b, or a list of
    numbers. croniter reads an equal range (`5-5`, `sun-sun`) as the whole field, and `a/n`,
    names and weekday 7 its own ways; none of them reach it."""
    size = 7 if spec.name == "weekday" else spec.high - spec.low + 1
    if len(values) == size:
        return "*"
    if len(values) >= 3:
        step = values[1] - values[0]
        if all(b - a == step for a, b in itertools.pairwise(values)):
            steps = "" if step == 1 else f"/{step}"
            return f"{values[0]}-{values[-1]}{steps}"
    return ",".join(map(str, values))


@dataclass(frozen=True)
class _Fields:
    """What the validation read: the form croniter is handed and how it combines the days."""

    croniter_expression: str  # 6 fields, seconds first, in `_croniter_field`'s form
    day_or: bool  # crontab(5): day OR weekday only when neither field starts with "*"


def _parse_fields(normalised: str) -> _Fields:
    """Parse 6 seconds-first fields, or raise ValueError naming the field, token and fix."""
    texts = normalised.split()
    parsed = [_parse_field(index, text) for index, text in enumerate(texts)]
    either = not texts[3].startswith("*") and not texts[5].startswith("*")
    days, months = parsed[3][0], parsed[4][0]
    if not either and not any(day <= _LONGEST_MONTH[m] for m in months for day in days):
        # AND: each real date falls on every weekday within 40 years (croniter looks 50
        # ahead). OR: every month has every weekday.
        raise ValueError(
            f"it never matches a real date: no month {texts[4]!r} has a day {texts[3]!r}"
        )
    fields = [croniter_form for _, croniter_form in parsed]
    if either and "*" in (fields[3], fields[5]):
        # All days are one of them: croniter would AND a "*" with the other field instead.
        fields[3] = fields[5] = "*"
        either = False
    return _Fields(" ".join(fields), either)


class _NoNextTick(Exception):
    """croniter failed to compute a tick of an expression the validation accepted."""


@dataclass(frozen=True)
class _Compiled:
    normalised: str  # 6 fields, seconds first
    zone: ZoneInfo
    fixed: timedelta | None  # the offset of a zone that never changes it: skips all DST work
    elapsed: bool  # "*" leads the minute or hour field: follows elapsed time across DST
    iterator: croniter = field(compare=False)
    lock: threading.Lock = field(compare=False)

    def wall_next(self, wall: datetime) -> datetime:
        """First matching naive wall time strictly after `wall` (whole seconds)."""
        from croniter import CroniterError  # loaded already: this schedule was parsed

        start = wall.replace(microsecond=0)  # exact in croniter's float timestamps
        try:
            with self.lock:  # croniter keeps its cursor in the instance
                result: datetime = self.iterator.get_next(datetime, start_time=start)
        except (CroniterError, ValueError, OverflowError) as exc:
            raise _NoNextTick(f"croniter found no tick after {wall.isoformat()} ({exc})") from exc
        return result


def _normalise(expression: str) -> str:
    """Return the expression as 6 seconds-first fields, or raise ValueError with the reason."""
    text = expression.strip()
    if not text:
        raise ValueError("the expression is empty")
    if text.startswith("@"):
        macro = MACROS.get(text.lower())
        if macro is None:
            raise ValueError(f"unknown macro {text!r}, expected one of {', '.join(MACROS)}")
        text = macro
    fields = text.split()
    if len(fields) == 5:
        fields.insert(0, "0")
    elif len(fields) != 6:
        raise ValueError(f"it has {len(fields)} fields")
    return " ".join(fields)


# (lowest, highest) value of each field, seconds first; weekday 7 is Sunday.
_BOUNDS = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_PLAIN_PART = re.compile(r"^(?:\*|([0-9]{1,2})(?:-([0-9]{1,2}))?)(?:/([0-9]{1,2}))?$")


def _plainly_valid(normalised: str) -> bool:
    """True when every field is only `*`, numbers and upward `a-b` ranges (with optional
    `/step`) within bounds, and day or month is `*`: a subset of what the full parse accepts
    (a unit test checks that). The full parse and croniter's cost ~50 µs per distinct
    expression: too slow to validate 100,000 jobs on every start."""
    fields = normalised.split()
    if fields[3] != "*" and fields[4] != "*":
        return False  # "0 0 0 30 2 *" parses but never fires: the full parse tells
    for (low, high), value in zip(_BOUNDS, fields, strict=True):
        if value == "*":
            continue
        for part in value.split(","):
            if part.isascii() and part.isdigit() and len(part) <= 2:  # usual: no regex needed
                if not low <= int(part) <= high:
                    return False
                continue
            match = _PLAIN_PART.match(part)
            if match is None:
                return False
            first, last, step = match.groups()
            if first is not None and last is None and step is not None:
                return False  # "5/15": left to the full parse
            numbers = [int(n) for n in (first, last) if n is not None]
            if any(n < low or n > high for n in numbers) or numbers != sorted(numbers):
                return False
            if step is not None and not 1 <= int(step) <= high - low:
                return False
    return True


def check_schedule(expression: str, timezone: str = "UTC", *, job: str | None = None) -> None:
    """Validate like `parse_schedule`, without the full parse when the expression is plainly
    valid."""
    if (
        isinstance(expression, str)
        and isinstance(timezone, str)
        and _known_valid(expression, timezone)
    ):
        return
    _check_schedule(expression, timezone, job)


@functools.lru_cache(maxsize=4096)
def _known_valid(expression: str, timezone: str) -> bool:
    """A definition's schedule is checked with its code settings and again with the profile's
    overrides; jobs often share schedules. Remember the good ones (errors are rebuilt with
    the job's name)."""
    try:
        _check_schedule(expression, timezone, None)
    except CronError:
        return False
    return True


def _check_schedule(expression: str, timezone: str, job: str | None) -> None:
    if not isinstance(expression, str):
        raise _fail(str(expression), "a schedule must be a string", job)
    get_zone(timezone, job=job)
    try:
        if _plainly_valid(_normalise(expression)):
            return
    except ValueError as exc:
        raise _fail(expression, str(exc), job) from None
    parse_schedule(expression, timezone, job=job)


@functools.lru_cache(maxsize=1024)
def _compile(expression: str, timezone: str) -> _Compiled | str:
    """Parse once per (expression, zone); a str result is the reason the expression is bad."""
    from croniter import CroniterError, croniter

    try:
        normalised = _normalise(expression)
        fields = _parse_fields(normalised)
        iterator = croniter(
            fields.croniter_expression,
            datetime(2000, 1, 1),
            day_or=fields.day_or,
            second_at_beginning=True,
        )
    except CroniterError as exc:  # pragma: no cover - the validation hands it only its syntax
        return f"croniter refused it ({exc})"
    except ValueError as exc:
        return str(exc)
    zone = get_zone(timezone)
    minute, hour = normalised.split()[1:3]
    elapsed = minute.startswith("*") or hour.startswith("*")
    fixed = _offset(zone, datetime(2000, 1, 1)) if _FIXED_ZONE_RE.match(timezone) else None
    return _Compiled(normalised, zone, fixed, elapsed, iterator, threading.Lock())


def _to_naive_utc(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {moment.isoformat()}")
    return moment.astimezone(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class CronSchedule:
    """A validated schedule; cheap to evaluate repeatedly (parsing is cached per expression)."""

    expression: str
    timezone: str = "UTC"
    job: str | None = field(default=None, compare=False)  # named in errors
    _compiled: _Compiled = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        get_zone(self.timezone)
        compiled = _compile(self.expression, self.timezone)
        if isinstance(compiled, str):
            raise _fail(self.expression, compiled, self.job)
        object.__setattr__(self, "_compiled", compiled)

    @property
    def normalised(self) -> str:
        """The expression as 6 seconds-first fields (macros and 5-field forms expanded)."""
        return self._compiled.normalised

    def next_after(self, after: datetime) -> datetime:
        """First tick strictly after `after`, as an aware UTC datetime."""
        return self._next(_to_naive_utc(after, "after")).replace(tzinfo=UTC)

    def ticks_between(self, start: datetime, end: datetime, limit: int) -> list[datetime]:
        """The earliest ticks t with start <= t <= end, at most `limit` of them (UTC)."""
        cursor = _to_naive_utc(start, "start") - _US
        stop = _to_naive_utc(end, "end")
        ticks: list[datetime] = []
        while len(ticks) < limit:
            cursor = self._next(cursor)
            if cursor > stop:
                break
            ticks.append(cursor.replace(tzinfo=UTC))
        return ticks

    def _next(self, after: datetime) -> datetime:
        try:
            return self._next_tick(after)
        except _NoNextTick as exc:  # the validation proved it fires: croniter's fault, say so
            raise _fail(self.expression, str(exc), self.job) from exc.__cause__

    def _next_tick(self, after: datetime) -> datetime:
        c = self._compiled
        if c.fixed is not None:
            return c.wall_next(after + c.fixed) - c.fixed
        cursor = after
        while True:
            found = self._next_in_segment(cursor, after)
            if isinstance(found, datetime):
                return found
            cursor = found.at - _US  # nothing before the next offset change: continue past it

    def _next_in_segment(self, cursor: datetime, after: datetime) -> datetime | _Transition:
        """Earliest tick after `cursor` while the UTC offset stays what it is just after it.

        Returns the transition that ends the segment when the segment holds no tick. The DST
        rules are Debian cron's (crontab(5)): wildcard schedules follow elapsed time; others
        fire a repeated wall time at its first occurrence and wall times that the clock
        skipped once, at the change.
        """
        c = self._compiled
        probe = cursor + _US
        offset = _offset(c.zone, probe)
        prev = _prev_transition(c.zone, probe)
        start_wall = cursor + offset
        if prev is not None and not c.elapsed:
            if prev.after > prev.before and prev.at > after:  # spring forward, not yet fired
                if c.wall_next(prev.at + prev.before - _US) < prev.at + prev.after:
                    return prev.at
            elif prev.before > prev.after:  # fall back: the repeated walls fired before it
                start_wall = max(start_wall, prev.at + prev.before - _US)
        instant = c.wall_next(start_wall) - offset
        nxt = _next_transition(c.zone, probe, instant)
        return instant if nxt is None else nxt


@functools.lru_cache(maxsize=4096)
def schedule_for(expression: str, timezone: str) -> CronSchedule:
    """The schedule object for (expression, zone), made once: the claim asks for it per due
    job. Every cron cache lives in this module."""
    return parse_schedule(expression, timezone)


@functools.lru_cache(maxsize=4096)
def next_tick(expression: str, timezone: str, after: datetime) -> datetime:
    """Jobs that share a schedule are due together and ask the same question: answer once
    (croniter needs ~20 µs, a whole claim of 100 such jobs otherwise ~2.5 ms)."""
    return schedule_for(expression, timezone).next_after(after)


def schedule_error(expression: str | None, timezone: str) -> str | None:
    """Why a schedule cannot fire, or None (None: a manual-only job, no problem). Cheap:
    the parse behind it is cached."""
    if expression is None:
        return None
    try:
        parse_schedule(expression, timezone)
    except CronError as exc:
        return str(exc)
    return None


def parse_schedule(
    expression: str, timezone: str = "UTC", *, job: str | None = None
) -> CronSchedule:
    """Validate a schedule for `job`, naming the job in any error."""
    if not isinstance(expression, str):
        raise _fail(str(expression), "a schedule must be a string", job)
    get_zone(timezone, job=job)
    compiled = _compile(expression, timezone)
    if isinstance(compiled, str):
        raise _fail(expression, compiled, job)
    return CronSchedule(expression, timezone, job)
