"""Dashboard: page load and `/metrics` times on 100,000 jobs with their history.

Builds the database as bench/scale.py does (`pgsched --app bench.apps:scale sync`), adds
`--history` finished scheduled runs per job (the metrics' last-success probes and the tick
strips read them), a live runner row, some pending and running runs, then serves
`pgsched dashboard` in its own process and times `--requests` sequential GETs of each page
(p50/p99 in ms, the body size) and EXPLAIN ANALYZE of the per-job metrics query.

    python bench/dashboard.py --jobs 100000 --history 10 --requests 30
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    ROOT,
    base_parser,
    database,
    env_for,
    log,
    machine,
    print_table,
    scalar,
    server,
    summary_ms,
    write_result,
)
from bench.scale import timed_sync
from pgsched.queries import named_queries

PAGES = [
    ("overview", "/"),
    ("jobs (page 1 of 50 per page)", "/jobs"),
    ("jobs search", "/jobs?q=scale-0999"),
    ("job detail", "/jobs/scale-000123"),
    ("runs", "/runs"),
    ("runs of one job, failed", "/runs?job=scale-000123&status=failed"),
    ("run detail", "/runs/{run}"),
    ("metrics", "/metrics"),
]


def add_history(dsn: str, per_job: int) -> int:
    """`per_job` finished ticks per job, one a day back from yesterday; a tenth of them
    failed (so the last-success probe has something to step over); then ANALYZE."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO pgsched.runs (job_name, trigger, status, scheduled_for, run_after,
                                      started_at, finished_at, message)
            SELECT j.name, 'schedule', CASE WHEN d %% 10 = 1 THEN 'failed' ELSE 'succeeded' END,
                   t, t, t + interval '3 ms', t + interval '20 ms',
                   CASE WHEN d %% 10 = 1 THEN 'ValueError: boom' END
            FROM pgsched.jobs j, generate_series(1, %(n)s) AS d,
                 LATERAL (SELECT date_trunc('day', now()) - make_interval(days => d)
                                 + (hashtext(j.name) & 65535) * interval '1 second' AS t) x
            WHERE j.schedule IS NOT NULL
            """,
            {"n": per_job},
        )
        conn.execute(
            "INSERT INTO pgsched.runs (job_name) SELECT 'bench-noop' FROM generate_series(1, 50)"
        )
        conn.execute(
            "INSERT INTO pgsched.runners (id, hostname, pid, concurrency, version) "
            "VALUES ('bench', 'h', 1, 10, 'bench')"
        )
        conn.execute("ANALYZE pgsched.jobs; ANALYZE pgsched.runs")
    return int(scalar(dsn, "SELECT count(*) FROM pgsched.runs"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def time_pages(base: str, requests: int, run_id: int) -> list[dict[str, Any]]:
    results = []
    with httpx.Client(base_url=base, timeout=120) as client:
        for name, path in PAGES:
            url = path.format(run=run_id)
            first = client.get(url)  # warm: templates compiled, statements prepared
            assert first.status_code == 200, (url, first.status_code, first.text[:300])
            times = []
            for _ in range(requests):
                t0 = time.perf_counter()
                response = client.get(url)
                response.read()
                times.append(time.perf_counter() - t0)
            stats = summary_ms(times)
            results.append({"page": name, "url": url, "bytes": len(first.content), **stats})
            log(f"{name}: p50 {stats['p50']} ms, p99 {stats['p99']} ms")
    return results


def explain_metrics(dsn: str) -> str:
    q = named_queries(filename="insight.sql")
    with psycopg.connect(dsn) as conn:
        plan = conn.execute(
            ("EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) " + q["metrics_jobs"]).encode()
        ).fetchall()
    return "\n".join(r[0] for r in plan)


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--history", type=int, default=10, help="finished ticks per job")
    parser.add_argument("--requests", type=int, default=30, help="timed GETs per page")
    args = parser.parse_args()
    env = {"PGSCHED_BENCH_SCALE_JOBS": str(args.jobs), "PGSCHED_BENCH_SCALE_DUE": "0"}
    with server(args.dsn) as pg, database(pg) as dsn:
        seconds, line = timed_sync(dsn, env)
        log(f"sync: {seconds:.1f} s ({line})")
        t0 = time.monotonic()
        runs = add_history(dsn, args.history)
        log(f"history: {runs} runs in {time.monotonic() - t0:.1f} s")
        run_id = int(scalar(dsn, "SELECT max(id) FROM pgsched.runs WHERE status = 'failed'"))
        port = free_port()
        dashboard = subprocess.Popen(
            [sys.executable, "-m", "pgsched", "dashboard", "--bind", f"127.0.0.1:{port}"],
            env=env_for(dsn, env),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            end = time.monotonic() + 60
            while True:
                try:
                    httpx.get(base + "/health", timeout=5)
                    break
                except httpx.TransportError:
                    if time.monotonic() > end:
                        raise
                    time.sleep(0.2)
            pages = time_pages(base, args.requests, run_id)
        finally:
            dashboard.terminate()
            dashboard.wait(30)
        plan = explain_metrics(dsn)
    print_table(
        ["page", "bytes", "p50 ms", "p99 ms", "max ms"],
        [[p["page"], p["bytes"], p["p50"], p["p99"], p["max"]] for p in pages],
    )
    print("\nEXPLAIN ANALYZE metrics_jobs:\n" + plan)
    result = {
        "jobs": args.jobs,
        "runs": runs,
        "requests": args.requests,
        "pages": pages,
        "metrics_jobs_plan": plan,
        "machine": machine(dsn=None),
    }
    log(f"result: {write_result('dashboard', args.tag, result)}")


if __name__ == "__main__":
    main()
