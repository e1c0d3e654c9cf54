"""psycopg's errors as pgsched's own, in one place. By meaning (SQLSTATE class) for what
the server says of itself, and by constraint name for pgsched's own schema: a foreign key to
jobs.name is an unknown job whichever statement hit it, a duplicate (job, key) of schedules
an existing schedule. Nothing above this module handles driver classes (procrastinate's
`wrap_exceptions` is the model)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

import psycopg
from psycopg import errors
from psycopg_pool import PoolTimeout

from .errors import (
    DatabaseRefusedError,
    DatabaseUnavailableError,
    PermissionDeniedError,
    PgschedError,
    ScheduleExistsError,
    SchemaMissingError,
    UnknownJobError,
)

__all__ = ["translate_error", "unknown_job_message"]

# SQLSTATEs that mean the server went away or is not there (yet): a retry later may work.
# https://www.postgresql.org/docs/current/errcodes-appendix.html (class 08, 57P01-57P03)
_GONE = ("08", "57P01", "57P02", "57P03")

# Foreign keys to pgsched.jobs (sql/schema.sql): a row for a job that has none.
UNKNOWN_JOB_CONSTRAINTS = frozenset(
    {"runs_job_name_fkey", "schedules_job_name_fkey", "definitions_job_name_fkey"}
)
SCHEDULE_EXISTS_CONSTRAINT = "schedules_job_key"
# The server's detail, when the role may read the table: `Key (job_name)=(x) is not present`
_KEY_DETAIL = re.compile(r"^Key \((?P<columns>[^)]*)\)=\((?P<values>.*)\) ")


def unknown_job_message(name: str, schema: str, known: Iterable[str] = ()) -> str:
    """The one wording of "no such job", with the closest known name when one is given."""
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return (
        f"unknown job '{name}': no row in {schema}.jobs; {hint}run `pgsched jobs list` to see "
        "the jobs, or `pgsched sync` after adding it"
    )


def _key_values(exc: psycopg.Error) -> dict[str, str]:
    found = _KEY_DETAIL.match(exc.diag.message_detail or "")
    if found is None:
        return {}
    columns = [c.strip() for c in found["columns"].split(",")]
    values = [v.strip() for v in found["values"].split(",", len(columns) - 1)]
    return dict(zip(columns, values, strict=False))


def translate_error(
    exc: BaseException, schema: str, *, job: str | None = None, key: str | None = None
) -> PgschedError:
    """`exc` as pgsched's own error. `job` and `key` name what the statement wrote, for a
    constraint error whose detail the server leaves out (a role that may not read the
    table gets none)."""
    if isinstance(exc, PoolTimeout | psycopg.InterfaceError):
        return DatabaseUnavailableError(f"database unavailable: {exc}")
    assert isinstance(exc, psycopg.Error)
    state = exc.sqlstate
    primary = (exc.diag.message_primary if state else None) or str(exc).strip()
    if (state is None and isinstance(exc, psycopg.OperationalError)) or (
        state is not None and state.startswith(_GONE)
    ):
        return DatabaseUnavailableError(f"database unavailable: {primary}", sqlstate=state)
    constraint = exc.diag.constraint_name if state else None
    if constraint in UNKNOWN_JOB_CONSTRAINTS:
        name = job or _key_values(exc).get("job_name") or "?"
        return UnknownJobError(unknown_job_message(name, schema))
    if constraint == SCHEDULE_EXISTS_CONSTRAINT:
        found = _key_values(exc)
        job, key = job or found.get("job_name", "?"), key or found.get("key", "?")
        return ScheduleExistsError(
            f"schedule {key!r} of job {job!r} exists already: pass if_exists='replace' to "
            "change it, or 'keep' to leave it as it is"
        )
    if isinstance(exc, errors.InsufficientPrivilege):
        return PermissionDeniedError(
            f"permission denied ({primary}); grant this role what it needs with "
            "`pgsched grant runner|requester|reader ROLE` as the schema owner",
            sqlstate=state,
        )
    if isinstance(
        exc,
        errors.UndefinedTable
        | errors.UndefinedColumn
        | errors.UndefinedFunction
        | errors.InvalidSchemaName,
    ):
        return SchemaMissingError(
            f"the {schema} schema is missing or out of date ({primary}); run `pgsched migrate`",
            sqlstate=state,
        )
    return DatabaseRefusedError(f"the database refused the statement: {primary}", sqlstate=state)
