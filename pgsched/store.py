"""The one place that talks to PostgreSQL: every query is a named block of sql/queries.sql.

The runner and the CLI speak in verbs (`claim`, `finish`, `reap_lost`, `sync`), never in SQL.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection, IsolationLevel, errors, sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from .clock import DatabaseClock
from .connections import Refusals, pool_timeout_reason, recording_async
from .dberrors import translate_error, unknown_job_message
from .errors import ConfigError, DatabaseUnavailableError, UnknownJobError
from .locks import acquire, sync_lock
from .planning import DueJob, JobPlan
from .queries import DEFAULT_SCHEMA, channel_for, named_queries
from .registry import JobDefinition, Registry
from .runs import ClaimedRun, RunOutcome
from .schedules import Schedule, first_tick, resolve
from .settings import SYNCED_SETTINGS
from .topology import Topology

Row = dict[str, Any]
T = TypeVar("T")

# A statement sent in autocommit mode runs at the server's default isolation; under
# `repeatable read` or `serializable` an UPDATE of a row another runner changed since the
# statement began fails (40001) where READ COMMITTED would re-check the row. It rolled back
# whole, so sending it again is the same as sending it once. Likewise one cut short by a
# short `lock_timeout` of the team's while a claim or a result held the row for a moment.
_SERIALIZATION_RETRIES = 5

# Shorter than this, a database's or role's statement_timeout can cancel statements pgsched
# does not lift it for: a sync of many jobs, a batch of schedule validation, a migration.
LONGEST_STATEMENT = 60.0


def setting_conflicts(row: Row) -> list[str]:
    """What in the session defaults of `session_timeouts` conflicts with pgsched, each naming
    the setting and the fix. Claims and results lift the timeouts for their own
    transactions (plan_by_index), so only what they cannot reach is named."""
    conflicts = []
    timeout = row["statement_timeout_ms"]
    if 0 < timeout < LONGEST_STATEMENT * 1000:
        role = sql.Identifier(row["role"]).as_string(None)
        conflicts.append(
            f"statement_timeout is {row['statement_timeout_text']} for role {row['role']} on "
            f"database {row['database']}: pgsched lifts it in claims and results, but a sync "
            "of many jobs, a batch of schedule validation or a migration can run longer and "
            f"would be cancelled; fix: ALTER ROLE {role} SET statement_timeout = 0 (or at "
            f"least {LONGEST_STATEMENT:g}s), or give pgsched a role of its own"
        )
    return conflicts


def _due_mono(run: ClaimedRun, low: float, now: float) -> float:
    """When a tick claimed ahead of its time is due, on this process's monotonic clock, or
    0.0 if it is due already; `low` is the lowest the database clock's offset from it may be
    (`DatabaseClock`), so this is never early."""
    if run.scheduled_for is None:
        return 0.0
    due = run.scheduled_for.timestamp() - low
    return due if due > now else 0.0


@dataclass(frozen=True)
class PendingClaim:
    """What one request claim got: runs started, and runs (id, job, schedule key) of jobs that
    do not allow overlap, still pending, for `Store.start_exclusive`."""

    started: list[ClaimedRun]
    exclusive: list[tuple[int, str, str]]


@dataclass(frozen=True)
class SyncReport:
    inserted: list[str]
    updated: list[str]  # existing rows the sync changed
    orphaned: list[str]
    unchanged: int = 0
    code_version: str = ""
    defined_elsewhere: list[str] = field(default_factory=list)  # changed, and live elsewhere


def _claimed(rows: Sequence[Row], sent_mono: float) -> list[ClaimedRun]:
    return [
        ClaimedRun(
            r["id"],
            r["job_name"],
            r["trigger"],
            r["scheduled_for"],
            r["attempt"],
            r["params"] or {},  # the claims return NULL for no params: one JSON parse less
            r["lease"],
            r["claimed_at"],
            sent_mono,
            schedule_key=r["schedule_key"],
        )
        for r in rows
        if r["status"] == "running"
    ]


async def check_reachable(
    dsn: str, schema: str, timeout: float = 2.0, connect_kwargs: dict[str, Any] | None = None
) -> None:
    """Connect once and close, or raise DatabaseUnavailableError with libpq's reason (the
    host, the port, refused or timed out)."""
    try:
        conn = await AsyncConnection.connect(
            dsn, connect_timeout=max(2, round(timeout)), **(connect_kwargs or {})
        )
    except (psycopg.Error, PoolTimeout) as exc:
        raise translate_error(exc, schema) from exc
    await conn.close()


class TickClaim:
    """Steps of one tick claim inside its transaction (see `Store.tick_claim`)."""

    def __init__(
        self,
        conn: AsyncConnection[Any],
        q: dict[str, str],
        runner_id: str,
        code_version: str,
        clock: DatabaseClock,
    ) -> None:
        self._conn = conn
        self._clock = clock
        self._q = q
        self._runner_id = runner_id
        self._code_version = code_version
        self._cur = conn.cursor(row_factory=dict_row)
        self._sent = 0.0
        self._recorded = False
        self.claimed: list[ClaimedRun] = []

    async def lock_due_jobs(
        self, free: int, ahead: int, lookahead: float, lease_timeout: float
    ) -> list[DueJob]:
        """Lock due schedules (up to `free`) and those due within `lookahead` seconds (up to
        `ahead` and this runner's fair share of them among the runners alive within
        `lease_timeout`), with what the planner needs: running or queued runs of each,
        read in a statement of its own once the rows are locked, so the overlap policy sees
        what other runners committed before they let go of them."""
        params = {
            "runner": self._runner_id,
            "code_version": self._code_version,
            "limit": free,
            "ahead": ahead,
            "lookahead": lookahead if ahead else 0.0,
            "lease_timeout": lease_timeout,
        }
        await self._cur.execute(self._q["lock_due_jobs"], params)
        locked = await self._cur.fetchall()
        if not locked:
            return []
        names = [r["name"] for r in locked]
        keys = [r["key"] for r in locked]
        await self._cur.execute(self._q["job_activity"], {"names": names, "keys": keys})
        activity = {(r["name"], r["key"]): r for r in await self._cur.fetchall()}
        due = []
        for r in locked:
            seen = activity[(r["name"], r["key"])]
            due.append(DueJob(**r, busy=seen["busy"], queued=seen["queued"]))
        return due

    async def record(self, plans: list[JobPlan]) -> None:
        """Advance next_run_at and write every tick's row; sent, not waited for: its reply
        comes with the COMMIT's."""
        if not plans:
            return
        self._sent = time.monotonic()
        await self._cur.execute(self._q["record_ticks"], tick_params(self._runner_id, plans))
        self._recorded = True

    async def _committed(self) -> None:
        """After the COMMIT: the runs this runner now holds, each with when it is due."""
        if not self._recorded:
            return
        claimed = _claimed(await self._cur.fetchall(), self._sent)
        inserted = time.monotonic()
        if all(_due_mono(run, run.claimed_at - inserted, inserted) == 0.0 for run in claimed):
            self.claimed = claimed  # all due: they start now, anchored at the INSERT's clock
            return
        # Ticks claimed ahead: a clock reading of its own, one short round trip after the
        # commit, since they are due to the millisecond and may not start a moment early.
        try:
            sent = time.monotonic()
            row = await (await self._conn.execute(self._q["clock"])).fetchone()
            received = time.monotonic()
        except psycopg.Error:
            # Committed: never strand them for want of a tighter clock. The INSERT's own
            # clock and its reply time make a looser anchor, late rather than early.
            self.claimed = [
                replace(run, start_mono=_due_mono(run, run.claimed_at - inserted, inserted))
                for run in claimed
            ]
            return
        assert row is not None
        low, high = self._clock.add(sent, row[0].timestamp(), received)
        self.claimed = [
            replace(
                run,
                claimed_at=sent + high,
                claimed_mono=sent,
                start_mono=_due_mono(run, low, received),
            )
            for run in claimed
        ]


