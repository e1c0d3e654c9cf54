"""Scale: 100,000 defined jobs (most daily at random times, 100 due every second).

Measures `pgsched sync` (first sync and an unchanged re-sync, as the CLI runs them), the CPU
of one runner over `--idle-seconds` (psutil cpu_times; with the 100 every-second jobs, then
with none due at all), and prints EXPLAIN (ANALYZE, BUFFERS) of the hot-path queries of
sql/queries.sql (loaded with pgsched.queries.named_queries()) with the index each one uses.

    python bench/scale.py --jobs 100000 --due 100 --idle-seconds 60
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg.rows import dict_row

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    ROOT,
    base_parser,
    database,
    env_for,
    finish_params,
    log,
    machine,
    print_table,
    rows,
    runners,
    scalar,
    server,
    write_result,
)
from pgsched.planning import DueJob, plan_claim
from pgsched.queries import named_queries
from pgsched.store import tick_params

EVERY = "* * * * * *"


def timed_sync(dsn: str, env: dict[str, str]) -> tuple[float, str]:
    t0 = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "pgsched", "--app", "bench.apps:scale", "sync"],
        env=env_for(dsn, env),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise SystemExit(f"pgsched sync failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return time.monotonic() - t0, out.stderr.strip().splitlines()[-1]


def cpu_window(dsn: str, pid: int, seconds: float) -> dict[str, Any]:
    p = psutil.Process(pid)
    before, t0 = p.cpu_times(), time.monotonic()
    runs0 = scalar(dsn, "SELECT count(*) FROM pgsched.runs")
    time.sleep(seconds)
    after, wall = p.cpu_times(), time.monotonic() - t0
    runs = scalar(dsn, "SELECT count(*) FROM pgsched.runs") - runs0
    cpu = (after.user - before.user) + (after.system - before.system)
    return {
        "seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 3),
        "cpu_percent_of_core": round(100 * cpu / wall, 2),
        "runs": runs,
        "cpu_ms_per_run": round(1000 * cpu / runs, 3) if runs else None,
    }


def runner_cpu(dsn: str, env: dict[str, str], args: Any) -> dict[str, Any]:
    """One runner (its start-up sync of all jobs included in the wait); CPU with the every-second
    jobs due, then with them paused by SQL (nothing due at all), then they are resumed."""
    out: dict[str, Any] = {}
    t0 = time.monotonic()
    with runners(dsn, "bench.apps:scale", 1, "scale", [], env, ready_timeout=1800) as (proc,):
        out["runner_start_seconds"] = round(time.monotonic() - t0, 1)
        log(f"  runner up after {out['runner_start_seconds']}s (its own sync included)")
        time.sleep(3)
        log(f"runner CPU over {args.idle_seconds:g}s, {args.due} jobs due every second")
        out["due"] = cpu_window(dsn, proc.pid, args.idle_seconds)
        log(f"  {out['due']}")
        if not args.skip_truly_idle:
            rows(
                dsn, f"UPDATE pgsched.jobs SET paused = true WHERE schedule = '{EVERY}' RETURNING 1"
            )
            time.sleep(3)
            log(f"runner CPU over {args.idle_seconds:g}s, nothing due (those jobs paused)")
            out["idle"] = cpu_window(dsn, proc.pid, args.idle_seconds)
            log(f"  {out['idle']}")
            rows(
                dsn,
                f"UPDATE pgsched.jobs SET paused = false WHERE schedule = '{EVERY}' RETURNING 1",
            )
    return out


def explain_all(dsn: str) -> dict[str, dict[str, Any]]:
    q = named_queries()
    out: dict[str, dict[str, Any]] = {}
    with psycopg.connect(dsn) as conn:  # one transaction, rolled back
        conn.execute("ANALYZE pgsched.jobs; ANALYZE pgsched.schedules; ANALYZE pgsched.runs")
        conn.commit()
        conn.execute(
            "INSERT INTO pgsched.runs (job_name) SELECT 'bench-noop' FROM generate_series(1, 1000)"
        )
        conn.execute("INSERT INTO pgsched.runners (id, hostname, pid) VALUES ('explain', 'h', 1)")
        conn.execute(q["plan_by_index"])  # as every claim and result transaction starts
        version = scalar(dsn, "SELECT code_version FROM pgsched.definitions LIMIT 1")
        params: dict[str, dict[str, Any]] = {
            "lock_due_jobs": {
                "runner": "explain",
                "code_version": version,
                "limit": 100,
                "ahead": 0,
                "lookahead": 0.5,
                "lease_timeout": 15.0,
            },
            "claim_pending": {"limit": 100, "runner": "explain", "code_version": version},
            "seconds_until_due": {"code_version": version},
            "reap_lost_runners": {"lease_timeout": 15.0},
        }
        for name in ["lock_due_jobs", "seconds_until_due"]:
            out[name] = _explain(conn, name, q[name], params[name])
        # record_ticks (step 2 of the tick claim) for what lock_due_jobs locked, as the store does
        conn.execute("SAVEPOINT t")
        cur = conn.cursor(row_factory=dict_row)
        locked = cur.execute(q["lock_due_jobs"], params["lock_due_jobs"]).fetchall()
        names = {"names": [r["name"] for r in locked], "keys": [r["key"] for r in locked]}
        out["job_activity"] = _explain(conn, "job_activity", q["job_activity"], names)
        due = [DueJob(**r, busy=False) for r in locked]
        ticks = tick_params("explain", plan_claim(due, 100))
        out["record_ticks"] = _explain(conn, "record_ticks", q["record_ticks"], ticks)
        conn.execute("ROLLBACK TO SAVEPOINT t")
        conn.execute("SAVEPOINT c")  # EXPLAIN ANALYZE runs the claim: undo it, then claim
        out["claim_pending"] = _explain(
            conn, "claim_pending", q["claim_pending"], params["claim_pending"]
        )
        conn.execute("ROLLBACK TO SAVEPOINT c")
        claimed = conn.execute(q["claim_pending"], params["claim_pending"]).fetchall()
        out["finish_runs"] = _explain(conn, "finish_runs", q["finish_runs"], finish_params(claimed))
        out["reap_lost_runners"] = _explain(
            conn, "reap_lost_runners", q["reap_lost_runners"], params["reap_lost_runners"]
        )
        conn.rollback()
    return out


def _explain(conn: psycopg.Connection, name: str, query: str, params: dict) -> dict[str, Any]:
    conn.execute("SAVEPOINT e")
    plan = "\n".join(
        r[0] for r in conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {query}", params).fetchall()
    )
    conn.execute("ROLLBACK TO SAVEPOINT e")
    print(f"\n--- {name}\n{plan}")
    ms = re.search(r"Execution Time: ([\d.]+) ms", plan)
    return {
        "plan": plan,
        "execution_ms": float(ms.group(1)) if ms else None,
        "indexes": sorted(
            set(re.findall(r"Index (?:Only )?Scan(?: Backward)? using (\w+)", plan))
            | set(re.findall(r"Bitmap Index Scan on (\w+)", plan))
        ),
        "seq_scans": sorted(set(re.findall(r"Seq Scan on (\w+)", plan))),
    }


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=100, help="jobs on '* * * * * *'")
    parser.add_argument("--idle-seconds", type=float, default=60)
    parser.add_argument("--skip-truly-idle", action="store_true", help="skip the run with 0 due")
    parser.add_argument("--skip-resync", action="store_true", help="skip the unchanged re-sync")
    parser.add_argument(
        "--spreads",
        default="second,minute",
        help="schedules to sync: 'second' (daily at a random second: ~86,000 distinct "
        "expressions, croniter's worst case; the runner part uses it), 'minute' (1,440)",
    )
    args = parser.parse_args()
    spreads = args.spreads.split(",")
    env = {"PGSCHED_BENCH_SCALE_JOBS": str(args.jobs), "PGSCHED_BENCH_SCALE_DUE": str(args.due)}
    result: dict[str, Any] = {"params": vars(args), "sync_seconds": {}}
    with server(args.dsn) as pg:
        for spread in spreads[1:]:  # sync figures only, each in a database of its own
            with database(pg) as other:
                sync_figures(other, {**env, "PGSCHED_BENCH_SCALE_SPREAD": spread}, spread, result)
        with database(pg) as dsn:
            env["PGSCHED_BENCH_SCALE_SPREAD"] = spreads[0]
            sync_figures(dsn, env, spreads[0], result, not args.skip_resync)
            measure_runner(dsn, env, args, result)

    print(f"\nscale: {args.jobs:,} jobs, {args.due} due every second")
    table = []
    for spread in spreads:
        for kind in ("first", "unchanged"):
            if f"{kind}_{spread}" in result["sync_seconds"]:
                seconds = result["sync_seconds"][f"{kind}_{spread}"]
                table.append([f"sync, {kind}, spread={spread} (s)", seconds, 10.0])
    table += [
        ["runner start incl. its sync (s)", result["runner_start_seconds"], float("nan")],
        [f"runner CPU %, {args.due} due/s", result["runner_cpu_due"]["cpu_percent_of_core"], 2.0],
    ]
    if "runner_cpu_idle" in result:
        table.append(
            ["runner CPU %, none due", result["runner_cpu_idle"]["cpu_percent_of_core"], 2.0]
        )
    print_table(["", "measured", "target"], table)
    print()
    print_table(
        ["query", "ms", "indexes", "seq scans"],
        [
            [n, e["execution_ms"], ",".join(e["indexes"]), ",".join(e["seq_scans"]) or "-"]
            for n, e in result["explain"].items()
        ],
    )
    write_result("scale", args.tag, result)


def sync_figures(
    dsn: str, env: dict[str, str], spread: str, result: dict[str, Any], resync: bool = True
) -> None:
    """`pgsched sync` as a user runs it, into an empty schema, then again unchanged."""
    first, msg = timed_sync(dsn, env)
    log(f"  first sync, spread={spread}: {first:.2f}s: {msg}")
    result["sync_seconds"][f"first_{spread}"] = round(first, 2)
    result.setdefault("distinct_schedules", {})[spread] = scalar(
        dsn, "SELECT count(DISTINCT schedule) FROM pgsched.jobs"
    )
    if resync:
        again, msg = timed_sync(dsn, env)
        log(f"  re-sync, spread={spread}: {again:.2f}s: {msg}")
        result["sync_seconds"][f"unchanged_{spread}"] = round(again, 2)


def measure_runner(dsn: str, env: dict[str, str], args: Any, result: dict[str, Any]) -> None:
    """Runner start, its CPU with jobs due and with none, then EXPLAIN of the hot queries."""
    result["table_sizes"] = {
        t: scalar(dsn, f"SELECT pg_size_pretty(pg_total_relation_size('pgsched.{t}'))")
        for t in ("jobs", "runs")
    }
    cpu = runner_cpu(dsn, env, args)
    result["runner_start_seconds"] = cpu["runner_start_seconds"]
    result["runner_cpu_due"] = cpu["due"]
    if "idle" in cpu:
        result["runner_cpu_idle"] = cpu["idle"]
    # One due tick per every-second job (not the ticks missed while paused), so that
    # lock_due_jobs and record_ticks are explained on the steady-state shape.
    rows(
        dsn,
        "UPDATE pgsched.schedules SET next_run_at = date_trunc('second', now()) "
        f"WHERE cron = '{EVERY}' RETURNING 1",
    )
    time.sleep(0.1)
    result["explain"] = explain_all(dsn)
    result["machine"] = machine(dsn)


if __name__ == "__main__":
    main()
