"""LISTEN/NOTIFY: wake the claimer when a request is inserted or a schedule changes, the
schedule validation when rows are written by SQL, the cancel watch when a run is cancelled.

Only a wake-up: what is due is always read from the tables, and the claimer's slow poll
covers a lost notification (and is the only mechanism with `listen: false`).
"""

from __future__ import annotations

from ..store import Store
from .claiming import Claimer
from .duty import Duty


class Listener(Duty):
    name = "listen"
    interruptible = True

    def __init__(self, store: Store, claimer: Claimer, cancels: Duty, schedules: Duty) -> None:
        super().__init__()
        self.store = store
        self.claimer = claimer
        self.cancels = cancels
        self.schedules = schedules

    async def step(self) -> float | None:
        async for payload in self.store.notifications():
            if payload in ("listening", "jobs", "schedules"):
                # (Re)connected, so notifications may have been lost; or a schedule changed,
                # was added by SQL (to validate), or was validated by another runner.
                self.claimer.ticks_changed()
                if payload != "jobs":
                    self.schedules.wake()
                if payload == "listening":
                    self.cancels.wake()
            elif payload == "cancel":
                self.cancels.wake()
            else:
                self.claimer.wake()
            if self.stopped:
                break
        return 0.0
