"""pgsched for applications: functions that take the caller's own psycopg connection.

Each runs in the caller's transaction (in a savepoint when one is open), so a request
commits or rolls back with the caller's own data; each works with a sync
`psycopg.Connection` (returns the value) and an `AsyncConnection` (returns an awaitable):

    run_id = pgsched.request_run(conn, "reports-send", params={"tenant": 42})
    status = pgsched.cancel_run(conn, run_id)
    run_id = await pgsched.request_run(aconn, "reports-send")

The SQL is sql/queries.sql's, the same the CLI and the dashboard run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any, overload

import psycopg
from psycopg import AsyncConnection, Connection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from .errors import PgschedError, UnknownJobError, UnknownRunError
from .queries import DEFAULT_SCHEMA, named_queries
from .store import translate_error

__all__ = ["cancel_run", "request_run"]


def _refused(exc: psycopg.Error, schema: str, job: str | None = None) -> PgschedError:
    if job is not None and isinstance(exc, psycopg.errors.ForeignKeyViolation):
        return UnknownJobError(
            f"unknown job '{job}': no row in {schema}.jobs; run `pgsched jobs list` to see the "
            "jobs, or `pgsched sync` after adding it"
        )
    return translate_error(exc, schema)


def _in_savepoint(conn: Connection[Any] | AsyncConnection[Any]) -> bool:
    """Inside the caller's open transaction: a savepoint, so an error leaves it usable. In
    autocommit: a transaction of its own. An idle connection outside autocommit: the
    statement opens the caller's transaction (`transaction()` would commit it)."""
    idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    return conn.autocommit or not idle


def _one(conn: Connection[Any], schema: str, name: str, params: dict[str, Any]) -> Any:
    query = named_queries(schema)[name]
    if _in_savepoint(conn):
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            cur.execute(query, params)
            return cur.fetchone()
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)
        return cur.fetchone()


async def _aone(conn: AsyncConnection[Any], schema: str, name: str, params: dict[str, Any]) -> Any:
    query = named_queries(schema)[name]
    if _in_savepoint(conn):
        async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query, params)
            return await cur.fetchone()
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchone()


@overload
def request_run(
    conn: Connection[Any],
    job_name: str,
    params: Mapping[str, Any] | None = None,
    *,
    schema: str = DEFAULT_SCHEMA,
) -> int: ...
@overload
def request_run(
    conn: AsyncConnection[Any],
    job_name: str,
    params: Mapping[str, Any] | None = None,
    *,
    schema: str = DEFAULT_SCHEMA,
) -> Awaitable[int]: ...
def request_run(
    conn: Connection[Any] | AsyncConnection[Any],
    job_name: str,
    params: Mapping[str, Any] | None = None,
    *,
    schema: str = DEFAULT_SCHEMA,
) -> int | Awaitable[int]:
    """Request a manual run of `job_name` with `params` (a JSON object, `ctx.params`); returns
    its id. A runner starts it once the caller's transaction commits (NOTIFY). An unknown job
    raises UnknownJobError; the caller's transaction stays usable."""
    values = {"name": job_name, "params": Jsonb(dict(params or {}))}
    if isinstance(conn, AsyncConnection):
        return _arequest_run(conn, schema, job_name, values)
    try:
        return int(_one(conn, schema, "request_run", values)["id"])
    except psycopg.Error as exc:
        raise _refused(exc, schema, job_name) from exc


async def _arequest_run(
    conn: AsyncConnection[Any], schema: str, job_name: str, values: dict[str, Any]
) -> int:
    try:
        return int((await _aone(conn, schema, "request_run", values))["id"])
    except psycopg.Error as exc:
        raise _refused(exc, schema, job_name) from exc


@overload
def cancel_run(
    conn: Connection[Any], run_id: int, *, by: str | None = None, schema: str = DEFAULT_SCHEMA
) -> str: ...
@overload
def cancel_run(
    conn: AsyncConnection[Any],
    run_id: int,
    *,
    by: str | None = None,
    schema: str = DEFAULT_SCHEMA,
) -> Awaitable[str]: ...
def cancel_run(
    conn: Connection[Any] | AsyncConnection[Any],
    run_id: int,
    *,
    by: str | None = None,
    schema: str = DEFAULT_SCHEMA,
) -> str | Awaitable[str]:
    """Cancel a run. Returns 'cancelled' (it was pending: it never starts), 'cancelling' (it is
    running: its runner tells the job, through `ctx.cancelled` and a cancelled task or
    worker, and ends it `cancelled`), or the final status it already had. `by` is recorded
    (default: the database user). A retry chain stops at a cancelled run."""
    values = {"id": run_id, "by": by or _user(conn)}
    if isinstance(conn, AsyncConnection):
        return _acancel_run(conn, schema, values)
    try:
        row = _one(conn, schema, "cancel_run", values)
        if row is not None:
            return "cancelled" if row["was"] == "pending" else "cancelling"
        return _final(_one(conn, schema, "run_status", values), run_id, schema)
    except psycopg.Error as exc:
        raise _refused(exc, schema) from exc


async def _acancel_run(conn: AsyncConnection[Any], schema: str, values: dict[str, Any]) -> str:
    try:
        row = await _aone(conn, schema, "cancel_run", values)
        if row is not None:
            return "cancelled" if row["was"] == "pending" else "cancelling"
        return _final(await _aone(conn, schema, "run_status", values), values["id"], schema)
    except psycopg.Error as exc:
        raise _refused(exc, schema) from exc


def _final(row: Any, run_id: int, schema: str) -> str:
    if row is None:
        raise UnknownRunError(f"no run {run_id} in {schema}.runs")
    return str(row["status"])


def _user(conn: Connection[Any] | AsyncConnection[Any]) -> str:
    return conn.info.user or "unknown"
