"""The operator's read model (and the few operator actions): every query of sql/insight.sql.

The dashboard, its `/metrics`, `pgsched health` and `pgsched jobs explain` speak in these
verbs and never in SQL. Like the store, it runs over its own `AsyncConnectionPool`; unlike the
store it is never on a runner's hot path, so it favours complete answers over round trips.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from .cron import parse_schedule
from .dberrors import unknown_job_message
from .errors import ConfigError, CronError, UnknownJobError
from .queries import DEFAULT_SCHEMA, named_queries, operator_queries
from .schedules import schedule_state
from .settings import SYNCED_SETTINGS
from .states import JobState, job_state, schedule_problem
from .store import PooledSchema

Row = dict[str, Any]
Action = Literal["run", "pause", "resume", "cancel", "retry"]

LATE_AFTER = 1.0
"""Seconds after its tick a run may start and still count as on time."""

SCHEDULE_ERRORS_COUNTED = 1000
"""The overview counts schedules that cannot fire up to this many ("1000 or more")."""


class ActionRefused(ConfigError):
    """An operator's action that the state of the run or job does not allow."""


@functools.lru_cache(maxsize=4096)
def describe_schedule(expression: str | None, timezone: str = "UTC", with_zone: bool = True) -> str:
    """The schedule in words ("At 02:30, Europe/Berlin"; "At 02:30" without the zone, for a
    table that shows it), read as pgsched reads it: 6 fields, seconds first (macros and 5-field
    forms expanded first, so cron-descriptor never guesses the field order). Falls back to the
    expression when cron-descriptor is absent."""
    if expression is None:
        return "manual only"
    try:
        normalised = parse_schedule(expression, timezone).normalised
    except CronError:
        return "invalid schedule"
    try:
        from cron_descriptor import Options, get_description
    except ImportError:  # the `web` extra is not installed
        return f"{normalised} ({timezone})" if with_zone else normalised
    options = Options()
    options.use_24hour_time_format = True
    options.verbose = False
    text: str = get_description(normalised, options)
    return f"{text}, {timezone}" if with_zone else text


# How long runs failed for want of a connection (JobPoolTimeout) keep `pgsched health`
# unhealthy: while they go on failing, and a minute after.
POOL_FAILURE_WINDOW = 60.0


@dataclass(frozen=True)
class Health:
    """Healthy: at least one live runner and no overdue tick."""

    live_runners: int
    overdue: list[Row]
    reasons: list[str]

    @property
    def ok(self) -> bool:
        return not self.reasons


@dataclass(frozen=True)
class ClusterSnapshot:
    """What `/metrics` reports, read in one pass over the tables."""

    runners_live: int
    pending: dict[str, int]
    running: dict[str, int]
    overdue: dict[str, int]
    next_run: dict[str, float]
    last_success: dict[str, float]
    schedules: dict[str, int] = field(default_factory=dict)  # jobs with at least one
    schedules_invalid: dict[str, int] = field(default_factory=dict)  # jobs with some


@dataclass(frozen=True)
class Explanation:
    """Why a job did or did not run: facts, then `verdict`, one sentence per reason."""

    job: Row
    state: JobState
    schedule_problem: str | None
    schedule_words: str
    ticks: list[Row]
    runners: list[Row]
    blocking: list[Row]
    pending: list[Row]
    last_misfire: Row | None
    defining: list[Row] = field(default_factory=list)  # live runners whose code defines it
    schedules: list[Row] = field(default_factory=list)  # the first of its schedules
    schedule_counts: Row = field(default_factory=dict)  # total, errors, unvalidated, next
    verdict: list[str] = field(default_factory=list)


