"""Out of connections, out loud: the server's reason a connection was refused, the jobs' pool
whose waits are bounded by `runner.job_pool_timeout`, and what a runner needs in all.

A pool only says it timed out ("couldn't get a connection after 10.00 sec") while the server
said why ("sorry, too many clients already", "too many connections for role ..."): each pool
here opens its connections through a class that remembers the last refusal, so the timeout
can be explained in the server's words, or as a pool whose connections are all in use.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg import AsyncConnection, Connection
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from .logs import RUNNER, get_logger


def server_reason(exc: BaseException) -> str:
    """What the server (or libpq) said, without the "connection to server at ..." preamble
    libpq puts before each host's FATAL."""
    text = str(exc).strip()
    if "FATAL:" in text:
        return text.rsplit("FATAL:", 1)[1].strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


class Refusals:
    """The latest reason a pool's connection attempt failed; None once one succeeds."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def refused(self, exc: BaseException) -> None:
        self.reason = server_reason(exc)

    def connected(self) -> None:
        self.reason = None


def recording_async(refusals: Refusals) -> type[AsyncConnection[Any]]:
    """An AsyncConnection class (for a pool's `connection_class`) that tells `refusals`."""

    class Recorded(AsyncConnection[Any]):
        @classmethod
        async def connect(cls, *args: Any, **kwargs: Any) -> Any:
            try:
                conn = await super().connect(*args, **kwargs)
            except psycopg.OperationalError as exc:
                refusals.refused(exc)
                raise
            refusals.connected()
            return conn

    return Recorded


def recording_sync(refusals: Refusals) -> type[Connection[Any]]:
    """`recording_async` for a blocking pool."""

    class Recorded(Connection[Any]):
        @classmethod
        def connect(cls, *args: Any, **kwargs: Any) -> Any:
            try:
                conn = super().connect(*args, **kwargs)
            except psycopg.OperationalError as exc:
                refusals.refused(exc)
                raise
            refusals.connected()
            return conn

    return Recorded


def pool_timeout_reason(name: str, max_size: int, size: int, refusals: Refusals) -> str:
    """Why a pool gave no connection in time: the server refused a new one, or all of its
    connections were in use."""
    if refusals.reason is not None:
        return f"the server refused pool '{name}' a connection: {refusals.reason}"
    return f"all {size} of pool '{name}''s connections (max_size {max_size}) were in use"


class JobPoolTimeout(PoolTimeout):
    """A job waited `runner.job_pool_timeout` for a connection of the jobs' pool in vain."""


class ConnectionWatch:
    """A runner's connection trouble as its probes and its log see it: the latest problem,
    logged once when it starts, until a connection is had again. Called from job threads
    and the control loop alike (plain attribute writes)."""

    def __init__(self, log: Any = None, needs: str = "", window: float = 60.0) -> None:
        self.log = log if log is not None else get_logger(RUNNER)
        self.needs = needs  # what this runner opens in all (see Runner.connections_needed)
        self.window = window  # a problem not seen again for this long is over (health's too)
        self._problem: str | None = None
        self._seen = 0.0  # monotonic time the problem was last seen

    @property
    def problem(self) -> str | None:
        """The problem under way: seen within `window` seconds and not cured since. A
        nightly job refused once does not leave the runner unready until the next night."""
        if self._problem is not None and time.monotonic() - self._seen > self.window:
            self._problem = None
        return self._problem

    def failed(self, problem: str) -> None:
        if self.problem is None:
            self.log.error("cannot get a database connection", error=problem, needs=self.needs)
        self._problem, self._seen = problem, time.monotonic()

    def ok(self) -> None:
        if self._problem is not None:
            self._problem = None
            self.log.info("database connections available again")


def _job_timeout_message(pool: Any, refusals: Refusals, timeout: float) -> str:
    why = pool_timeout_reason(pool.name, pool.max_size, pool.get_stats()["pool_size"], refusals)
    return (
        f"no connection from the jobs' pool '{pool.name}' within runner.job_pool_timeout "
        f"({timeout:g}s): {why}; raise the server's max_connections (or the role's or "
        "database's CONNECTION LIMIT), lower runner.concurrency, or raise "
        "runner.job_pool_timeout"
    )


class JobPool(ConnectionPool[Any]):
    """The sync jobs' pool (`ctx.pool`): a wait longer than its timeout fails the job with
    JobPoolTimeout naming the pool, the setting and the server's reason."""

    def __init__(
        self,
        *args: Any,
        refusals: Refusals,
        watch: ConnectionWatch | None,
        **kwargs: Any,
    ) -> None:
        self.refusals = refusals
        self.watch = watch
        super().__init__(*args, connection_class=recording_sync(refusals), **kwargs)

    def getconn(self, timeout: float | None = None) -> Any:
        try:
            conn = super().getconn(timeout)
        except PoolTimeout as exc:
            raise _job_timeout(self, self.refusals, self.watch, timeout, exc) from exc
        if self.watch is not None:
            self.watch.ok()
        return conn


class AsyncJobPool(AsyncConnectionPool[Any]):
    """`JobPool` for `async def` jobs (`ctx.apool`)."""

    def __init__(
        self,
        *args: Any,
        refusals: Refusals,
        watch: ConnectionWatch | None,
        **kwargs: Any,
    ) -> None:
        self.refusals = refusals
        self.watch = watch
        super().__init__(*args, connection_class=recording_async(refusals), **kwargs)

    async def getconn(self, timeout: float | None = None) -> Any:
        try:
            conn = await super().getconn(timeout)
        except PoolTimeout as exc:
            raise _job_timeout(self, self.refusals, self.watch, timeout, exc) from exc
        if self.watch is not None:
            self.watch.ok()
        return conn


def _job_timeout(
    pool: Any,
    refusals: Refusals,
    watch: ConnectionWatch | None,
    timeout: float | None,
    exc: PoolTimeout,
) -> JobPoolTimeout:
    if isinstance(exc, JobPoolTimeout):
        return exc
    message = _job_timeout_message(pool, refusals, pool.timeout if timeout is None else timeout)
    if watch is not None:
        watch.failed(message)
    return JobPoolTimeout(message)


__all__ = [
    "AsyncJobPool",
    "ConnectionWatch",
    "JobPool",
    "JobPoolTimeout",
    "Refusals",
    "pool_timeout_reason",
    "recording_async",
    "recording_sync",
    "server_reason",
]
