"""The object a job receives: its run's identity, a logger, database access and cancellation."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the definitions layer never imports database code at run time
    from psycopg import AsyncConnection, Connection
    from psycopg_pool import AsyncConnectionPool, ConnectionPool

from .states import Trigger

_EVENT_LOCK = threading.Lock()


class Cancelled(Exception):
    """Raised by `JobContext.raise_if_cancelled` once the runner has given up on the run."""


@dataclass
class JobContext:
    """Everything a running job may use. Long jobs should poll `cancelled` (or call
    `raise_if_cancelled`) so a timeout or shutdown can stop them; Python cannot kill a thread."""

    run_id: int
    job_name: str
    trigger: Trigger
    scheduled_for: datetime | None
    attempt: int
    params: Mapping[str, Any]
    log: Any
    _pool_source: Callable[[], ConnectionPool[Any]] = field(repr=False)
    _apool_source: Callable[[], AsyncConnectionPool[Any]] = field(repr=False)
    _cancel_event: threading.Event | None = field(default=None, repr=False)
    cancel_reason: str | None = None
    schedule_key: str = "default"  # the schedule whose tick this is (pgsched.schedules.key)

    @property
    def _cancel(self) -> threading.Event:
        """Made on first use: most runs never look, and an Event costs more than a no-op run."""
        if self._cancel_event is None:
            with _EVENT_LOCK:
                if self._cancel_event is None:
                    self._cancel_event = threading.Event()
        return self._cancel_event

    @property
    def pool(self) -> ConnectionPool[Any]:
        """A psycopg_pool.ConnectionPool shared by the runner's sync jobs."""
        return self._pool_source()

    @property
    def apool(self) -> AsyncConnectionPool[Any]:
        """A psycopg_pool.AsyncConnectionPool for `async def` jobs."""
        return self._apool_source()

    def connection(self) -> AbstractContextManager[Connection[Any]]:
        """A pooled connection; the block is one transaction, committed when it exits cleanly."""
        return self.pool.connection()

    def aconnection(self) -> AbstractAsyncContextManager[AsyncConnection[Any]]:
        return self.apool.connection()

    @property
    def cancelled(self) -> bool:
        return self._cancel_event is not None and self._cancel_event.is_set()

    def cancel(self, reason: str) -> None:
        self.cancel_reason = reason
        self._cancel.set()

    def raise_if_cancelled(self) -> None:
        if self.cancelled:
            raise Cancelled(self.cancel_reason or "cancelled")

    def wait_cancelled(self, timeout: float | None = None) -> bool:
        """Sleep up to `timeout` seconds, waking early on cancellation; True if cancelled."""
        return self._cancel.wait(timeout)

    async def asleep(self, seconds: float) -> None:
        """Async sleep that ends early (raising Cancelled) when the run is cancelled."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while loop.time() < deadline:
            self.raise_if_cancelled()
            await asyncio.sleep(min(0.05, deadline - loop.time()))
        self.raise_if_cancelled()