async def _read_committed(conn: AsyncConnection[Any]) -> None:
    """Every BEGIN of pgsched's own connections says READ COMMITTED, whatever the database's
    `default_transaction_isolation`: claims lock with SKIP LOCKED and update rows other runners
    just changed, which a repeatable read or serializable snapshot refuses (40001). Carried
    by each BEGIN, not a session SET: it holds behind a transaction pooler too. Client-side
    only: no round trip."""
    await conn.set_isolation_level(IsolationLevel.READ_COMMITTED)


class PooledSchema:
    """A connection pool to one pgsched schema whose connections translate psycopg's errors
    into pgsched's own: the base of every store-layer class (Store, insight.Insight)."""

    def __init__(
        self,
        dsn: str,
        schema: str,
        *,
        max_size: int,
        name: str,
        connect_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.dsn = dsn
        self.schema = schema
        self.refusals = Refusals()  # why the server refused the pool a connection, lately
        self.pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            dsn,
            min_size=1,
            max_size=max_size,
            open=False,
            kwargs={"autocommit": True, **(connect_kwargs or {})},
            timeout=10,
            name=name,
            configure=_read_committed,
            connection_class=recording_async(self.refusals),
        )

    async def open(self, wait: bool = True, timeout: float = 10.0) -> None:
        try:
            await self.pool.open(wait=wait, timeout=timeout)
        except PoolTimeout as exc:
            raise self._pool_timeout(timeout) from exc
        except psycopg.Error as exc:
            raise translate_error(exc, self.schema) from exc

    def _pool_timeout(self, waited: float) -> DatabaseUnavailableError:
        """A pool timeout in the server's words (a pool alone says only that it timed out)."""
        pool = self.pool
        why = pool_timeout_reason(
            pool.name, pool.max_size, pool.get_stats()["pool_size"], self.refusals
        )
        return DatabaseUnavailableError(
            f"database unavailable: no connection within {waited:g}s: {why}"
        )

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        """A pooled connection; whatever psycopg raises inside comes out as pgsched's own."""
        if self.pool.closed:  # e.g. mounted in a host app whose lifespan never opened it
            await self.open()
        try:
            async with self.pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise self._pool_timeout(self.pool.timeout) from exc
        except psycopg.Error as exc:
            raise translate_error(exc, self.schema) from exc

    async def _autocommit(self, statement: Callable[[AsyncConnection[Any]], Awaitable[T]]) -> T:
        """Run one autocommit statement on a pooled connection, again if a stricter default
        isolation failed it for a concurrent update (see _SERIALIZATION_RETRIES)."""
        for attempt in range(1, _SERIALIZATION_RETRIES + 1):
            async with self._connection() as conn:
                try:
                    return await statement(conn)
                except (errors.SerializationFailure, errors.LockNotAvailable):
                    if attempt == _SERIALIZATION_RETRIES:
                        raise
        raise AssertionError("unreachable")