class Insight(PooledSchema):
    """Async read model of one pgsched schema, plus the dashboard's recorded actions."""

    def __init__(
        self,
        dsn: str,
        schema: str = DEFAULT_SCHEMA,
        *,
        lease_timeout: float = 15.0,
        max_size: int = 4,
        connect_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            dsn,
            schema,
            max_size=max_size,
            name=f"pgsched-insight-{schema}",
            connect_kwargs=connect_kwargs,
        )
        self.lease_timeout = lease_timeout
        self.q = operator_queries(schema)

    async def _all(self, name: str, params: dict[str, Any] | None = None) -> list[Row]:
        return await self._autocommit(lambda conn: _run(conn, self.q[name], params))

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection[Any]]:
        """One transaction: an action and its ledger row commit together or not at all."""
        async with self._connection() as conn, conn.transaction():
            yield conn

    async def _one(self, name: str, params: dict[str, Any] | None = None) -> Row | None:
        rows = await self._all(name, params)
        return rows[0] if rows else None

    # --- cluster ----------------------------------------------------------------------------

    async def live_runners(self) -> list[Row]:
        return await self._all("live_runners", {"lease_timeout": self.lease_timeout})

    async def overdue_ticks(self, limit: int = 1000) -> list[Row]:
        return await self._all("overdue_ticks", {"limit": limit})

    async def overview(self, hours: int = 24, limit: int = 20) -> Row:
        """Live runners, running runs, recent failures (retry chains resolved), overdue and
        missed ticks, and the schedules that cannot fire (`schedule_errors`: `n` counted up to
        `SCHEDULE_ERRORS_COUNTED`, `jobs`, `first_job`)."""
        window = {"hours": hours, "limit": limit}
        return {
            "schedule_errors": await self._one(
                "schedule_errors", {"limit": SCHEDULE_ERRORS_COUNTED}
            ),
            "schedule_errors_counted": SCHEDULE_ERRORS_COUNTED,
            "runners": await self.live_runners(),
            "running": await self._all("running_runs", {"limit": 100}),
            "failures": await self._all("recent_failures", window),
            "missed": await self._all("recent_missed", window),
            "overdue": await self.overdue_ticks(limit),
            "actions": await self._all("recent_actions", {"job": None, "limit": 10}),
        }

    async def status(self, limit: int = 10) -> Row:
        """`jobs status`: live runners (with their code versions), running runs, the failures
        of the last 24 h with their retry chains resolved (`retry_succeeded_id` /
        `_attempt`), and pending runs that wait for a runner whose code defines their job."""
        return {
            "runners": await self.live_runners(),
            "running": await self._all("running_runs", {"limit": 1000}),
            "recent_failures": await self._all("recent_failures", {"hours": 24, "limit": limit}),
            "waiting_for_code": await self._all(
                "waiting_for_code", {"lease_timeout": self.lease_timeout}
            ),
        }

    async def health(self) -> Health:
        runners = await self.live_runners()
        overdue = await self.overdue_ticks(limit=100)
        reasons = []
        if not runners:
            reasons.append(
                f"no live runner: none has heartbeated in the last {self.lease_timeout:g} s "
                "(start one with `pgsched runner`)"
            )
        if overdue:
            names = ", ".join(f"{r['job_name']} ({r['count']})" for r in overdue[:5])
            more = f" and {len(overdue) - 5} more" if len(overdue) > 5 else ""
            reasons.append(f"{len(overdue)} job(s) with overdue ticks: {names}{more}")
        window = {"window": POOL_FAILURE_WINDOW}
        for r in await self._all("pool_failures", window):
            reasons.append(
                f"runner {r['runner']}: {r['failures']} run(s) failed in the last "
                f"{POOL_FAILURE_WINDOW:g} s for want of a database connection: {r['message']}"
            )
        return Health(len(runners), overdue, reasons)

    async def cluster_snapshot(self) -> ClusterSnapshot:
        runners = await self.live_runners()
        in_flight = await self._all("metrics_in_flight")
        jobs = await self._all("metrics_jobs")
        overdue = await self.overdue_ticks(limit=100_000)
        by_status: dict[str, dict[str, int]] = {"pending": {}, "running": {}}
        for r in in_flight:
            by_status[r["status"]][r["job_name"]] = r["n"]
        return ClusterSnapshot(
            runners_live=len(runners),
            pending=by_status["pending"],
            running=by_status["running"],
            overdue={r["job_name"]: r["count"] for r in overdue},
            next_run={j["name"]: j["next_run"] for j in jobs if j["next_run"] is not None},
            last_success={
                j["name"]: j["last_success"] for j in jobs if j["last_success"] is not None
            },
            schedules={j["name"]: j["schedules"] for j in jobs if j["schedules"]},
            schedules_invalid={
                j["name"]: j["schedules_invalid"] for j in jobs if j["schedules_invalid"]
            },
        )

    # --- jobs -------------------------------------------------------------------------------

    async def jobs_page(
        self, q: str | None = None, state: str | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[list[Row], int]:
        """One page of jobs (with state, schedule in words and tick strip) and the total. Each
        has `schedules` (how many), `schedule_errors` (how many cannot fire) and `next_tick`,
        the earliest next tick over its schedules.

        "invalid" is decided in Python (the cron rules live there), so that filter reads the
        enabled jobs and keeps the invalid ones."""
        db_state = "enabled" if state == "invalid" else state
        params = {"q": q or None, "state": db_state, "limit": limit, "offset": offset}
        rows = await self._all("jobs_page", params)
        total = (await self._one("count_jobs", params) or {"n": 0})["n"]
        strips = await self.tick_strips([r["name"] for r in rows])
        for r in rows:
            r["state"] = job_state(r)
            r["schedule_words"] = describe_schedule(r["schedule"], r["timezone"])
            r["ticks"] = strips.get(r["name"], [])
        if state == "invalid":
            rows = [r for r in rows if r["state"] == "invalid"]
        return rows, total

    async def tick_strips(self, names: Sequence[str], per_job: int = 30) -> dict[str, list[Row]]:
        if not names:
            return {}
        rows = await self._all(
            "tick_strips", {"names": list(names), "per_job": per_job, "late_after": LATE_AFTER}
        )
        strips: dict[str, list[Row]] = {}
        for r in rows:
            strips.setdefault(r["job_name"], []).append(r)
        return strips

    async def get_job(self, name: str) -> Row:
        row = await self._one("job_page", {"name": name})
        if row is None:
            raise UnknownJobError(unknown_job_message(name, self.schema))
        row["state"] = job_state(row)
        row["schedule_problem"] = schedule_problem(row["schedule"], row["timezone"])
        row["schedule_words"] = describe_schedule(row["schedule"], row["timezone"])
        return row

    async def job_detail(self, name: str, runs: int = 25) -> Row:
        """A job with where each setting came from, its schedules, runs and tick strip."""
        job = await self.get_job(name)
        schedules = await self.job_schedules(name)
        for s in schedules:
            s["words"] = describe_schedule(s["cron"], s["timezone"], with_zone=False)
            s["state"] = schedule_state(s)
        return {
            "job": job,
            "settings": settings_with_sources(job),
            "schedules": schedules,
            "schedule_counts": await self._one("schedule_counts", {"name": name}),
            "runs": await self._all("job_runs", {"name": name, "limit": runs}),
            "ticks": (await self.tick_strips([name], per_job=60)).get(name, []),
            "actions": await self._all("recent_actions", {"job": name, "limit": 10}),
        }

    async def job_schedules(self, name: str, limit: int = 50) -> list[Row]:
        return await self._all("job_schedules", {"name": name, "limit": limit})

    async def job_timings(self, name: str, limit: int = 500) -> list[Row]:
        return await self._all("job_timings", {"name": name, "limit": limit})

    async def explain(self, name: str) -> Explanation:
        job = await self.get_job(name)
        activity = await self._all("job_holdups", {"name": name})
        ticks = (await self.tick_strips([name], per_job=10)).get(name, [])
        e = Explanation(
            job=job,
            state=job["state"],
            schedule_problem=job["schedule_problem"],
            schedule_words=job["schedule_words"],
            ticks=ticks,
            runners=await self.live_runners(),
            blocking=[a for a in activity if a["status"] == "running"],
            pending=[a for a in activity if a["status"] == "pending"],
            last_misfire=await self._one("last_misfire", {"name": name}),
            defining=await self._all(
                "defining_runners", {"name": name, "lease_timeout": self.lease_timeout}
            ),
            schedules=await self.job_schedules(name, limit=20),
            schedule_counts=await self._one("schedule_counts", {"name": name}) or {},
        )
        e.verdict.extend(verdict(e))
        return e

    # --- runs -------------------------------------------------------------------------------

    async def search_runs(
        self,
        *,
        job: str | None = None,
        status: str | None = None,
        trigger: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> list[Row]:
        params = dict(
            job=job, status=status, trigger=trigger, since=since, until=until, before=before
        )
        return await self._all("search_runs", {**params, "limit": limit})

    async def run_detail(self, run_id: int) -> Row | None:
        """A run with its retry chain (every attempt, this one included)."""
        run = await self._one("run_page", {"id": run_id})
        if run is None:
            return None
        chain = run["retry_of"] or run["id"]
        run["chain"] = await self._all("retry_chain", {"job": run["job_name"], "chain": chain})
        return run

    # --- actions ----------------------------------------------------------------------------

    async def request_run(self, name: str, params: dict[str, Any], actor: str) -> int:
        await self.get_job(name)
        async with self._transaction() as conn:
            (row,) = await _run(
                conn,
                self.q["request_run_as"],
                {"name": name, "params": Jsonb(params), "actor": actor},
            )
            await self._record(conn, actor, "run", name, row["id"], {"params": params})
        return int(row["id"])

    async def set_paused(self, name: str, paused: bool, actor: str) -> None:
        async with self._transaction() as conn:
            rows = await _run(conn, self.q["set_paused"], {"name": name, "paused": paused})
            if not rows:
                raise UnknownJobError(unknown_job_message(name, self.schema))
            await self._record(conn, actor, "pause" if paused else "resume", name, None, {})

    async def cancel_run(self, run_id: int, actor: str) -> str:
        """Cancel a run, as `pgsched.cancel_run` does (the same query): a pending one at once,
        a running one through its runner. Returns 'cancelled' or 'cancelling'; a run that
        already ended is refused."""
        by = f"dashboard:{actor}"
        queries = named_queries(self.schema)
        async with self._transaction() as conn:
            await _run(conn, queries["lock_run"], {"id": run_id})  # see sql/queries.sql
            rows = await _run(conn, queries["cancel_run"], {"id": run_id, "by": by})
            if not rows:
                raise ActionRefused(f"run {run_id} has already ended: there is nothing to cancel")
            (job,) = await _run(conn, self.q["run_job"], {"id": run_id})
            await self._record(conn, actor, "cancel", str(job["job_name"]), run_id, {})
        return "cancelled" if rows[0]["was"] == "pending" else "cancelling"

    async def retry_run(self, run_id: int, actor: str) -> int:
        """A new manual request of the run's job with the run's params."""
        async with self._transaction() as conn:
            rows = await _run(conn, self.q["retry_run"], {"id": run_id, "actor": actor})
            if not rows:
                raise ActionRefused(f"run {run_id} does not exist")
            new = rows[0]
            await self._record(conn, actor, "retry", new["job_name"], new["id"], {"of": run_id})
        return int(new["id"])

    async def _record(
        self,
        conn: AsyncConnection[Any],
        actor: str,
        action: Action,
        job: str | None,
        run: int | None,
        detail: dict[str, Any],
    ) -> None:
        params = dict(actor=actor, action=action, job=job, run=run, detail=Jsonb(detail))
        await _run(conn, self.q["record_action"], params)


async def _run(conn: AsyncConnection[Any], query: str, params: dict[str, Any] | None) -> list[Row]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(query.encode(), params or {})
    return await cur.fetchall() if cur.description else []


def settings_with_sources(job: Row) -> list[Row]:
    """Each setting with where its value came from: `profile.yaml:LINE` from the job's
    `overrides`, else "code" (the definition at the job's `origin`)."""
    overrides: dict[str, str] = job.get("overrides") or {}
    return [
        {"setting": s, "value": job.get(s), "source": overrides.get(s, "code")}
        for s in SYNCED_SETTINGS
    ]


def verdict(e: Explanation) -> list[str]:
    """The reasons a job runs or does not, most decisive first."""
    job, name = e.job, e.job["name"]
    reasons: list[str] = []
    if e.state == "orphaned":
        reasons.append(
            "orphaned: no code defines it any more, so it never fires (history kept); restore "
            "its definition and run `pgsched sync`"
        )
    if e.schedule_problem:
        reasons.append(f"invalid schedule: {e.schedule_problem}")
    if not job["enabled"] and e.state != "orphaned":
        reasons.append("disabled in code or profile (`enabled: false`); re-enabled by a sync")
    if job["paused"]:
        reasons.append(f"paused by an operator: no tick fires until `pgsched jobs resume {name}`")
    counts = e.schedule_counts
    if not counts.get("total"):
        reasons.append("manual only: no schedule; it runs when requested")
    if counts.get("errors"):
        broken = [s for s in e.schedules if s["error"]]
        detail = f": {broken[0]['error']}" if broken else ""
        reasons.append(f"{counts['errors']} schedule(s) cannot fire{detail}")
    if counts.get("unvalidated"):
        reasons.append(
            f"{counts['unvalidated']} schedule(s) written by SQL wait for a runner to validate "
            "them (within seconds of a runner being live)"
        )
    if not e.runners:
        reasons.append("no live runner: nothing will claim its ticks or requests")
    elif not e.defining:
        reasons.append(
            "no live runner's code defines it: its ticks and requests wait for a runner that "
            "carries this job (deploy its code)"
        )
    if e.blocking and job["overlap"] in ("skip", "queue"):
        first = e.blocking[0]
        then = "ticks are skipped" if job["overlap"] == "skip" else "ticks wait behind it"
        since = _stamp(first["started_at"])
        reasons.append(
            f"blocked: run {first['id']} is running (since {since}); "
            f"overlap={job['overlap']}, so {then} until it finishes"
        )
    if e.pending:
        oldest = _stamp(e.pending[0]["run_after"])
        reasons.append(f"{len(e.pending)} run(s) pending, the oldest may start at {oldest}")
    if e.last_misfire is not None:
        reasons.append(
            f"misfire={job['misfire']} last decided (run {e.last_misfire['id']}, "
            f"{e.last_misfire['status']}): {e.last_misfire['message']}"
        )
    if not reasons and counts.get("next_run_at") is not None:
        reasons.append(f"scheduled: next tick at {_stamp(counts['next_run_at'])}")
    return reasons


def _stamp(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S %Z")
