"""Manual pickup: how soon does an idle runner start a request inserted with plain SQL?

One idle runner; requests are inserted one at a time (`INSERT INTO pgsched.runs (job_name)
VALUES (...)`, autocommit), spaced `--interval-ms` apart. Latency = started_at - created_at.

    python bench/manual_pickup.py --requests 1000 --interval-ms 20
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    PGSCHED_BACKLOG_SQL,
    base_parser,
    database,
    distribution_ms,
    log,
    machine,
    print_latency,
    print_table,
    rows,
    runners,
    scalar,
    server,
    summary_ms,
    write_result,
)


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--interval-ms", type=float, default=20)
    parser.add_argument("--job", default="bench-noop", help="bench-noop (sync) or bench-async-noop")
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()

    with server(args.dsn) as pg, database(pg) as dsn:
        env = {"PGSCHED_BENCH_JOBS": "0"}
        with runners(
            dsn, "bench.apps:ext", 1, "pickup", ["--concurrency", str(args.concurrency)], env
        ):
            time.sleep(2)  # let the runner settle into its idle wait
            log(f"inserting {args.requests} requests, {args.interval_ms} ms apart")
            with psycopg.connect(dsn, autocommit=True) as conn:
                insert = "INSERT INTO pgsched.runs (job_name) VALUES (%s)"
                conn.execute(insert, (args.job,))  # warm the prepared statement; not measured
                first = scalar(dsn, "SELECT max(id) FROM pgsched.runs")
                next_at = time.monotonic()
                for _ in range(args.requests):
                    next_at += args.interval_ms / 1000
                    conn.execute(insert, (args.job,))
                    time.sleep(max(0.0, next_at - time.monotonic()))
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and scalar(dsn, PGSCHED_BACKLOG_SQL):
                time.sleep(0.1)
        data = rows(
            dsn,
            """SELECT status, extract(epoch FROM started_at - created_at)::float8
               FROM pgsched.runs WHERE id > %s AND trigger = 'manual'""",
            (first,),
        )
        info = machine(dsn)

    lags = [lag for status, lag in data if status == "succeeded"]
    stats = summary_ms(lags)
    print(f"\nmanual pickup: {args.requests} requests {args.interval_ms} ms apart, 1 idle runner")
    print_latency("latency = started_at - created_at", stats)
    print(f"not succeeded: {sum(1 for s, _ in data if s != 'succeeded')}")
    print("\ntargets: p50 <= 5 ms, p99 <= 20 ms")
    print_table(
        ["", "p50 ms", "p99 ms"],
        [["measured", stats.get("p50", 0.0), stats.get("p99", 0.0)], ["target", 5.0, 20.0]],
    )
    write_result(
        "manual_pickup",
        args.tag,
        {
            "params": vars(args),
            "machine": info,
            "latency_ms": stats,
            "latency_cdf_ms": distribution_ms(lags),
        },
    )


if __name__ == "__main__":
    main()