class Store(PooledSchema):
    """Async access to one pgsched schema through a connection pool."""

    def __init__(
        self,
        dsn: str,
        schema: str = DEFAULT_SCHEMA,
        *,
        max_size: int = 4,
        topology: Topology | None = None,
        lock_timeout: float = 60.0,
    ) -> None:
        self.topology = topology or Topology(dsn)  # how every connection to dsn is opened
        super().__init__(
            dsn,
            schema,
            max_size=max_size,
            name=f"pgsched-store-{schema}",
            connect_kwargs=self.topology.connect_kwargs,
        )
        self.q = named_queries(schema)
        self.lock_timeout = lock_timeout  # how long a sync waits for its lock
        self.clock = DatabaseClock()  # where ticks claimed ahead are due on this process

    async def check_reachable(self, timeout: float = 2.0) -> None:
        """One direct connection, to fail a one-shot command within `timeout` seconds with
        the server's own reason (a pool only says it timed out, after its whole timeout)."""
        await check_reachable(self.dsn, self.schema, timeout, self.topology.connect_kwargs)

    async def _all(self, name: str, params: dict[str, Any] | None = None) -> list[Row]:
        async def run(conn: AsyncConnection[Any]) -> list[Row]:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(self.q[name], params or {})
            return await cur.fetchall() if cur.description else []

        return await self._autocommit(run)

    async def _one(self, name: str, params: dict[str, Any] | None = None) -> Row | None:
        rows = await self._all(name, params)
        return rows[0] if rows else None

    # --- runners -------------------------------------------------------------------------

    async def register_runner(
        self,
        runner_id: str,
        hostname: str,
        pid: int,
        concurrency: int,
        version: str,
        registry: Registry | None = None,
    ) -> list[str]:
        """Announce a runner and the code it carries: its version's job names are recorded
        (if they are not), jobs it defines that were orphaned meanwhile come back (a runner
        declared dead while away, re-registering), then the runner row. Returns those jobs."""
        code_version = registry.code_version if registry is not None else None
        adopted: list[str] = []
        async with self._connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            if registry is not None:
                await self._record_definitions(cur, registry)
                await cur.execute(self.q["adopt_defined_jobs"], {"code_version": code_version})
                adopted = [r["name"] for r in await cur.fetchall()]
            params = dict(
                id=runner_id,
                hostname=hostname,
                pid=pid,
                concurrency=concurrency,
                version=version,
                code_version=code_version,
            )
            await cur.execute(self.q["register_runner"], params)
        return adopted

    async def setting_conflicts(self) -> list[str]:
        """Server settings of this role's sessions that conflict with pgsched (see
        `setting_conflicts`), for a warning at start-up."""
        row = await self._one("session_timeouts")
        assert row is not None
        return setting_conflicts(row)

    async def heartbeat(self, runner_id: str, stopping: bool = False) -> bool:
        """False when this runner was declared dead by another and must re-register."""
        return await self._one("heartbeat", {"id": runner_id, "stopping": stopping}) is not None

    async def unregister_runner(self, runner_id: str, lease_timeout: float = 15.0) -> list[str]:
        """Leave the runners table; jobs that no live runner defines any more (this was the
        last runner of its code version) are orphaned. Returns those."""
        await self._all("unregister_runner", {"id": runner_id})
        return await self.orphan_undefined_jobs(lease_timeout)

    async def orphan_undefined_jobs(
        self, lease_timeout: float, code_version: str | None = None
    ) -> list[str]:
        rows = await self._all(
            "orphan_undefined_jobs", {"code_version": code_version, "lease_timeout": lease_timeout}
        )
        return [r["name"] for r in rows]

    async def reap_lost(self, lease_timeout: float) -> tuple[list[str], list[int]]:
        """Fail the runs of runners that stopped heartbeating; returns (runners, runs)."""
        row = await self._one("reap_lost_runners", {"lease_timeout": lease_timeout})
        ownerless = await self._all("reap_ownerless_runs", {"lease_timeout": lease_timeout})
        runners = (row or {}).get("runners") or []
        runs = ((row or {}).get("runs") or []) + [r["id"] for r in ownerless]
        if runners:  # the last runner of a code version may be among them
            await self.orphan_undefined_jobs(lease_timeout)
        return runners, runs

    async def cancel_requests(self, runner_id: str) -> list[Row]:
        return await self._all("cancel_requests", {"runner": runner_id})

    async def cancel_run(self, run_id: int, by: str) -> str:
        """'cancelled' (it was pending), 'cancelling' (running: its runner stops it), or the
        final status it already had. Unknown ids raise UnknownRunError. pgsched.cancel_run on
        a connection of this pool."""
        from . import api

        async with self._connection() as conn, conn.transaction():
            return await api.cancel_run(conn, run_id, by=by, schema=self.schema)

    async def _record_definitions(self, cur: Any, registry: Registry) -> None:
        """This code version's job names, recorded unless all are already."""
        version = registry.code_version
        await cur.execute(
            self.q["has_definitions"], {"code_version": version, "count": len(registry)}
        )
        if not (await cur.fetchone())["recorded"]:
            params = {"code_version": version, "names": registry.names}
            await cur.execute(self.q["record_definitions"], params)

    async def held_runs(self, runner_id: str) -> list[int]:
        return [r["id"] for r in await self._all("held_runs", {"runner": runner_id})]

    async def fail_stranded_runs(self, runner_id: str, known: list[int]) -> list[int]:
        rows = await self._all("fail_stranded_runs", {"runner": runner_id, "known": known})
        return [r["id"] for r in rows]

    # --- claiming --------------------------------------------------------------------------

    async def claim_pending(self, runner_id: str, limit: int, code_version: str) -> PendingClaim:
        """Claim manual requests, retries and queued ticks whose time has come.

        Runs of jobs that allow overlap (a queue's usual case) start here, in one statement
        sent with BEGIN and COMMIT in one round trip, so the claim holds no lock while this
        process is busy. Runs of the other jobs are returned for `start_exclusive`."""
        async with self._connection() as conn, conn.pipeline():
            async with conn.transaction():
                await conn.execute(self.q["plan_by_index"])
                cur = conn.cursor(row_factory=dict_row)
                sent = time.monotonic()
                await cur.execute(
                    self.q["claim_pending"],
                    {"limit": limit, "runner": runner_id, "code_version": code_version},
                )
            rows = await cur.fetchall()
        exclusive = [
            (r["id"], r["job_name"], r["schedule_key"]) for r in rows if r["status"] == "pending"
        ]
        return PendingClaim(_claimed(rows, sent), exclusive)

    async def start_exclusive(
        self, runner_id: str, pending: Sequence[tuple[int, str, str]]
    ) -> list[ClaimedRun]:
        """Start runs (id, job, schedule key) of jobs that do not allow overlap, under their
        job rows' and schedule rows' locks: at most one per schedule, and none while a run of
        that schedule is running (a request belongs to the job's default schedule)."""
        async with self._connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(self.q["relock_pending"], {"ids": [i for i, _, _ in pending]})
            still = {r["id"] for r in await cur.fetchall()}
            pending = [p for p in pending if p[0] in still]  # in claim order
            if not pending:
                return []
            await cur.execute(self.q["lock_jobs"], {"names": sorted({j for _, j, _ in pending})})
            locked = {r["name"] for r in await cur.fetchall()}
            groups = sorted({(j, k) for _, j, k in pending if j in locked})
            if not groups:
                return []
            names, keys = [j for j, _ in groups], [k for _, k in groups]
            await cur.execute(self.q["lock_schedules"], {"names": names, "keys": keys})
            startable = {(r["name"], r["key"]) for r in await cur.fetchall() if r["held"]}
            await cur.execute(self.q["running_jobs"], {"names": sorted(set(names))})
            startable -= {(r["job_name"], r["schedule_key"]) for r in await cur.fetchall()}
            ids = []
            for run_id, job, key in pending:
                if (job, key) in startable:
                    ids.append(run_id)
                    startable.discard((job, key))  # one run per schedule at a time
            if not ids:
                return []
            sent = time.monotonic()
            await cur.execute(self.q["start_pending"], {"runner": runner_id, "ids": ids})
            return _claimed(await cur.fetchall(), sent)

    @asynccontextmanager
    async def tick_claim(self, runner_id: str, code_version: str) -> AsyncIterator[TickClaim]:
        """One tick claim's transaction, for `runner.claiming` to walk through: lock the due
        jobs, plan their ticks (the caller, between the two statements), record them. The
        commit goes out with the record; `TickClaim.claimed` holds the result after the
        block."""
        async with self._connection() as conn, conn.pipeline():
            claim = TickClaim(conn, self.q, runner_id, code_version, self.clock)
            async with conn.transaction():
                await conn.execute(self.q["plan_by_index"])
                yield claim
            await claim._committed()

    async def release(self, runs: Sequence[ClaimedRun]) -> list[int]:
        """Give prefetched, never started runs back to every runner (and wake them)."""
        if not runs:
            return []
        async with self._connection() as conn, conn.transaction():
            await conn.execute(self.q["plan_by_index"])
            cur = await conn.execute(
                self.q["release_runs"],
                {"ids": [r.id for r in runs], "leases": [r.lease for r in runs]},
            )
            released = [row[0] for row in await cur.fetchall()]
            await conn.execute(self.q["notify_runners"])
        return released

    async def unclaim_ticks(self, runs: Sequence[ClaimedRun]) -> list[int]:
        """Undo the claim of ticks claimed ahead that never started (see sql/queries.sql)."""
        if not runs:
            return []
        document = json.dumps([{"id": r.id, "lease": r.lease} for r in runs])
        async with self._connection() as conn, conn.transaction():
            await conn.execute(self.q["plan_by_index"])
            cur = await conn.execute(self.q["unclaim_ticks"], {"runs": document})
            return [row[0] for row in await cur.fetchall()]

    async def seconds_until_due(self, code_version: str) -> tuple[float | None, float | None]:
        """(until the earliest due tick, until the earliest pending run), by the database
        clock; None where there is none."""
        async with self._connection() as conn, conn.pipeline(), conn.transaction():
            await conn.execute(self.q["plan_by_index"])
            cur = await conn.execute(self.q["seconds_until_due"], {"code_version": code_version})
        row = await cur.fetchone()
        assert row is not None
        return row[0], row[1]

    async def finish(self, outcomes: Sequence[RunOutcome]) -> set[int]:
        """Write final states in one statement; returns the ids whose lease still held."""
        if not outcomes:
            return set()
        async with self._connection() as conn, conn.pipeline():  # one round trip
            async with conn.transaction():
                await conn.execute(self.q["plan_by_index"])
                cur = await conn.execute(self.q["finish_runs"], finish_params(outcomes))
            return {row[0] for row in await cur.fetchall()}

    async def run_states(self, ids: list[int]) -> dict[int, Row]:
        """What the database holds for these runs now (to explain a refused result)."""
        rows = await self._all("run_states", {"ids": ids})
        return {r["id"]: r for r in rows}

    # --- events ----------------------------------------------------------------------------

    async def notifications(self) -> AsyncIterator[str]:
        """LISTEN on this schema's channel, on a connection of its own (a pooled one would go
        back to the pool still listening); yields "listening" once the LISTEN is in place,
        then each NOTIFY's payload ("run": a request; "jobs": a schedule changed). Ends with
        DatabaseUnavailableError when the connection breaks: notifications sent meanwhile
        are lost, so the caller polls once after listening again."""
        channel = sql.Identifier(channel_for(self.schema))
        try:
            async with await AsyncConnection.connect(
                self.topology.listen_dsn or self.dsn,  # direct, behind a transaction pooler
                autocommit=True,
                connect_timeout=10,
                keepalives=1,
                keepalives_idle=10,
                keepalives_interval=5,
                keepalives_count=3,
            ) as conn:
                await conn.execute(sql.SQL("LISTEN {}").format(channel))
                yield "listening"
                async for notify in conn.notifies():
                    yield notify.payload
        except (psycopg.Error, PoolTimeout) as exc:
            raise translate_error(exc, self.schema) from exc
        raise DatabaseUnavailableError("the LISTEN connection closed")

    # --- definitions -----------------------------------------------------------------------

    async def sync(self, registry: Registry, lease_timeout: float = 15.0) -> SyncReport:
        """Upsert the definitions that changed (with overrides), keep `paused`, record the
        job names this code version defines, orphan what no code that lives defines (this
        one, and live runners' within `lease_timeout`). Unchanged rows are not written: a
        runner start with 100,000 jobs leaves no dead tuples behind in the table every claim
        scans."""
        version = registry.code_version
        timing = {"code_version": version, "lease_timeout": lease_timeout}
        async with self._connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await acquire(conn, sync_lock(self.schema, self.lock_timeout), self.schema)
            await cur.execute(self.q["synced_jobs"])
            existing = {r["name"]: r for r in await cur.fetchall()}
            await cur.execute(self.q["db_now"])
            db_now = (await cur.fetchone() or {})["db_now"]
            changed = _changed_definitions(registry, existing, db_now)
            if changed:
                params = {"jobs": json.dumps(changed), "code_version": version}
                await cur.execute(self.q["upsert_jobs"], params)
            await cur.execute(self.q["default_schedules"])
            defaults = {r["job_name"]: r for r in await cur.fetchall()}
            if schedules := _default_schedule_changes(registry, existing, changed, defaults):
                await cur.execute(self.q["next_run_at_computed"], {"on": "on"})
                document = json.dumps(schedules)
                await cur.execute(self.q["sync_default_schedules"], {"schedules": document})
            await self._record_definitions(cur, registry)
            await cur.execute(self.q["orphan_undefined_jobs"], timing)
            orphaned = [r["name"] for r in await cur.fetchall()]
            written = {row["name"] for row in changed}
            updated = [n for n in registry.names if n in existing and n in written]
            flipped: list[str] = []
            if updated:
                await cur.execute(self.q["defined_elsewhere"], {**timing, "names": updated})
                flipped = [r["job_name"] for r in await cur.fetchall()]
        return SyncReport(
            inserted=[n for n in registry.names if n not in existing],
            updated=updated,
            orphaned=orphaned,
            unchanged=len(registry) - len(written),
            code_version=version,
            defined_elsewhere=flipped,
        )

    async def validate_schedules(self, limit: int = 5000) -> tuple[int, list[str]]:
        """Validate a batch of schedule rows written by plain SQL (or edited): each gets its
        first tick, or `error` with the expression and what is wrong. Returns how many are
        valid and the errors stored; (0, []) when none is left (or another runner holds the
        rest)."""
        async with self._connection() as conn, conn.transaction():
            # Right after a bulk INSERT the statistics still say the table is (nearly) empty:
            # the planner then fetched every unresolved row, hashed and sorted them on disk,
            # per batch (1.5-2.5 s per 5,000 rows at 1M, until autovacuum's ANALYZE).
            await conn.execute(self.q["plan_by_index"])
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(self.q["unresolved_schedules"], {"limit": limit})
            rows = await cur.fetchall()
            if not rows:
                return 0, []
            found = resolve(rows, rows[0]["db_now"])
            document = json.dumps(
                [{"id": f.id, "next_run_at": _iso(f.next_run_at), "error": f.error} for f in found]
            )
            await cur.execute(self.q["resolve_schedules"], {"rows": document})
        return sum(f.error is None for f in found), [f.error for f in found if f.error]

    async def list_schedules(self, job: str | None = None, limit: int = 10_000) -> list[Row]:
        return await self._all("list_schedules", {"job": job, "limit": limit})

    async def add_schedule(self, job: str, key: str, cron: str, **kwargs: Any) -> Schedule:
        """pgsched.add_schedule on a connection of this pool, in a transaction of its own."""
        from . import api

        async with self._connection() as conn, conn.transaction():
            return await api.add_schedule(conn, job, key, cron, schema=self.schema, **kwargs)

    async def remove_schedule(self, job: str, key: str) -> bool:
        from . import api

        async with self._connection() as conn, conn.transaction():
            return await api.remove_schedule(conn, job, key, schema=self.schema)

    # --- operator queries ------------------------------------------------------------------

    async def list_jobs(self) -> list[Row]:
        return await self._all("list_jobs")

    async def get_job(self, name: str) -> Row:
        row = await self._one("get_job", {"name": name})
        if row is None:
            raise UnknownJobError(await self._unknown_job_message(name))
        return row

    async def _unknown_job_message(self, name: str) -> str:
        """With the closest name the table holds: a typo is the usual cause."""
        known = [r["name"] for r in await self.list_jobs()]
        return unknown_job_message(name, self.schema, known)

    async def grant(self, kind: str, role: str) -> str:
        """Apply the least-privilege grants of `kind` (runner, requester, reader) to `role`."""
        from psycopg import sql as pgsql

        statements = named_queries(self.schema, "grants.sql")[kind]
        rendered = statements.replace("{role}", pgsql.Identifier(role).as_string(None))
        async with self._connection() as conn:
            try:
                await conn.execute(rendered.encode())
            except errors.UndefinedObject as exc:
                raise ConfigError(f"role '{role}' does not exist; CREATE ROLE it first") from exc
        return rendered

    async def set_paused(self, name: str, paused: bool) -> None:
        if await self._one("set_paused", {"name": name, "paused": paused}) is None:
            raise UnknownJobError(await self._unknown_job_message(name))

    async def request_run(self, name: str, params: dict[str, Any]) -> int:
        try:
            row = await self._one("request_run", {"name": name, "params": Jsonb(params)})
        except UnknownJobError:  # runs_job_name_fkey (dberrors): say what the name is close to
            raise UnknownJobError(await self._unknown_job_message(name)) from None
        assert row is not None
        return int(row["id"])

    async def insert_inline_run(
        self, name: str, params: dict[str, Any], runner_id: str
    ) -> ClaimedRun:
        sent = time.monotonic()
        try:
            rows = await self._all(
                "insert_inline_run", {"name": name, "params": Jsonb(params), "runner": runner_id}
            )
        except UnknownJobError:
            raise UnknownJobError(await self._unknown_job_message(name)) from None
        return _claimed(rows, sent)[0]

    async def get_run(self, run_id: int) -> Row | None:
        return await self._one("get_run", {"id": run_id})

    async def history(self, name: str | None, status: str | None, limit: int) -> list[Row]:
        return await self._all("history", {"name": name, "status": status, "limit": limit})

    async def live_runners(self, lease_timeout: float) -> list[Row]:
        return await self._all("live_runners", {"lease_timeout": lease_timeout})


