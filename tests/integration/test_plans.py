"""The plans of the hot statements, as the server in use would run them.

Every claim, result and heartbeat goes through these statements many times a second; a plan
that a server setting can turn into seconds is an outage on that server. On PostgreSQL 15-17
`enable_seqscan = off` (set by plan_by_index) adds a "disable cost" of 10^10 to any node it
cannot avoid, which passes every `jit_*_above_cost`: Debian's build (JIT on) then compiled
each tick claim for 0.5-3.5 s. So, on tables with enough rows that the planner has real
choices, each statement is EXPLAINed in the context the store runs it in (inside the
plan_by_index transaction or on its own) and must neither be JIT-compiled nor cost more than
`jit_above_cost` where JIT is on, nor scan runs or schedules sequentially.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from pgsched.queries import named_queries

pytestmark = pytest.mark.matrix  # JIT and disable costs differ by version: every one

Q = named_queries("pgsched")
RUNNER = "plans:1:abc"
CODE = "code-v1"
LEASE = str(uuid.uuid4())
RESULT = [
    {
        "id": 1,
        "lease": LEASE,
        "status": "succeeded",
        "started_at": 1.7e9,
        "finished_at": 1.7e9 + 1,
        "message": None,
        "error": None,
        "stats": None,
        "data": None,
    }
]
TICKS = [
    {"job_name": "job-1", "key": "default", "tick": "2026-01-01T00:00:00Z", "status": "running"}
]
PLANS = [{"name": "job-1", "key": "default", "next_run_at": "2026-01-01T00:00:01Z"}]

# (query, parameters, run inside the plan_by_index transaction as the store does)
HOT: list[tuple[str, dict[str, Any], bool]] = [
    (
        "lock_due_jobs",
        {
            "runner": RUNNER,
            "code_version": CODE,
            "limit": 100,
            "ahead": 100,
            "lookahead": 0.5,
            "lease_timeout": 15.0,
        },
        True,
    ),
    ("job_activity", {"names": ["job-1", "job-2"], "keys": ["default", "default"]}, True),
    (
        "record_ticks",
        {"runner": RUNNER, "jobs": json.dumps(PLANS), "ticks": json.dumps(TICKS)},
        True,
    ),
    ("claim_pending", {"runner": RUNNER, "limit": 100, "code_version": CODE}, True),
    ("finish_runs", {"results": json.dumps(RESULT)}, True),
    ("release_runs", {"ids": [1, 2], "leases": [LEASE, LEASE]}, True),
    ("unclaim_ticks", {"runs": json.dumps([{"id": 1, "lease": LEASE}])}, True),
    ("seconds_until_due", {"code_version": CODE}, True),
    ("unresolved_schedules", {"limit": 5000}, True),
    ("relock_pending", {"ids": [1, 2, 3]}, False),
    ("lock_jobs", {"names": ["job-1", "job-2"]}, False),
    ("lock_schedules", {"names": ["job-1"], "keys": ["default"]}, False),
    ("running_jobs", {"names": ["job-1", "job-2"]}, False),
    ("start_pending", {"runner": RUNNER, "ids": [1, 2]}, False),
    ("heartbeat", {"id": RUNNER, "stopping": False}, False),
    ("reap_lost_runners", {"lease_timeout": 15.0}, False),
    ("reap_ownerless_runs", {"lease_timeout": 15.0}, False),
    ("cancel_requests", {"runner": RUNNER}, False),
    ("held_runs", {"runner": RUNNER}, False),
    ("run_states", {"ids": [1, 2, 3]}, False),
]

GROWING = ("runs", "schedules")  # tables whose size is the users' history and tenants

FILL = """
INSERT INTO pgsched.jobs (name, extension, schedule)
SELECT 'job-' || i, 'plans', '* * * * * *' FROM generate_series(1, 200) i;
INSERT INTO pgsched.definitions (code_version, job_name)
SELECT %(code)s, 'job-' || i FROM generate_series(1, 200) i;
INSERT INTO pgsched.runners (id, hostname, pid, concurrency, code_version)
VALUES (%(runner)s, 'plans', 1, 10, %(code)s);
INSERT INTO pgsched.schedules (job_name, key, cron, next_run_at)
SELECT 'job-' || (i %% 200 + 1), 'k' || i, '* * * * * *', now() + (i %% 600) * interval '1 s'
FROM generate_series(1, 20000) i;
INSERT INTO pgsched.runs (job_name, trigger, status, scheduled_for, started_at, finished_at)
SELECT 'job-' || (i %% 200 + 1), 'manual', 'succeeded', now() - i * interval '1 s',
       now() - i * interval '1 s', now() - i * interval '1 s' + interval '10 ms'
