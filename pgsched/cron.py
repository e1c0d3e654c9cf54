"""Cron schedules: seconds-first 6-field expressions evaluated in a job's timezone.

croniter does the field arithmetic on naive wall-clock times; this module maps those wall
times to UTC instants itself, because croniter's own timezone handling neither fires each
wall-clock tick exactly once across DST changes nor keeps seconds first.
"""

from __future__ import annotations

import bisect
import difflib
import functools
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pgsched.errors import CronError

if TYPE_CHECKING:  # imported where a schedule is parsed: a CLI call that parses none skips it
    from croniter import croniter

__all__ = ["CronSchedule", "check_schedule", "get_zone", "parse_schedule"]

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

# (name, allowed values) in seconds-first order.
_FIELDS = (
    ("second", "0-59"),
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day", "1-31 (or L, 15W)"),
    ("month", "1-12 or jan-dec"),
    ("weekday", "0-7 or sun-sat (or 5#2, L5)"),
)
# croniter's hash/random syntax ("H", "R/5") would give each process a different schedule.
_HASH_RE = re.compile(r"^[hr](\(\d+-\d+\))?(/\d+)?$", re.IGNORECASE)
_HASH_LETTER = re.compile(r"[hr]", re.IGNORECASE)
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


@dataclass(frozen=True)
class _Compiled:
    normalised: str  # 6 fields, seconds first
    zone: ZoneInfo
    fixed: timedelta | None  # the offset of a zone that never changes it: skips all DST work
    hour_wildcard: bool  # fires every hour, so it follows elapsed time through a repeated hour
    iterator: croniter = field(compare=False)
    lock: threading.Lock = field(compare=False)

    def wall_next(self, wall: datetime) -> datetime:
        """First matching naive wall time strictly after `wall`."""
        with self.lock:  # croniter keeps its cursor in the instance
            result: datetime = self.iterator.get_next(datetime, start_time=wall)
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
    if _HASH_LETTER.search(text):  # rare: only then look at each field
        for (name, _), value in zip(_FIELDS, fields, strict=True):
            if any(_HASH_RE.match(part) for part in value.split(",")):
                raise ValueError(f"{name} {value!r}: hashed/random (H, R) values are not supported")
    return " ".join(fields)


# (lowest, highest) value of each field, seconds first; weekday 7 is Sunday, as in croniter.
_BOUNDS = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_PLAIN_PART = re.compile(r"^(?:\*|([0-9]{1,2})(?:-([0-9]{1,2}))?)(?:/([0-9]{1,2}))?$")


def _plainly_valid(normalised: str) -> bool:
    """True when every field is only `*`, numbers and `a-b` ranges (with optional `/step`)
    within bounds: a subset of the syntax croniter always accepts (a unit test checks that
    against croniter). Anything else is left to croniter, which costs ~100 µs per distinct
    expression: too slow to validate 100,000 jobs on every start."""
    fields = normalised.split()
    if fields[3] != "*" and fields[4] != "*":
        return False  # "0 0 0 30 2 *" parses but never fires: only croniter can tell
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
                return False  # "5/15": croniter's reading, not this one's
            numbers = [int(n) for n in (first, last) if n is not None]
            if any(n < low or n > high for n in numbers) or numbers != sorted(numbers):
                return False
            if step is not None and not 1 <= int(step) <= high - low:
                return False
    return True


def check_schedule(expression: str, timezone: str = "UTC", *, job: str | None = None) -> None:
    """Validate like `parse_schedule`, without building croniter's iterator when the
    expression is plainly valid."""
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


def _field_error(normalised: str) -> str:
    """Find which field croniter refused (only called on failure: it costs six parses)."""
    from croniter import CroniterError, croniter

    fields = normalised.split()
    for index, ((name, allowed), value) in enumerate(zip(_FIELDS, fields, strict=True)):
        probe = ["*"] * 6  # check each field alone, so the error can name it
        probe[index] = value
        try:
            croniter.expand(" ".join(probe), second_at_beginning=True)
        except CroniterError:
            return f"{name} {value!r} is not valid, {name} must be {allowed}"
    return "its fields do not combine into a valid schedule"


@functools.lru_cache(maxsize=1024)
def _compile(expression: str, timezone: str) -> _Compiled | str:
    """Parse once per (expression, zone); a str result is the reason the expression is bad."""
    from croniter import CroniterBadDateError, CroniterError, croniter

    try:
        normalised = _normalise(expression)
    except ValueError as exc:
        return str(exc)
    try:
        iterator = croniter(normalised, datetime(2000, 1, 1), second_at_beginning=True)
    except (CroniterError, ValueError):
        return _field_error(normalised)
    expanded = iterator.expanded
    day, month = normalised.split()[3:5]
    if day != "*" and month != "*":
        try:  # an expression like "0 0 30 2 *" parses but can never fire
            iterator.get_next(datetime, start_time=datetime(2000, 1, 1))
        except CroniterBadDateError:
            return "it never matches a real date"
        except ValueError as exc:
            return str(exc)
    zone = get_zone(timezone)
    hours = expanded[1]
    hour_wildcard = hours == ["*"] or len(set(hours)) == 24
    fixed = _offset(zone, datetime(2000, 1, 1)) if _FIXED_ZONE_RE.match(timezone) else None
    return _Compiled(normalised, zone, fixed, hour_wildcard, iterator, threading.Lock())


def _to_naive_utc(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {moment.isoformat()}")
    return moment.astimezone(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class CronSchedule:
    """A validated schedule; cheap to evaluate repeatedly (parsing is cached per expression)."""

    expression: str
    timezone: str = "UTC"
    _compiled: _Compiled = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        get_zone(self.timezone)
        compiled = _compile(self.expression, self.timezone)
        if isinstance(compiled, str):
            raise _fail(self.expression, compiled, None)
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
        c = self._compiled
        if c.fixed is not None:
            return c.wall_next(after + c.fixed) - c.fixed
        cursor = after
        while True:
            best = self._next_in_segment(cursor, after)
            if isinstance(best, datetime):
                return best
            cursor = best.at - _US  # nothing before the next offset change: continue past it

    def _next_in_segment(self, cursor: datetime, after: datetime) -> datetime | _Transition:
        """Earliest tick after `cursor` while the UTC offset stays what it is just after it.

        Returns the transition that ends the segment when the segment holds no tick.
        """
        c = self._compiled
        zone = c.zone
        probe = cursor + _US
        offset = _offset(zone, probe)
        prev = _prev_transition(zone, probe)
        candidates: list[datetime] = []

        # Regular wall times of this segment.
        start_wall = cursor + offset
        if prev is not None and prev.before > prev.after and not c.hour_wildcard:
            # Fall back: the repeated wall times already fired in the previous segment.
            start_wall = max(start_wall, prev.at + prev.before - _US)
        wall = c.wall_next(start_wall)
        instant = wall - offset
        nxt = _next_transition(zone, probe, instant)
        if nxt is None:
            candidates.append(instant)

        # Spring forward: wall times the clock skipped fire once, shifted by the gap.
        if prev is not None and prev.after > prev.before:
            gap_start, gap_end = prev.at + prev.before, prev.at + prev.after
            from_wall = max(cursor + prev.before, gap_start - _US)
            if from_wall < gap_end:
                wall = c.wall_next(from_wall)
                if wall < gap_end:
                    candidates.append(wall - prev.before)

        candidates = [t for t in candidates if t > after]
        if candidates:
            return min(candidates)
        if nxt is None:  # pragma: no cover - the regular candidate is always after `after`
            raise AssertionError("no tick and no transition")
        return nxt


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
    return CronSchedule(expression, timezone)