def tick_params(runner_id: str, plans: list[JobPlan]) -> dict[str, Any]:
    jobs = [
        {"name": p.job_name, "key": p.key, "next_run_at": _iso(p.next_run_at), "error": p.error}
        for p in plans
    ]
    ticks = [
        {
            "job_name": t.job_name,
            "key": p.key,
            "tick": _iso(t.tick),
            "status": t.status,
            "message": t.message,
        }
        for p in plans
        for t in p.ticks
    ]
    return {"runner": runner_id, "jobs": json.dumps(jobs), "ticks": json.dumps(ticks)}


def _iso(moment: datetime | None) -> str | None:
    """Timestamps inside the JSON documents the store sends (json_to_recordset reads ISO)."""
    return None if moment is None else moment.isoformat()


def finish_params(outcomes: Sequence[RunOutcome]) -> dict[str, Any]:
    """finish_runs' one parameter: the batch as a JSON array (json.dumps runs in C)."""
    return {
        "results": json.dumps(
            [
                {
                    "id": o.run_id,
                    "lease": o.lease,
                    "status": o.status,
                    "started_at": o.started_at,  # a float: json writes it faster than ISO
                    "finished_at": o.finished_at,
                    "message": o.message,
                    "error": o.error,
                    "stats": o.stats,
                    "data": o.data,
                }
                for o in outcomes
            ]
        )
    }


