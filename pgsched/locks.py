"""Taking sync's and migration's locks with a bounded, reported wait.

Both are transaction-scoped table locks that only roles with write access can take (see
sql/queries.sql: lock_sync, lock_migrate), taken inside the caller's transaction under a
savepoint with a transaction-local `lock_timeout`. A wait that lasts past `REPORT_AFTER` is
logged once with the sessions holding the lock (pid, user, application name, since when),
then the wait goes on until `timeout`, when `LockTimeoutError` names them and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection, Connection, errors
from psycopg.rows import dict_row

from .errors import ConfigError, LockTimeoutError
from .logs import get_logger
from .queries import named_queries, quote_ident

REPORT_AFTER = 5.0  # seconds of waiting before the holders are logged


@dataclass(frozen=True)
class LockWait:
    """One lock to take: `query` names a block of queries.sql, `relation` the table it locks."""

    what: str  # "sync", "migration"
    query: str
    relation: str
    timeout: float
    fix_denied: str  # what to do when this role may not take the lock

    def steps(self) -> list[float]:
        """The lock_timeout of each attempt: a short one to report after (REPORT_AFTER, or
        half of a shorter timeout), then the rest."""
        first = min(REPORT_AFTER, self.timeout / 2)
        return [first, self.timeout - first]

    def denied(self, exc: errors.InsufficientPrivilege) -> ConfigError:
        return ConfigError(
            f"{self.what} cannot lock {self.relation} ({exc.diag.message_primary}); "
            f"{self.fix_denied}"
        )

    def report(self, holders: list[dict[str, Any]], waited: float) -> None:
        get_logger(__name__).warning(
            f"{self.what} is waiting for a lock on {self.relation}",
            waited_seconds=round(waited, 1),
            gives_up_after=self.timeout,
            holders=describe(holders),
        )

    def failure(self, holders: list[dict[str, Any]]) -> LockTimeoutError:
        who = describe(holders) or "a session that has since let go (try again)"
        first = next((str(h["pid"]) for h in holders if h.get("pid")), "PID")  # the oldest
        return LockTimeoutError(
            f"{self.what} gave up after waiting {self.timeout:g}s for its lock on "
            f"{self.relation}, held by {who}; end that transaction (or "
            f"SELECT pg_terminate_backend({first}) as its owner or a superuser), or raise "
            "database.lock_timeout in the profile"
        )


def describe(holders: list[dict[str, Any]]) -> str:
    return "; ".join(
        f"pid {h['pid']} (user {h['user']!s}, application_name {h['application_name']!r}, "
        f"{h['mode']}{'' if h['granted'] else ' requested, queued ahead of us'}, {h['state']}"
        + (f" in a transaction for {h['for_seconds']:.0f}s" if h["for_seconds"] else "")
        + ")"
        for h in holders
    )


def _ms(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


async def acquire(conn: AsyncConnection[Any], wait: LockWait, schema: str) -> None:
    """Take `wait`'s lock in the open transaction of `conn`, or raise LockTimeoutError."""
    q = named_queries(schema)
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(q["get_lock_timeout"])
    previous = (await cur.fetchone() or {})["lock_timeout"]
    holders: list[dict[str, Any]] = []
    waited = 0.0
    for step in wait.steps():
        await cur.execute("SAVEPOINT pgsched_lock")
        try:
            await cur.execute(q["set_lock_timeout"], {"value": _ms(step)})
            await cur.execute(q[wait.query])
        except errors.InsufficientPrivilege as exc:
            raise wait.denied(exc) from exc
        except errors.LockNotAvailable:
            await cur.execute("ROLLBACK TO SAVEPOINT pgsched_lock")
            await cur.execute(q["lock_holders"], {"relation": wait.relation})
            holders = await cur.fetchall()
            waited += step
            if waited < wait.timeout:
                wait.report(holders, waited)
            continue
        await cur.execute("RELEASE SAVEPOINT pgsched_lock")
        await cur.execute(q["set_lock_timeout"], {"value": previous})
        return
    raise wait.failure(holders)


def acquire_sync(conn: Connection[Any], wait: LockWait, schema: str) -> None:
    """`acquire` for a blocking connection (migrations run on one)."""
    q = named_queries(schema)
    cur = conn.cursor(row_factory=dict_row)
    previous = (cur.execute(q["get_lock_timeout"]).fetchone() or {})["lock_timeout"]
    holders: list[dict[str, Any]] = []
    waited = 0.0
    for step in wait.steps():
        cur.execute("SAVEPOINT pgsched_lock")
        try:
            cur.execute(q["set_lock_timeout"], {"value": _ms(step)})
            cur.execute(q[wait.query])
        except errors.InsufficientPrivilege as exc:
            raise wait.denied(exc) from exc
        except errors.LockNotAvailable:
            cur.execute("ROLLBACK TO SAVEPOINT pgsched_lock")
            holders = cur.execute(q["lock_holders"], {"relation": wait.relation}).fetchall()
            waited += step
            if waited < wait.timeout:
                wait.report(holders, waited)
            continue
        cur.execute("RELEASE SAVEPOINT pgsched_lock")
        cur.execute(q["set_lock_timeout"], {"value": previous})
        return
    raise wait.failure(holders)


def bootstrap_schema(conn: Connection[Any], schema: str, attempts: int = 5) -> None:
    """Create the schema and the version table (the migration lock) if they are missing, in a
    transaction of their own. No lock guards this step: two first migrations at once may both
    try, and the loser's duplicate-key error just means the other created them first."""
    q = named_queries(schema)
    table = _relation(schema, "alembic_version")
    for attempt in range(attempts):
        try:
            row = conn.execute(q["schema_bootstrapped"], {"table": table}).fetchone()
            if row is not None and row[0]:
                conn.commit()
                return
            conn.execute(q["bootstrap_schema"])
            conn.commit()
            return
        except (errors.UniqueViolation, errors.DuplicateSchema, errors.DuplicateTable):
            conn.rollback()
            if attempt == attempts - 1:
                raise


def sync_lock(schema: str, timeout: float) -> LockWait:
    return LockWait(
        "sync",
        "lock_sync",
        _relation(schema, "sync_lock"),
        timeout,
        "a role that syncs needs UPDATE on it: `pgsched grant runner ROLE` as the schema's "
        "owner (revision 0004 added it), or `pgsched migrate` if the table is missing",
    )


def migration_lock(schema: str, timeout: float) -> LockWait:
    return LockWait(
        "migration",
        "lock_migrate",
        _relation(schema, "alembic_version"),
        timeout,
        "run `pgsched migrate` as the schema's owner (runners can start with --no-migrate)",
    )


def _relation(schema: str, table: str) -> str:
    return f"{quote_ident(schema)}.{table}"


__all__ = [
    "REPORT_AFTER",
    "LockTimeoutError",
    "LockWait",
    "acquire",
    "acquire_sync",
    "bootstrap_schema",
    "migration_lock",
    "sync_lock",
]
