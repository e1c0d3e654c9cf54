"""DatabaseClock: the bounds it gives always hold the true offset, and tighten with readings."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pgsched.clock import MAX_AGE, DatabaseClock

# A reading: sent at `at`, the database reads its clock `before` later, the reply arrives
# `after` later still (round trips up to 50 ms).
delays = st.tuples(st.floats(0, 0.025), st.floats(0, 0.025))


def read(clock: DatabaseClock, offset: float, at: float, before: float, after: float):
    return clock.add(at, at + before + offset, at + before + after)


@given(offset=st.floats(-1e9, 1e9), readings=st.lists(delays, min_size=1, max_size=30))
def test_the_bounds_always_hold_the_true_offset(offset: float, readings: list) -> None:
    clock = DatabaseClock()
    for i, (before, after) in enumerate(readings):
        low, high = read(clock, offset, 100.0 + i, before, after)
        assert low <= offset + 1e-6 and offset - 1e-6 <= high


def test_one_slow_round_trip_does_not_widen_what_fast_ones_established() -> None:
    clock = DatabaseClock()
    for i in range(5):
        read(clock, 7.0, 100.0 + i, 0.0001, 0.0001)  # 0.2 ms round trips
    low, high = read(clock, 7.0, 105.0, 0.005, 0.005)  # a 10 ms one
    assert high - low <= 0.0002 + 1e-9
    alone = DatabaseClock()
    low, high = read(alone, 7.0, 105.0, 0.005, 0.005)
    assert high - low >= 0.01 - 1e-9  # what a single reading gives


def test_a_stepped_clock_replaces_the_old_readings() -> None:
    clock = DatabaseClock()
    for i in range(5):
        read(clock, 7.0, 100.0 + i, 0.0001, 0.0001)
    low, high = read(clock, 7.5, 105.0, 0.0001, 0.0001)  # stepped 0.5 s forward
    assert low <= 7.5 <= high


def test_old_readings_leave_the_window() -> None:
    clock = DatabaseClock()
    read(clock, 7.0, 100.0, 0.0001, 0.0001)
    low, high = read(clock, 7.0, 100.0 + MAX_AGE + 1, 0.005, 0.005)
    assert high - low >= 0.01 - 1e-9  # the tight old reading no longer counts
