"""The one place that talks to PostgreSQL: every query is a named block of sql/queries.sql.

The runner and the CLI speak in verbs (`claim`, `finish`, `reap_lost`, `sync`), never in SQL.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection, Error, errors
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from .errors import ConfigError, UnknownJobError
from .locks import acquire, sync_lock
from .planning import DueJob, JobPlan, plan_claim
from .queries import DEFAULT_SCHEMA, named_queries
from .registry import JobDefinition, Registry
from .ticks import next_ticks_after
from .topology import Topology

Row = dict[str, Any]


# Not frozen: a frozen dataclass sets each field through object.__setattr__, and one of these
# (and one RunOutcome) is made per run: a few µs a run in a drain.
@dataclass(slots=True)
class ClaimedRun:
    """A run this runner holds under `lease` and must finish."""

    id: int
    job_name: str
    trigger: str
    scheduled_for: datetime | None
    attempt: int
    params: dict[str, Any]
    lease: str
    claimed_at: float  # the database clock (epoch seconds) while the claim statement ran
    claimed_mono: float  # time.monotonic() just before that statement was sent
    start_mono: float = 0.0  # a tick claimed ahead: time.monotonic() when it is due


def _due_mono(run: ClaimedRun, clock: float, received: float) -> float:
    """When a tick claimed ahead of its time is due, on this process's monotonic clock: the
    database clock (epoch seconds) was read before `received`, so this is never early."""
    if run.scheduled_for is None:
        return 0.0
    wait = run.scheduled_for.timestamp() - clock
    return received + wait if wait > 0 else 0.0


@dataclass(slots=True)
class RunOutcome:
    """A final state to write for a claimed run."""

    run_id: int
    lease: str
    status: str  # succeeded | failed | cancelled
    started_at: float | None  # epoch seconds on the database clock (see Execution._at)
    finished_at: float | None
    message: str | None = None
    error: dict[str, Any] | None = None
    stats: dict[str, int] | None = None
    data: dict[str, Any] | None = None


@dataclass(frozen=True)
class PendingClaim:
    """What one request claim got: runs started, and runs (id, job) of jobs that do not allow
    overlap, still pending, for `Store.start_exclusive`."""

    started: list[ClaimedRun]
    exclusive: list[tuple[int, str]]


@dataclass(frozen=True)
class SyncReport:
    inserted: list[str]
    updated: list[str]  # existing rows the sync changed
    orphaned: list[str]
    unchanged: int = 0


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
        )
        for r in rows
        if r["status"] == "running"
    ]


class Store:
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
        self.dsn = dsn
        self.schema = schema
        self.q = named_queries(schema)
        self.topology = topology or Topology(dsn)  # how every connection to dsn is opened
        self.lock_timeout = lock_timeout  # how long a sync waits for its lock
        self.pool = AsyncConnectionPool(
            dsn,
            min_size=1,
            max_size=max_size,
            open=False,
            kwargs={"autocommit": True, **self.topology.connect_kwargs},
            timeout=10,
            name=f"pgsched-store-{schema}",
        )

    async def open(self, wait: bool = True, timeout: float = 10.0) -> None:
        await self.pool.open(wait=wait, timeout=timeout)

    async def close(self) -> None:
        await self.pool.close()

    async def _all(self, name: str, params: dict[str, Any] | None = None) -> list[Row]:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(self.q[name], params or {})
            return await cur.fetchall() if cur.description else []

    async def _one(self, name: str, params: dict[str, Any] | None = None) -> Row | None:
        rows = await self._all(name, params)
        return rows[0] if rows else None

    # --- runners -------------------------------------------------------------------------

    async def register_runner(
        self, runner_id: str, hostname: str, pid: int, concurrency: int, version: str
    ) -> None:
        await self._all(
            "register_runner",
            dict(
                id=runner_id, hostname=hostname, pid=pid, concurrency=concurrency, version=version
            ),
        )

    async def heartbeat(self, runner_id: str, stopping: bool = False) -> bool:
        """False when this runner was declared dead by another and must re-register."""
        return await self._one("heartbeat", {"id": runner_id, "stopping": stopping}) is not None

    async def unregister_runner(self, runner_id: str) -> None:
        await self._all("unregister_runner", {"id": runner_id})

    async def reap_lost(self, lease_timeout: float) -> tuple[list[str], list[int]]:
        """Fail the runs of runners that stopped heartbeating; returns (runners, runs)."""
        row = await self._one("reap_lost_runners", {"lease_timeout": lease_timeout})
        ownerless = await self._all("reap_ownerless_runs", {"lease_timeout": lease_timeout})
        runners = (row or {}).get("runners") or []
        runs = ((row or {}).get("runs") or []) + [r["id"] for r in ownerless]
        return runners, runs

    async def fail_stranded_runs(self, runner_id: str, known: list[int]) -> list[int]:
        rows = await self._all("fail_stranded_runs", {"runner": runner_id, "known": known})
        return [r["id"] for r in rows]

    # --- claiming --------------------------------------------------------------------------

    async def claim_pending(self, runner_id: str, limit: int) -> PendingClaim:
        """Claim manual requests, retries and queued ticks whose time has come.

        Runs of jobs that allow overlap (a queue's usual case) start here, in one statement
        sent with BEGIN and COMMIT in one round trip, so the claim holds no lock while this
        process is busy. Runs of the other jobs are returned for `start_exclusive`."""
        async with self.pool.connection() as conn, conn.pipeline():
            async with conn.transaction():
                await conn.execute(self.q["plan_by_index"])
                cur = conn.cursor(row_factory=dict_row)
                sent = time.monotonic()
                await cur.execute(self.q["claim_pending"], {"limit": limit, "runner": runner_id})
            rows = await cur.fetchall()
        exclusive = [(r["id"], r["job_name"]) for r in rows if r["status"] == "pending"]
        return PendingClaim(_claimed(rows, sent), exclusive)

    async def start_exclusive(
        self, runner_id: str, pending: Sequence[tuple[int, str]]
    ) -> list[ClaimedRun]:
        """Start runs (id, job) of jobs that do not allow overlap, under their job rows' locks:
        at most one per job, and none while a run of the job is running."""
        async with self.pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(self.q["relock_pending"], {"ids": [i for i, _ in pending]})
            still = {r["id"] for r in await cur.fetchall()}
            pending = [(i, job) for i, job in pending if i in still]  # in claim order
            if not pending:
                return []
            await cur.execute(self.q["lock_jobs"], {"names": sorted({j for _, j in pending})})
            locked = [r["name"] for r in await cur.fetchall()]
            await cur.execute(self.q["running_jobs"], {"names": locked})
            startable = set(locked) - {r["job_name"] for r in await cur.fetchall()}
            ids = []
            for run_id, job in pending:
                if job in startable:
                    ids.append(run_id)
                    startable.discard(job)  # one run per job at a time
            if not ids:
                return []
            sent = time.monotonic()
            await cur.execute(self.q["start_pending"], {"runner": runner_id, "ids": ids})
            return _claimed(await cur.fetchall(), sent)

    async def claim_ticks(
        self,
        runner_id: str,
        free: int,
        ahead: int = 0,
        lookahead: float = 0.0,
        lease_timeout: float = 15.0,
    ) -> list[ClaimedRun]:
        """Claim due scheduled ticks: one short transaction that locks the due jobs, records
        every tick's fate and advances next_run_at. No user code runs while it holds locks.

        With `ahead` > 0, ticks due within `lookahead` seconds are claimed too (at most
        `ahead`, and this runner's fair share of them among the runners alive within
        `lease_timeout`), so that the runner can start them on time instead of beginning the
        claim at their time."""
        async with self.pool.connection() as conn:
            async with conn.pipeline(), conn.transaction():
                await conn.execute(self.q["plan_by_index"])
                cur = conn.cursor(row_factory=dict_row)
                params = {
                    "runner": runner_id,
                    "limit": free,
                    "ahead": ahead,
                    "lookahead": lookahead if ahead else 0.0,
                    "lease_timeout": lease_timeout,
                }
                await cur.execute(self.q["lock_due_jobs"], params)
                locked = await cur.fetchall()
                if not locked:
                    return []
                await cur.execute(self.q["job_activity"], {"names": [r["name"] for r in locked]})
                activity = {r["name"]: r for r in await cur.fetchall()}
                due = [
                    DueJob(
                        **r, busy=activity[r["name"]]["busy"], queued=activity[r["name"]]["queued"]
                    )
                    for r in locked
                ]
                plans = plan_claim(due, free, ahead)
                if not plans:
                    return []
                sent = time.monotonic()
                await cur.execute(self.q["record_ticks"], self._tick_params(runner_id, plans))
            claimed = _claimed(await cur.fetchall(), sent)  # COMMIT went out with the INSERT
            inserted = time.monotonic()
            if all(_due_mono(run, run.claimed_at, inserted) == 0.0 for run in claimed):
                return claimed  # all due: they start now, anchored at the INSERT's clock
            # Ticks claimed ahead: a clock reading of its own, one short round trip after the
            # commit, since they are due to the millisecond and may not start a moment early.
            try:
                sent = time.monotonic()
                row = await (await conn.execute(self.q["clock"])).fetchone()
                received = time.monotonic()
            except Error:
                # Committed: never strand them for want of a tighter clock. The INSERT's own
                # clock and its reply time make a looser anchor, late rather than early.
                return [
                    replace(run, start_mono=_due_mono(run, run.claimed_at, inserted))
                    for run in claimed
                ]
        assert row is not None
        clock: float = row[0].timestamp()
        return [
            replace(
                run,
                claimed_at=clock,
                claimed_mono=sent,
                start_mono=_due_mono(run, clock, received),
            )
            for run in claimed
        ]

    @staticmethod
    def _tick_params(runner_id: str, plans: list[JobPlan]) -> dict[str, Any]:
        jobs = [{"name": p.job_name, "next_run_at": _iso(p.next_run_at)} for p in plans]
        ticks = [
            {"job_name": t.job_name, "tick": _iso(t.tick), "status": t.status, "message": t.message}
            for p in plans
            for t in p.ticks
        ]
        return {"runner": runner_id, "jobs": json.dumps(jobs), "ticks": json.dumps(ticks)}

    async def release(self, runs: Sequence[ClaimedRun]) -> list[int]:
        """Give prefetched, never started runs back to every runner (and wake them)."""
        if not runs:
            return []
        async with self.pool.connection() as conn, conn.transaction():
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
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(self.q["plan_by_index"])
            cur = await conn.execute(self.q["unclaim_ticks"], {"runs": document})
            return [row[0] for row in await cur.fetchall()]

    async def seconds_until_due(self) -> tuple[float | None, float | None]:
        """(until the earliest due tick, until the earliest pending run), by the database
        clock; None where there is none."""
        async with self.pool.connection() as conn, conn.pipeline(), conn.transaction():
            await conn.execute(self.q["plan_by_index"])
            cur = await conn.execute(self.q["seconds_until_due"])
        row = await cur.fetchone()
        assert row is not None
        return row[0], row[1]

    async def finish(self, outcomes: Sequence[RunOutcome]) -> set[int]:
        """Write final states in one statement; returns the ids whose lease still held."""
        if not outcomes:
            return set()
        async with self.pool.connection() as conn, conn.pipeline():  # one round trip
            async with conn.transaction():
                await conn.execute(self.q["plan_by_index"])
                cur = await conn.execute(self.q["finish_runs"], finish_params(outcomes))
            return {row[0] for row in await cur.fetchall()}

    # --- definitions -----------------------------------------------------------------------

    async def sync(self, registry: Registry) -> SyncReport:
        """Upsert the definitions that changed (with overrides), keep `paused`, orphan what
        left the code. Unchanged rows are not written: a runner start with 100,000 jobs
        leaves no dead tuples behind in the table every claim scans."""
        async with self.pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await acquire(conn, sync_lock(self.schema, self.lock_timeout), self.schema)
            await cur.execute(self.q["synced_jobs"])
            existing = {r["name"]: r for r in await cur.fetchall()}
            await cur.execute(self.q["db_now"])
            db_now = (await cur.fetchone() or {})["db_now"]
            changed = _changed_definitions(registry, existing, db_now)
            if changed:
                await cur.execute(self.q["upsert_jobs"], {"jobs": json.dumps(changed)})
            await cur.execute(self.q["orphan_missing_jobs"], {"names": registry.names})
            orphaned = [r["name"] for r in await cur.fetchall()]
        written = {row["name"] for row in changed}
        return SyncReport(
            inserted=[n for n in registry.names if n not in existing],
            updated=[n for n in registry.names if n in existing and n in written],
            orphaned=orphaned,
            unchanged=len(registry) - len(written),
        )

    # --- operator queries ------------------------------------------------------------------

    async def list_jobs(self) -> list[Row]:
        return await self._all("list_jobs")

    async def get_job(self, name: str) -> Row:
        row = await self._one("get_job", {"name": name})
        if row is None:
            raise UnknownJobError(await self._unknown_job_message(name))
        return row

    async def _unknown_job_message(self, name: str) -> str:
        names = [r["name"] for r in await self.list_jobs()]
        import difflib

        close = difflib.get_close_matches(name, names, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return (
            f"unknown job '{name}': no row in {self.schema}.jobs; {hint}"
            "run `pgsched jobs list` to see the jobs, or `pgsched sync` after adding it"
        )

    async def grant(self, kind: str, role: str) -> str:
        """Apply the least-privilege grants of `kind` (runner, requester, reader) to `role`."""
        from psycopg import sql as pgsql

        statements = named_queries(self.schema, "grants.sql")[kind]
        rendered = statements.replace("{role}", pgsql.Identifier(role).as_string(None))
        async with self.pool.connection() as conn:
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
        except errors.ForeignKeyViolation:
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
        except errors.ForeignKeyViolation:
            raise UnknownJobError(await self._unknown_job_message(name)) from None
        return _claimed(rows, sent)[0]

    async def get_run(self, run_id: int) -> Row | None:
        return await self._one("get_run", {"id": run_id})

    async def history(self, name: str | None, status: str | None, limit: int) -> list[Row]:
        return await self._all("history", {"name": name, "status": status, "limit": limit})

    async def live_runners(self, lease_timeout: float) -> list[Row]:
        return await self._all("live_runners", {"lease_timeout": lease_timeout})

    async def running_runs(self) -> list[Row]:
        return await self._all("running_runs")

    async def recent_failures(self, limit: int = 10) -> list[Row]:
        return await self._all("recent_failures", {"limit": limit})


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
    """A definition as `synced_jobs` reads it back, so an unchanged one compares equal."""
    s = d.settings
    return {
        "name": d.name,
        "extension": d.extension,
        "description": d.job.description or "",
        "schedule": s.schedule,
        "timezone": d.timezone,
        "enabled": s.enabled,
        "timeout": s.timeout,
        "max_attempts": s.max_attempts,
        "retry_backoff": s.retry_backoff,
        "overlap": s.overlap,
        "misfire": s.misfire,
        "misfire_grace": s.misfire_grace,
        "misfire_cap": s.misfire_cap,
        "tags": list(s.tags),
        "overrides": dict(d.overrides),
        "origin": d.origin,
    }


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
        reset = row["schedule"] is not None and (
            old is None
            or old["next_run_at"] is None
            or old["orphaned"]
            or old["schedule"] != row["schedule"]
            or old["timezone"] != row["timezone"]
            or (row["enabled"] and not old["enabled"])
        )
        row["next_run_at"] = None
        if reset:
            resets.setdefault((row["schedule"], row["timezone"]), []).append((row, d))
        changed.append(row)
    ticks = next_ticks_after(resets, db_now)  # one computation per schedule and zone
    for key, rows in resets.items():
        tick = ticks.get(key)
        for row, d in rows:
            if tick is None:  # not computable: raises naming the job
                cron = d.cron
                assert cron is not None
                tick = cron.next_after(db_now)
            row["next_run_at"] = _iso(tick)
    return changed


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
