"""A duty is one small, named piece of the runner's control plane, driven by a supervisor.

Each duty does one step at a time and says how long to wait before the next; the supervisor
(`drive`) owns the loop, the waiting, the backoff and what happens when a step fails, so no
duty has an error path of its own and none can die silently (psycopg_pool's
`MaintenanceTask`s and procrastinate's worker side tasks are the model).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, ClassVar

from ..errors import DatabaseUnavailableError

MAX_FAILURES = 10  # unexpected failures in a row before a duty gives up and stops the runner


class Backoff:
    """Exponential backoff: no crash-loop, no busy spin."""

    def __init__(self, first: float = 0.2, most: float = 5.0) -> None:
        self.first, self.most, self.current = first, most, first

    def next(self) -> float:
        delay, self.current = self.current, min(self.current * 2, self.most)
        return delay

    def reset(self) -> None:
        self.current = self.first


class Duty:
    """Subclass, name it, and implement `step`."""

    name: ClassVar[str] = "duty"
    # A duty whose step waits on something outside (LISTEN) is cancelled to stop it; the
    # others finish their step first, so a claim in flight commits and its runs are kept.
    interruptible: ClassVar[bool] = False

    def __init__(self) -> None:
        self._wake = asyncio.Event()
        self.stopped = False

    async def step(self) -> float | None:
        """Do one round of the duty; return the seconds to wait before the next one (0: at
        once), or None to wait until `wake()`."""
        raise NotImplementedError

    def wake(self) -> None:
        """Start the next step now (only from the control loop's thread)."""
        self._wake.set()

    def stop(self) -> None:
        self.stopped = True
        self._wake.set()

    async def pause(self, delay: float | None) -> bool:
        """Wait up to `delay` seconds (None: until woken); True if the time ran out."""
        if delay is not None and delay <= 0:
            self._wake.clear()
            await asyncio.sleep(0)  # let the loop's other work in between
            return False
        timed_out = False
        try:
            await asyncio.wait_for(self._wake.wait(), delay)
        except TimeoutError:
            timed_out = True
        self._wake.clear()
        return timed_out


class Health:
    """Whether the database answers, as the duties see it: logged once per outage, not per
    failing step, and told to whoever needs to act when it comes back."""

    def __init__(self, log: Any, on_back: Callable[[], None], needs: str = "") -> None:
        self.log = log
        self.up = True
        self.error: str | None = None  # while down: why, in the server's words when it said
        self.needs = needs  # the connections the runner opens in all, said with every outage
        self._on_back = on_back
        self.on_down: Callable[[str], None] | None = None  # every failed step, by duty name
        self._ok_mono = time.monotonic()  # the last step that reached the database
        self._lost_mono: float | None = None  # the last success before the outage under way
        # (lost, back), monotonic: the last outage, from the last step that reached the
        # database to the first that did again; it explains ticks missed meanwhile
        self.last_outage: tuple[float, float] | None = None

    def down(self, exc: BaseException, duty: str) -> None:
        if self.on_down is not None:
            self.on_down(duty)
        self.error = str(exc)
        if self.up:
            self.log.error(
                "database unavailable; retrying with backoff",
                duty=duty,
                error=self.error,
                needs=self.needs,
            )
            self._lost_mono = self._ok_mono
        self.up = False

    def back(self) -> None:
        self._ok_mono = time.monotonic()
        if not self.up:
            self.up = True
            self.error = None
            if self._lost_mono is not None:
                self.last_outage = (self._lost_mono, self._ok_mono)
            self.log.info("database reachable again")
            self._on_back()


async def drive(
    duty: Duty,
    health: Health,
    log: Any,
    fail: Callable[[str], None],
    backoff: Backoff | None = None,
) -> None:
    """Run `duty` step after step until it is stopped. A database outage means backoff and
    retry, for as long as it lasts; any other error is logged with the duty's name and the
    step retried with backoff, and after MAX_FAILURES in a row the runner is stopped
    (`fail`), since a duty that keeps failing means the runner is not doing its work."""
    backoff = backoff or Backoff()
    failures = 0
    while not duty.stopped:
        try:
            delay = await duty.step()
        except asyncio.CancelledError:
            raise
        except DatabaseUnavailableError as exc:
            health.down(exc, duty.name)
            delay = backoff.next()
        except Exception as exc:
            failures += 1
            log.exception(
                "runner duty failed; retrying", duty=duty.name, failures=failures, error=repr(exc)
            )
            if failures >= MAX_FAILURES:
                fail(f"the {duty.name} duty failed {failures} times in a row: {exc!r}")
                return
            delay = backoff.next()
        else:
            failures = 0
            backoff.reset()
            health.back()
        if not duty.stopped:
            await duty.pause(delay)
