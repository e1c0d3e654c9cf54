"""Fair claims (issue 25): one job's backlog must not delay another job's tick or request.

Subcommands (each starts its own embedded PostgreSQL, fsync on, or uses --dsn):

    python bench/fairness.py lag --schedules 1000 --runners 3 --seconds 60
        N runtime schedules `* * * * * *` of one job (`bench-noop`) next to one every-second
        code job (`bench-tick-00000`), R runners; the fire lag (started_at - scheduled_for)
        of that other job's ticks, as bench/fire_precision.py measures it. Copy this file
        into another worktree to measure its code the same way.

    python bench/fairness.py explain --due 10000,100000 --jobs 100 --pending 100000
        EXPLAIN (ANALYZE, BUFFERS) of lock_due_jobs (after plan_by_index, as a claim runs
        it) with N due schedules of one job and one due tick of each of --jobs other jobs,
        statistics fresh and stale (taken before the bulk insert); then claim_pending with
        --pending requests of one job and one request of another. Says whether every job
        with due work got a slot of the claim.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    FIRE_LAG_COLUMNS,
    ROOT,
    base_parser,
    database,
    env_for,
    log,
    machine,
    print_table,
    report_fire_lag,
    rows,
    runners,
    server,
    tick_window,
)

APP = "bench.apps:ext"
FLOOD = "bench-noop"  # manual-only, overlap allow: its runtime schedules are the backlog
STEADY = "bench-tick-00000"  # the one every-second code job (PGSCHED_BENCH_JOBS=1)


def cmd_lag(args: Any) -> None:
    env = {"PGSCHED_BENCH_JOBS": "1"}
    with server(args.dsn) as pg, database(pg) as dsn:
        with runners(dsn, APP, 1, "fair-sync", [], env):  # syncs the definitions
            pass
        rows(
            dsn,
            "INSERT INTO pgsched.schedules (job_name, key, cron) "
            "SELECT %s, 'flood-' || i, '* * * * * *' FROM generate_series(1, %s) AS i "
            "RETURNING 1",
            (FLOOD, args.schedules),
        )
        log(
            f"{args.schedules} schedules of {FLOOD} on '* * * * * *' and {STEADY}, "
            f"{args.runners} runners, {args.seconds}s (concurrency {args.concurrency})"
        )
        with runners(
            dsn, APP, args.runners, "fair", ["--concurrency", str(args.concurrency)], env
        ) as procs:
            start, end, cpu = tick_window(dsn, procs, args.warmup, args.seconds)
        data = rows(
            dsn,
            f"SELECT {FIRE_LAG_COLUMNS} FROM pgsched.runs "
            "WHERE trigger = 'schedule' AND job_name = %s "
            "AND scheduled_for >= %s AND scheduled_for < %s",
            (STEADY, start, end),
        )
        flood = rows(
            dsn,
            "SELECT status, count(*) FROM pgsched.runs WHERE job_name = %s "
            "AND scheduled_for >= %s AND scheduled_for < %s GROUP BY status",
            (FLOOD, start, end),
        )
        info = machine(dsn)
    lags = sorted(row[2] * 1000 for row in data if row[0] == "succeeded" and row[2] is not None)
    print(f"\n{STEADY}'s fire lag distribution, ms (every 5th percentile):")
    statuses = Counter(row[0] for row in data)
    if not lags:
        print(f"  none of its {args.seconds} ticks ran; their rows by status: {dict(statuses)}")
    else:
        print(
            " ".join(
                f"{lags[min(len(lags) - 1, len(lags) * p // 100)]:.1f}" for p in range(0, 101, 5)
            )
        )
    print(f"{FLOOD}'s ticks in the window by status: {dict(flood)}")
    report_fire_lag(
        "fairness_lag",
        args.tag or f"{args.schedules}s{args.runners}r",
        f"fire lag of {STEADY} beside {args.schedules} every-second schedules of {FLOOD}, "
        f"{args.seconds}s, {args.runners} runners (concurrency {args.concurrency})",
        data,
        args.seconds,
        cpu,
        info,
        vars(args),
        {"flood_statuses": dict(flood)},
    )


def _explain(conn: psycopg.Connection[Any], sql: str, params: dict[str, Any]) -> list[str]:
    conn.execute("SAVEPOINT e")
    plan = [r[0] for r in conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params).fetchall()]
    conn.execute("ROLLBACK TO SAVEPOINT e")
    return plan


def _figures(plan: list[str]) -> tuple[float, int, bool]:
    text = "\n".join(plan)
    ms = float(re.search(r"Execution Time: ([\d.]+) ms", text).group(1))  # type: ignore[union-attr]
    top = next((line for line in plan if "Buffers:" in line), "")
    buffers = sum(int(x) for x in re.findall(r"(?:hit|read)=(\d+)", top))
    return ms, buffers, "Disabled: true" in text or bool(re.search(r"cost=\d{11}", text))


def cmd_explain(args: Any) -> None:
    from pgsched.queries import named_queries

    q = named_queries()
    env = {"PGSCHED_BENCH_JOBS": str(args.jobs)}
    table: list[list[Any]] = []
    with server(args.dsn) as pg:
        for due in [int(d) for d in args.due.split(",")]:
            for stats in ("fresh", "stale"):
                with database(pg) as dsn:
                    table.append(_explain_ticks(q, dsn, env, due, args, stats))
        with database(pg) as dsn:
            table.append(_explain_pending(q, dsn, env, args))
    print()
    print_table(
        ["query", "case", "stats", "ms", "buffers", "rows", "jobs served", "disabled"], table
    )


def _sync(dsn: str, env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "pgsched", "--app", APP, "sync"],
        env=env_for(dsn, env),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise SystemExit(f"pgsched sync failed:\n{out.stderr[-3000:]}")
    return str(rows(dsn, "SELECT code_version FROM pgsched.definitions LIMIT 1")[0][0])


def _explain_ticks(
    q: dict[str, str], dsn: str, env: dict[str, str], due: int, args: Any, stats: str
) -> list[Any]:
    version = _sync(dsn, env)
    with psycopg.connect(dsn, autocommit=True) as conn:
        if stats == "stale":  # statistics of an empty backlog, as right after a bulk insert
            conn.execute("VACUUM ANALYZE pgsched.schedules")
            conn.execute("ALTER TABLE pgsched.schedules SET (autovacuum_enabled = false)")
        conn.execute(
            "INSERT INTO pgsched.schedules (job_name, key, cron, next_run_at) "
            "SELECT %s, 'flood-' || i, '* * * * * *', "
            "date_trunc('second', now()) - interval '10 seconds' "
            "FROM generate_series(1, %s) AS i",
            (FLOOD, due),
        )
        if stats == "fresh":
            conn.execute("VACUUM ANALYZE pgsched.schedules")
        # the other jobs' ticks are due now, newer than the backlog
        conn.execute(
            "UPDATE pgsched.schedules SET next_run_at = date_trunc('second', now()) "
            "WHERE key = 'default'"
        )
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO pgsched.runners (id, hostname, pid) VALUES ('explain', 'h', 1)")
        conn.execute(q["plan_by_index"])
        params = {
            "runner": "explain",
            "code_version": version,
            "limit": args.limit,
            "ahead": 0,
            "lookahead": 0.5,
            "lease_timeout": 15.0,
        }
        plan = _explain(conn, q["lock_due_jobs"], params)
        got = conn.execute(q["lock_due_jobs"], params).fetchall()
        conn.rollback()
    print(f"\n--- lock_due_jobs, {due:,} due of one job + {args.jobs} jobs, stats {stats}")
    print("\n".join(plan))
    ms, buffers, disabled = _figures(plan)
    jobs = len({r[0] for r in got})
    return ["lock_due_jobs", f"{due:,} + {args.jobs}", stats, ms, buffers, len(got), jobs, disabled]


def _explain_pending(q: dict[str, str], dsn: str, env: dict[str, str], args: Any) -> list[Any]:
    version = _sync(dsn, env)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE pgsched.jobs SET paused = true")  # no ticks: requests only
        conn.execute(
            "INSERT INTO pgsched.runs (job_name, run_after) "
            "SELECT %s, now() - interval '1 minute' FROM generate_series(1, %s)",
            (FLOOD, args.pending),
        )
        conn.execute("INSERT INTO pgsched.runs (job_name) VALUES ('bench-async-noop')")
        conn.execute("UPDATE pgsched.jobs SET paused = false WHERE overlap = 'allow'")
        conn.execute("VACUUM ANALYZE pgsched.runs")
    with psycopg.connect(dsn) as conn:
        conn.execute(q["plan_by_index"])
        params = {"limit": args.limit, "runner": "explain", "code_version": version}
        plan = _explain(conn, q["claim_pending"], params)
        got = conn.execute(q["claim_pending"], params).fetchall()
        conn.rollback()
    print(f"\n--- claim_pending, {args.pending:,} requests of one job + 1 of another")
    print("\n".join(plan))
    ms, buffers, disabled = _figures(plan)
    jobs = len({r[1] for r in got})
    return [
        "claim_pending",
        f"{args.pending:,} + 1",
        "fresh",
        ms,
        buffers,
        len(got),
        jobs,
        disabled,
    ]


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    lag = sub.add_parser("lag")
    lag.add_argument("--dsn")
    lag.add_argument("--tag", default="")
    lag.add_argument("--schedules", type=int, default=1000)
    lag.add_argument("--runners", type=int, default=3)
    lag.add_argument("--seconds", type=int, default=60)
    lag.add_argument("--warmup", type=float, default=5)
    lag.add_argument("--concurrency", type=int, default=10)
    explain = sub.add_parser("explain")
    explain.add_argument("--dsn")
    explain.add_argument("--tag", default="")
    explain.add_argument("--due", default="10000,100000")
    explain.add_argument("--jobs", type=int, default=100)
    explain.add_argument("--pending", type=int, default=100_000)
    explain.add_argument("--limit", type=int, default=20)
    args = parser.parse_args()
    {"lag": cmd_lag, "explain": cmd_explain}[args.command](args)


if __name__ == "__main__":
    main()