def _definition_row(d: JobDefinition) -> Row:
    """A definition as `synced_jobs` reads it back, so an unchanged one compares equal: every
    synced setting (pgsched.settings), the zone resolved with the profile's default."""
    row: Row = {"name": d.name, "extension": d.extension, "description": d.job.description or ""}
    for name in SYNCED_SETTINGS:
        value = getattr(d.settings, name)
        row[name] = list(value) if isinstance(value, tuple) else value
    row.update(timezone=d.timezone, overrides=dict(d.overrides), origin=d.origin)
    return row


def _changed_definitions(
    registry: Registry, existing: dict[str, Row], db_now: datetime
) -> list[Row]:
    """Rows to upsert: new, changed or orphaned definitions, each with the next_run_at it
    needs (None keeps the stored one: re-syncing never re-opens or skips a tick)."""
    changed = []
    resets: dict[tuple[str, str], list[tuple[Row, JobDefinition]]] = {}  # by schedule and zone
    for d in registry:
        row = _definition_row(d)
        old = existing.get(d.name)
        if (
            old is not None
            and not old["orphaned"]
            and all(old[k] == v for k, v in row.items())
            and (row["schedule"] is None or old["next_run_at"] is not None)
        ):
            continue  # unchanged, and its next tick is known
        # A job back from orphaned keeps its next_run_at: the gap goes through its misfire
        # policy at the next claim, recorded, instead of vanishing.
        reset = row["schedule"] is not None and (
            old is None
            or old["next_run_at"] is None
            or old["schedule"] != row["schedule"]
            or old["timezone"] != row["timezone"]
            or (row["enabled"] and not old["enabled"])
        )
        row["next_run_at"] = None
        if reset:
            resets.setdefault((row["schedule"], row["timezone"]), []).append((row, d))
        changed.append(row)
    for (expression, zone), rows in resets.items():  # one computation per schedule and zone
        tick = first_tick(expression, zone, db_now)
        for row, d in rows:
            if isinstance(tick, str):  # not computable: raises naming the job
                cron = d.cron
                assert cron is not None
                tick = cron.next_after(db_now)
            row["next_run_at"] = _iso(tick)
    return changed


