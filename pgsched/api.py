"""pgsched for applications: functions that take the caller's own psycopg connection.

Each runs in the caller's transaction (in a savepoint when one is open), so a request
commits or rolls back with the caller's own data; each works with a sync
`psycopg.Connection` (returns the value) and an `AsyncConnection` (returns an awaitable):

    run_id = pgsched.request_run(conn, "reports-send", params={"tenant": 42})
    status = pgsched.cancel_run(conn, run_id)
    sched = pgsched.add_schedule(conn, "reports-send", "tenant-42", "0 0 9 * * 1-5",
                                 timezone="Europe/Berlin", params={"tenant": 42})
    pgsched.remove_schedule(conn, "reports-send", "tenant-42")
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

from .dberrors import translate_error, unknown_job_message
from .errors import (
    ConfigError,
    PgschedError,
    UnknownJobError,
    UnknownRunError,
)
from .queries import DEFAULT_SCHEMA, named_queries
from .schedules import DEFAULT_KEY, IfExists, Schedule, check_schedule_row

__all__ = ["add_schedule", "cancel_run", "list_schedules", "remove_schedule", "request_run"]


def _refused(exc: psycopg.Error, schema: str, job: str | None = None) -> PgschedError:
    return translate_error(exc, schema, job=job)


def _in_savepoint(conn: Connection[Any] | AsyncConnection[Any]) -> bool:
    """Inside the caller's open transaction: a savepoint, so an error leaves it usable. In
    autocommit: a transaction of its own. An idle connection outside autocommit: the
    statement opens the caller's transaction (`transaction()` would commit it)."""
    idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    return conn.autocommit or not idle


def _one(
    conn: Connection[Any], schema: str, name: str, params: dict[str, Any], first: str = ""
) -> Any:
    """The first row of query `name`, after query `first` (if any) in the same transaction."""
    names = [n for n in (first, name) if n]
    queries = named_queries(schema)
    if _in_savepoint(conn):
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            for n in names:
                cur.execute(queries[n], params)
            return cur.fetchone()
    with conn.cursor(row_factory=dict_row) as cur:
        for n in names:
            cur.execute(queries[n], params)
        return cur.fetchone()


async def _aone(
    conn: AsyncConnection[Any], schema: str, name: str, params: dict[str, Any], first: str = ""
) -> Any:
    names = [n for n in (first, name) if n]
    queries = named_queries(schema)
    if _in_savepoint(conn):
        async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            for n in names:
                await cur.execute(queries[n], params)
            return await cur.fetchone()
    async with conn.cursor(row_factory=dict_row) as cur:
        for n in names:
            await cur.execute(queries[n], params)
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
        row = _one(conn, schema, "cancel_run", values, first="lock_run")
        if row is not None:
            return "cancelled" if row["was"] == "pending" else "cancelling"
        return _final(_one(conn, schema, "run_status", values), run_id, schema)
    except psycopg.Error as exc:
        raise _refused(exc, schema) from exc


async def _acancel_run(conn: AsyncConnection[Any], schema: str, values: dict[str, Any]) -> str:
    try:
        row = await _aone(conn, schema, "cancel_run", values, first="lock_run")
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


# --- schedules ------------------------------------------------------------------------------

_IF_EXISTS = {"error": "insert_schedule", "replace": "replace_schedule", "keep": "keep_schedule"}


def _schedule_values(
    job_name: str,
    key: str,
    cron: str,
    timezone: str | None,
    params: Mapping[str, Any] | None,
    if_exists: str,
) -> dict[str, Any]:
    """Everything add_schedule can check before the database is asked."""
    if if_exists not in _IF_EXISTS:
        raise ConfigError(f"if_exists must be 'error', 'replace' or 'keep', got {if_exists!r}")
    _check_key(job_name, key)
    if params is not None and not isinstance(params, Mapping):
        raise ConfigError(
            f"schedule {key!r} of job {job_name!r}: params must be a mapping (a JSON object), "
            f"got {type(params).__name__}"
        )
    if timezone is not None:
        check_schedule_row(job_name, key, cron, timezone)  # before the round trip
    return {
        "job": job_name,
        "key": key,
        "cron": cron,
        "timezone": timezone,
        "params": Jsonb(dict(params or {})),
    }


def _check_key(job_name: str, key: str) -> None:
    if not isinstance(key, str) or not key:
        raise ConfigError(f"job {job_name!r}: a schedule key must be a non-empty string")
    if key == DEFAULT_KEY:
        raise ConfigError(
            f"schedule 'default' of job {job_name!r} is the job's code schedule: change it in "
            "code or in the profile's `scheduler.jobs` entry, or pick another key"
        )


def _with_first_tick(values: dict[str, Any], job_row: Any, schema: str) -> dict[str, Any]:
    """The zone in effect and the first tick after the database's clock, so the row is valid
    the moment it commits (no runner has to validate it)."""
    if job_row is None:
        raise UnknownJobError(unknown_job_message(values["job"], schema))
    zone = values["timezone"] or job_row["zone"]
    cron = check_schedule_row(values["job"], values["key"], values["cron"], zone)
    return {**values, "zone": zone, "next_run_at": cron.next_after(job_row["db_now"])}


def _schedule_refused(exc: psycopg.Error, values: dict[str, Any], schema: str) -> PgschedError:
    return translate_error(exc, schema, job=values["job"], key=values["key"])


