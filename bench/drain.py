"""Drain throughput: how fast do runners work through a backlog of manual requests?

`--requests` pending no-op requests are bulk-inserted (INSERT ... SELECT generate_series) while
R idle runner processes (each `--concurrency 100`, an async no-op job) wait; runs/s =
requests / (last finished_at - insert commit). Each runner count gets a fresh database.

The raw ceiling is a bare psycopg loop in `--ceiling-procs` processes on the same table
(pgsched.runs, same indexes and triggers): claim a batch with a CTE UPDATE ... FOR UPDATE SKIP
LOCKED, complete it with one UPDATE ... FROM unnest — pgsched's protocol with nothing around it.

    python bench/drain.py --requests 100000 --runners 1,2,4 --concurrency 100
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    PGSCHED_BACKLOG_SQL,
    base_parser,
    database,
    log,
    machine,
    print_table,
    runners,
    scalar,
    server,
    write_result,
)

CEILING_CLAIM = """
WITH c AS (
    SELECT id FROM pgsched.runs
    WHERE status = 'pending' AND run_after <= now()
    ORDER BY run_after, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE pgsched.runs r
SET status = 'running', runner = %(runner)s, lease = gen_random_uuid(), started_at = now()
FROM c WHERE r.id = c.id
RETURNING r.id, r.lease
"""

CEILING_FINISH = """
UPDATE pgsched.runs r
SET status = 'succeeded', finished_at = now(), lease = NULL
FROM unnest(%(ids)s::bigint[], %(leases)s::uuid[]) AS f(id, lease)
WHERE r.id = f.id AND r.lease = f.lease AND r.status = 'running'
"""


def insert_backlog(dsn: str, job: str, count: int) -> Any:
    """Bulk-insert `count` pending requests; returns the database clock at commit."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO pgsched.runs (job_name) SELECT %s FROM generate_series(1, %s)",
            (job, count),
        )
        return conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]