FROM generate_series(1, 50000) i;
INSERT INTO pgsched.runs (job_name, status, run_after)
SELECT 'job-' || (i %% 200 + 1), 'pending', now() + interval '1 hour'
FROM generate_series(1, 500) i;
INSERT INTO pgsched.runs (job_name, status, started_at, runner, lease)
SELECT 'job-' || (i %% 200 + 1), 'running', now(), %(runner)s, gen_random_uuid()
FROM generate_series(1, 50) i;
"""


@pytest.fixture(scope="module")
def filled(pg: Any) -> Iterator[str]:
    """One database with history, tenants' schedules and a backlog, analyzed: the statistics
    a production database has, so the planner has real choices to make."""
    name = pg.new_database()
    dsn = pg.dsn_for(name)
    with psycopg.connect(dsn, autocommit=True, cursor_factory=psycopg.ClientCursor) as conn:
        with conn.transaction():
            conn.execute(FILL, {"code": CODE, "runner": RUNNER})  # several statements
        conn.execute("ANALYZE")
    yield dsn
    pg.drop_database(name)


def _plan(conn: psycopg.Connection[Any], name: str, params: dict[str, Any]) -> dict[str, Any]:
    statement = psycopg.ClientCursor(conn).mogrify(Q[name], params)
    row = conn.execute(f"EXPLAIN (FORMAT JSON, VERBOSE) {statement}").fetchone()  # type: ignore[arg-type]
    assert row is not None
    plans: list[dict[str, Any]] = row[0]
    return plans[0]


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


@pytest.mark.parametrize(("name", "params", "in_claim"), HOT, ids=[h[0] for h in HOT])
def test_hot_statement_is_never_jit_compiled_nor_a_sequential_scan(
    filled: str, name: str, params: dict[str, Any], in_claim: bool
) -> None:
    with psycopg.connect(filled) as conn:  # one transaction, rolled back: EXPLAIN only
        if in_claim:
            conn.execute(Q["plan_by_index"])
        jit = conn.execute("SELECT current_setting('jit') = 'on' AND pg_jit_available()")
        jit_possible = jit.fetchone() == (True,)
        above = float(conn.execute("SHOW jit_above_cost").fetchone()[0])  # type: ignore[index]
        plan = _plan(conn, name, params)
        conn.rollback()
    assert "JIT" not in plan, f"{name} would be JIT-compiled: {plan['JIT']}"
    cost = plan["Plan"]["Total Cost"]
    if jit_possible:
        assert cost < above, f"{name} costs {cost}, above jit_above_cost {above}: JIT compiles it"
    scans = [
        n["Relation Name"]
        for n in _nodes(plan["Plan"])
        if n["Node Type"] == "Seq Scan" and n.get("Relation Name") in GROWING
    ]
    assert not scans, f"{name} scans {scans} sequentially"


def test_the_check_sees_a_claim_without_its_jit_setting(filled: str) -> None:
    """The assertion above can fail: the tick claim under the plan settings but with JIT
    left on is compiled on a JIT-capable PostgreSQL 15-17 (there the disable cost alone
    passes jit_above_cost), and costs over it on any version that adds disable costs."""
    with psycopg.connect(filled) as conn:
        conn.execute(Q["plan_by_index"])
        conn.execute("SET LOCAL jit = on")
        available = conn.execute("SELECT pg_jit_available()").fetchone() == (True,)
        version = conn.info.server_version
        plan = _plan(conn, "lock_due_jobs", HOT[0][1])
        conn.rollback()
    if version >= 180000:
        pytest.skip("PostgreSQL 18 counts disabled nodes apart from the cost")
    assert plan["Plan"]["Total Cost"] > 1e9
    if available:
        assert "JIT" in plan