def _default_schedule_changes(
    registry: Registry, existing: dict[str, Row], changed: list[Row], defaults: dict[str, Row]
) -> list[Row]:
    """The default schedule rows (key 'default': the code/profile schedule) to write, remove
    or whose job's runtime schedules need their next tick again, for sync_default_schedules."""
    computed = {row["name"]: row["next_run_at"] for row in changed if row["next_run_at"]}
    out = []
    for d in registry:
        cron = d.settings.schedule
        source = "profile" if "schedule" in d.overrides else "code"
        row = defaults.get(d.name)
        old = existing.get(d.name)
        rezoned = old is not None and old["timezone"] != d.timezone
        reenabled = old is not None and not old["enabled"] and d.settings.enabled
        next_run_at = computed.get(d.name)
        if cron is None:
            differs = row is not None
        else:
            differs = (
                row is None
                or next_run_at is not None
                or (row["cron"], row["source"], row["timezone"]) != (cron, source, None)
            )
        if differs or rezoned or reenabled:
            out.append(
                {
                    "name": d.name,
                    "cron": cron,
                    "source": source,
                    "next_run_at": next_run_at,
                    "rezoned": rezoned,
                    "reenabled": reenabled,
                }
            )
    return out


async def prune_history_on(
    conn: AsyncConnection[Any], schema: str, keep_seconds: float, batch: int = 5000
) -> int:
    """Delete finished runs older than the retention, batch by batch (short transactions, so
    vacuum keeps up); returns the count. Takes a connection so the housekeeping job can use
    its own."""
    query = named_queries(schema)["prune_history"]
    total = 0
    while True:
        cur = await conn.execute(query, {"keep_seconds": keep_seconds, "batch": batch})
        await conn.commit()
        total += cur.rowcount
        if cur.rowcount < batch:
            return total


__all__ = [
    "ClaimedRun",
    "PendingClaim",
    "RunOutcome",
    "Store",
    "SyncReport",
    "finish_params",
    "prune_history_on",
]