def wait_drained(dsn: str, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not scalar(dsn, PGSCHED_BACKLOG_SQL):
            return True
        time.sleep(0.2)
    return False


def drain_pgsched(dsn: str, count: int, runner_count: int, concurrency: int, job: str) -> dict:
    with runners(
        dsn,
        "bench.apps:ext",
        runner_count,
        f"drain-{runner_count}",
        ["--concurrency", str(concurrency)],
        {"PGSCHED_BENCH_JOBS": "0"},
    ) as procs:
        time.sleep(1)
        ps = [psutil.Process(p.pid) for p in procs]
        cpu0 = sum(sum(p.cpu_times()[:2]) for p in ps)
        t0 = time.monotonic()
        committed = insert_backlog(dsn, job, count)
        done = wait_drained(dsn, 600)
        wall = time.monotonic() - t0
        cpu1 = sum(sum(p.cpu_times()[:2]) for p in ps)
    return _figures(dsn, committed, count, done) | {
        "runner_cpu_percent_total": round(100 * (cpu1 - cpu0) / wall, 1)
    }


def _figures(dsn: str, committed: Any, count: int, done: bool) -> dict:
    finished, succeeded = (
        psycopg.connect(dsn, autocommit=True)
        .execute(
            "SELECT max(finished_at), count(*) FILTER (WHERE status = 'succeeded') "
            "FROM pgsched.runs"
        )
        .fetchone()
    )  # type: ignore[misc]
    seconds = (finished - committed).total_seconds()
    return {
        "requests": count,
        "succeeded": succeeded,
        "drained": done,
        "seconds": round(seconds, 3),
        "runs_per_s": round(succeeded / seconds, 1),
    }


def _ceiling_worker(dsn: str, batch: int, barrier: Any, counter: Any) -> None:
    # The plans pgsched's claims and result writes get (sql/queries.sql, plan_by_index): index
    # walks, not the sort of the whole backlog that stale statistics would otherwise pick.
    options = (
        "-c enable_sort=off -c enable_hashjoin=off -c enable_mergejoin=off -c enable_seqscan=off"
    )
    with psycopg.connect(dsn, autocommit=True, options=options) as conn:
        runner = f"ceiling-{mp.current_process().pid}"
        barrier.wait()
        done = 0
        while True:
            claimed = conn.execute(CEILING_CLAIM, {"limit": batch, "runner": runner}).fetchall()
            if not claimed:
                # The backlog may not be committed yet, or another worker holds the rest.
                left = conn.execute(
                    "SELECT count(*) FROM pgsched.runs WHERE status <> 'succeeded'"
                ).fetchone()
                if left and left[0]:
                    time.sleep(0.001)
                    continue
                break
            conn.execute(
                CEILING_FINISH, {"ids": [r[0] for r in claimed], "leases": [r[1] for r in claimed]}
            )
            done += len(claimed)
    with counter.get_lock():
        counter.value += done


def drain_ceiling(dsn: str, count: int, procs: int, batch: int) -> dict:
    with psycopg.connect(dsn, autocommit=True) as conn:  # the job row a runner's sync would write
        conn.execute(
            "INSERT INTO pgsched.jobs (name, extension, overlap) "
            "VALUES ('bench-async-noop', 'bench', 'allow')"
        )
    committed = insert_backlog(dsn, "bench-async-noop", count)
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(procs)
    counter = ctx.Value("q", 0)
    workers = [
        ctx.Process(target=_ceiling_worker, args=(dsn, batch, barrier, counter))
        for _ in range(procs)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    # The clock starts when the workers start claiming, not at the insert (they were not
    # running while it committed), so take the first started_at as the start.
    started = scalar(dsn, "SELECT min(started_at) FROM pgsched.runs")
    result = _figures(dsn, started, count, True)
    result["insert_commit_to_first_start_s"] = round((started - committed).total_seconds(), 3)
    return result


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--runners", default="1,2,4", help="runner counts to try, comma-separated")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--job", default="bench-async-noop")
    parser.add_argument("--ceiling-procs", type=int, default=4, help="0 to skip the ceiling")
    parser.add_argument("--ceiling-batch", type=int, default=100)
    args = parser.parse_args()
    counts = [int(c) for c in args.runners.split(",") if c]

    results: dict[str, Any] = {}
    with server(args.dsn) as pg:
        for n in counts:
            with database(pg) as dsn:
                log(f"pgsched: {args.requests:,} requests, {n} runner(s) x {args.concurrency}")
                results[f"pgsched_{n}"] = drain_pgsched(
                    dsn, args.requests, n, args.concurrency, args.job
                )
                log(f"  {results[f'pgsched_{n}']}")
        if args.ceiling_procs:
            with database(pg) as dsn:
                log(f"ceiling: {args.ceiling_procs} bare SQL loops, batch {args.ceiling_batch}")
                results["ceiling"] = drain_ceiling(
                    dsn, args.requests, args.ceiling_procs, args.ceiling_batch
                )
                log(f"  {results['ceiling']}")
                info = machine(dsn)
        else:
            with database(pg, migrate=False) as dsn:
                info = machine(dsn)

    ceiling = results.get("ceiling", {}).get("runs_per_s")
    print(f"\ndrain: {args.requests:,} pending no-op requests ({args.job})")
    table = []
    for n in counts:
        r = results[f"pgsched_{n}"]
        ratio = r["runs_per_s"] / ceiling if ceiling else float("nan")
        table.append(
            [f"pgsched, {n} runner(s) x {args.concurrency}", r["runs_per_s"], r["seconds"], ratio]
        )
    if ceiling:
        c = results["ceiling"]
        table.append([f"raw SQL ceiling, {args.ceiling_procs} procs", ceiling, c["seconds"], 1.0])
    print_table(["", "runs/s", "seconds", "x ceiling"], table)
    print("\ntargets: 4 runners >= 25,000 runs/s and >= 0.5x the raw ceiling")
    write_result("drain", args.tag, {"params": vars(args), "machine": info, "results": results})


if __name__ == "__main__":
    main()