@overload
def add_schedule(
    conn: Connection[Any],
    job_name: str,
    key: str,
    cron: str,
    *,
    timezone: str | None = None,
    params: Mapping[str, Any] | None = None,
    if_exists: IfExists = "error",
    schema: str = DEFAULT_SCHEMA,
) -> Schedule: ...
@overload
def add_schedule(
    conn: AsyncConnection[Any],
    job_name: str,
    key: str,
    cron: str,
    *,
    timezone: str | None = None,
    params: Mapping[str, Any] | None = None,
    if_exists: IfExists = "error",
    schema: str = DEFAULT_SCHEMA,
) -> Awaitable[Schedule]: ...
def add_schedule(
    conn: Connection[Any] | AsyncConnection[Any],
    job_name: str,
    key: str,
    cron: str,
    *,
    timezone: str | None = None,
    params: Mapping[str, Any] | None = None,
    if_exists: IfExists = "error",
    schema: str = DEFAULT_SCHEMA,
) -> Schedule | Awaitable[Schedule]:
    """Add a runtime schedule of `job_name`: `cron` (same rules as in code) in `timezone`
    (default: the job's), handing `params` to the job as `ctx.params` on every tick. Validated
    before anything is written (CronError naming the key and the expression); it fires once
    the caller's transaction commits. `if_exists`: "error" (ScheduleExistsError), "replace"
    (the new expression, zone and params take effect at once) or "keep" (the row stays as it
    is, and is returned). Returns the row, with `next_fire_times(n)` as a preview."""
    values = _schedule_values(job_name, key, cron, timezone, params, if_exists)
    query = _IF_EXISTS[if_exists]
    if isinstance(conn, AsyncConnection):
        return _aadd_schedule(conn, schema, query, values)
    try:
        job_row = _one(conn, schema, "schedule_job", {"name": job_name})
        values = _with_first_tick(values, job_row, schema)
        row = _one(conn, schema, query, values) or _one(conn, schema, "get_schedule", values)
    except psycopg.Error as exc:
        raise _schedule_refused(exc, values, schema) from exc
    return Schedule.from_row(row)


async def _aadd_schedule(
    conn: AsyncConnection[Any], schema: str, query: str, values: dict[str, Any]
) -> Schedule:
    try:
        job_row = await _aone(conn, schema, "schedule_job", {"name": values["job"]})
        values = _with_first_tick(values, job_row, schema)
        row = await _aone(conn, schema, query, values) or await _aone(
            conn, schema, "get_schedule", values
        )
    except psycopg.Error as exc:
        raise _schedule_refused(exc, values, schema) from exc
    return Schedule.from_row(row)


@overload
def remove_schedule(
    conn: Connection[Any], job_name: str, key: str, *, schema: str = DEFAULT_SCHEMA
) -> bool: ...
@overload
def remove_schedule(
    conn: AsyncConnection[Any], job_name: str, key: str, *, schema: str = DEFAULT_SCHEMA
) -> Awaitable[bool]: ...
def remove_schedule(
    conn: Connection[Any] | AsyncConnection[Any],
    job_name: str,
    key: str,
    *,
    schema: str = DEFAULT_SCHEMA,
) -> bool | Awaitable[bool]:
    """Remove a runtime schedule: it stops firing once the caller's transaction commits, its
    ticks still waiting to start are cancelled, and its history stays. Returns False when
    there was no such schedule."""
    _check_key(job_name, key)
    values = {"job": job_name, "key": key}
    if isinstance(conn, AsyncConnection):
        return _aremove_schedule(conn, schema, values)
    try:
        return _one(conn, schema, "remove_schedule", values) is not None
    except psycopg.Error as exc:
        raise _refused(exc, schema) from exc


async def _aremove_schedule(
    conn: AsyncConnection[Any], schema: str, values: dict[str, Any]
) -> bool:
    try:
        return await _aone(conn, schema, "remove_schedule", values) is not None
    except psycopg.Error as exc:
        raise _refused(exc, schema) from exc


@overload
def list_schedules(
    conn: Connection[Any],
    job_name: str | None = None,
    *,
    limit: int = 10_000,
    schema: str = DEFAULT_SCHEMA,
) -> list[Schedule]: ...
@overload
def list_schedules(
    conn: AsyncConnection[Any],
    job_name: str | None = None,
    *,
    limit: int = 10_000,
    schema: str = DEFAULT_SCHEMA,
) -> Awaitable[list[Schedule]]: ...
def list_schedules(
    conn: Connection[Any] | AsyncConnection[Any],
    job_name: str | None = None,
    *,
    limit: int = 10_000,
    schema: str = DEFAULT_SCHEMA,
) -> list[Schedule] | Awaitable[list[Schedule]]:
    """The schedules of `job_name` (default: of every job), the code/profile one first, then
    by key; each with its `error` when it cannot fire."""
    values = {"job": job_name, "limit": limit}
    if isinstance(conn, AsyncConnection):
        return _alist_schedules(conn, schema, values)
    query = named_queries(schema)["list_schedules"]
    try:
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(query, values)
            return [Schedule.from_row(r) for r in cur.fetchall()]
    except psycopg.Error as exc:
        raise _refused(exc, schema) from exc


async def _alist_schedules(
    conn: AsyncConnection[Any], schema: str, values: dict[str, Any]
) -> list[Schedule]:
    query = named_queries(schema)["list_schedules"]
    try:
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query, values)
            return [Schedule.from_row(r) for r in await cur.fetchall()]
    except psycopg.Error as exc:
        raise _refused(exc, schema) from exc
