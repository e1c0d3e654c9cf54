"""Where the database clock stands on this process's monotonic clock.

Ticks are due by the database clock, and a tick claimed ahead must start at its time, never
before it. A reading taken in a round trip only bounds the offset between the two clocks (the
database read its clock somewhere between sending and receiving), so a tick waits for the
latest instant its time may be, and its start is recorded at the latest database time it may
have been: the round trip is added to its lag. Under load one round trip may take 10 ms, and
with it a whole second of ticks on that runner. Readings taken over the last seconds bound
the offset by their intersection, as NTP's clock filter keeps the best of its recent samples:
the lag added is then about the fastest round trip's.
"""

from __future__ import annotations

from collections import deque

WINDOW = 8  # readings kept
MAX_AGE = 10.0  # seconds: older readings are dropped (the two clocks drift apart, slowly)


class DatabaseClock:
    """The database clock (epoch seconds) minus this process's `time.monotonic()`, known as
    an interval `low <= offset <= high`. A tick due at database time T starts at monotonic
    `T - low` (never early); a start at monotonic m is recorded as database time `m + high`
    (never earlier than it was)."""

    def __init__(self) -> None:
        self._readings: deque[tuple[float, float, float]] = deque(maxlen=WINDOW)

    def add(self, sent: float, clock: float, received: float) -> tuple[float, float]:
        """A reading: `clock`, read by the database between `sent` and `received` (monotonic
        seconds). Returns the bounds (low, high) after it. A reading that contradicts the
        others (the database clock was stepped, or another server answers now) replaces
        them."""
        low, high = clock - received, clock - sent
        while self._readings and self._readings[0][0] < received - MAX_AGE:
            self._readings.popleft()
        if self._readings:
            known_low, known_high = self.bounds()
            if low > known_high or high < known_low:
                self._readings.clear()
        self._readings.append((received, low, high))
        return self.bounds()

    def bounds(self) -> tuple[float, float]:
        return max(r[1] for r in self._readings), min(r[2] for r in self._readings)
