"""Schedules as rows (issue 12): validation at scale, idle CPU, fire lag, EXPLAIN.

Subcommands (each starts its own embedded PostgreSQL, fsync on, or uses --dsn, given before
the subcommand; `compare` hands it to every run it starts):

    python bench/schedules.py validate --rows 1000000 --expressions 10000 --runners 1,3
        One INSERT ... SELECT of N runtime schedules of one job (`bench-noop`) over E distinct
        expressions that do not fire during the benchmark (`s m h 1 1 *`: Jan 1), params per
        row ({"tenant": i}), every 100th row a bad expression (`--invalid-every`). Time from the
        INSERT's commit until no row is left without next_run_at or error, per runner count
        (fresh database each); then, with the first runner count, the runner's CPU over
        --idle-seconds with the N schedules, against the same runner idle before the INSERT.

    python bench/schedules.py lag --schedules 1000 --runners 3 --seconds 60
        N runtime schedules `* * * * * *` (of `bench-noop`), R runners; lag = started_at -
        scheduled_for of every run in the window, as bench/fire_precision.py measures it.

    python bench/schedules.py compare --parent /work/wt-parent12 --rounds 2
        Side by side: `bench/fire_precision.py --jobs 1000 --runners 3 --seconds 60` in the
        parent worktree (its own .venv) and in this one, and `lag` here, alternated round after
        round (parent/new/lag/parent/new/lag); one table of the results.

    python bench/schedules.py explain --rows 1000000 --due 100
        EXPLAIN (ANALYZE, BUFFERS) of the hot-path queries (bench/scale.py's explain_all, the
        store's own query text) with N runtime schedules of which `--due` are due now.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
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
    scalar,
    server,
    tick_window,
    write_result,
)

APP = "bench.apps:ext"
# manual-only, overlap allow: its runtime schedules are the only ticks (PGSCHED_BENCH_JOB:
# another job of bench.apps:ext, e.g. bench-async-noop)
JOB = os.environ.get("PGSCHED_BENCH_JOB", "bench-noop")
NO_JOBS = {"PGSCHED_BENCH_JOBS": "0"}  # no every-second code jobs next to the runtime rows

UNRESOLVED_ROWS = "SELECT 1 FROM pgsched.schedules WHERE next_run_at IS NULL AND error IS NULL"
UNRESOLVED = "SELECT count(*) FROM pgsched.schedules WHERE next_run_at IS NULL AND error IS NULL"


def insert_schedules(dsn: str, n: int, expressions: int, invalid_every: int) -> dict[str, Any]:
    """One INSERT ... SELECT of n runtime schedules; returns its duration and commit time."""
    # (s, m, h) from k in [0, expressions): distinct expressions, all on Jan 1 (not today).
    # Every `invalid_every`-th row: hour 25, a distinct bad expression per (s, m).
    statement = """
        INSERT INTO pgsched.schedules (job_name, key, cron, params)
        SELECT %(job)s, 'tenant-' || i,
               CASE WHEN %(bad)s > 0 AND i %% %(bad)s = 0
                    THEN format('%%s %%s 25 1 1 *', (i / %(bad)s) %% 60, (i / %(bad)s / 60) %% 60)
                    ELSE format('%%s %%s %%s 1 1 *', (i %% %(e)s) %% 60, (i %% %(e)s) / 60 %% 60,
                                (i %% %(e)s) / 3600)
               END,
               jsonb_build_object('tenant', i)
        FROM generate_series(1, %(n)s) AS i
    """
    with psycopg.connect(dsn) as conn:
        t0 = time.monotonic()
        conn.execute(statement, {"job": JOB, "n": n, "e": expressions, "bad": invalid_every})
        t1 = time.monotonic()
        conn.commit()
        committed = time.monotonic()
    return {
        "insert_seconds": round(t1 - t0, 2),
        "commit_seconds": round(committed - t1, 3),
        "committed_at": committed,
    }


def cpu_window(pid: int, seconds: float) -> dict[str, Any]:
    p = psutil.Process(pid)
    before, t0 = p.cpu_times(), time.monotonic()
    time.sleep(seconds)
    after, wall = p.cpu_times(), time.monotonic() - t0
    cpu = (after.user - before.user) + (after.system - before.system)
    return {
        "seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 3),
        "cpu_percent_of_core": round(100 * cpu / wall, 2),
    }


def validate_once(pg: Any, args: Any, count: int, idle: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"runners": count}
    with database(pg) as dsn, runners(dsn, APP, count, f"validate{count}", [], NO_JOBS) as procs:
        pids = [p.pid for p in procs]
        time.sleep(3)
        if idle:
            log(f"runner CPU over {args.idle_seconds:g}s, no runtime schedules")
            out["idle_before"] = cpu_window(pids[0], args.idle_seconds)
            log(f"  {out['idle_before']}")
        ps = [psutil.Process(pid) for pid in pids]
        cpu0 = [p.cpu_times() for p in ps]
        log(f"{count} runner(s): INSERT ... SELECT of {args.rows:,} schedules")
        ins = insert_schedules(dsn, args.rows, args.expressions, args.invalid_every)
        out.update({k: v for k, v in ins.items() if k != "committed_at"})
        log(f"  inserted in {ins['insert_seconds']}s; waiting for validation")
        progress = []
        left, counted = True, 0.0
        with psycopg.connect(dsn, autocommit=True) as poll:
            while left:
                # The count itself reads every unresolved row (0.2-0.3 s of a core at 1M):
                # polled every 0.5 s it took half a core from the runners. So: EXISTS (the
                # first live entry of the partial index, ~ms) every --poll seconds, the count
                # for the progress table every --count-every seconds.
                left = poll.execute(f"SELECT EXISTS ({UNRESOLVED_ROWS})").fetchone()[0]  # type: ignore[index]
                now = time.monotonic()
                elapsed = now - ins["committed_at"]
                if left and now - counted >= args.count_every:
                    progress.append((round(elapsed, 2), scalar(dsn, UNRESOLVED)))
                    counted = now
                if elapsed > args.timeout:
                    log(f"  timed out after {elapsed:.0f}s")
                    break
                if left:
                    time.sleep(args.poll)
        seconds = time.monotonic() - ins["committed_at"]
        left = scalar(dsn, UNRESOLVED)
        progress.append((round(seconds, 2), left))
        cpu1 = [p.cpu_times() for p in ps]
        out["validate_seconds"] = round(seconds, 2)
        out["rows_per_second"] = round(args.rows / seconds)
        out["left"] = left
        out["progress"] = progress
        out["validation_cpu_seconds_per_runner"] = [
            round((b.user + b.system) - (a.user + a.system), 2)
            for a, b in zip(cpu0, cpu1, strict=True)
        ]
        counts = rows(
            dsn,
            "SELECT count(*) FILTER (WHERE next_run_at IS NOT NULL),"
            " count(*) FILTER (WHERE error IS NOT NULL),"
            " count(DISTINCT cron) FILTER (WHERE error IS NULL),"
            " min(next_run_at), max(next_run_at) FROM pgsched.schedules",
        )[0]
        out["valid"], out["errors"], out["distinct_valid"] = counts[0], counts[1], counts[2]
        out["next_run_at_range"] = [str(counts[3]), str(counts[4])]
        out["sample_error"] = scalar(
            dsn, "SELECT error FROM pgsched.schedules WHERE error IS NOT NULL LIMIT 1"
        )
        log(
            f"  validated in {seconds:.1f}s ({out['rows_per_second']:,} rows/s): "
            f"{out['valid']:,} valid, {out['errors']:,} errors"
        )
        if idle:
            time.sleep(3)
            log(f"runner CPU over {args.idle_seconds:g}s, {args.rows:,} schedules validated")
            out["idle_after"] = cpu_window(pids[0], args.idle_seconds)
            log(f"  {out['idle_after']}")
            out["runs"] = scalar(dsn, "SELECT count(*) FROM pgsched.runs")
        out["machine"] = machine(dsn)
    return out


def cmd_validate(args: Any) -> None:
    counts = [int(c) for c in args.runners.split(",")]
    results = []
    with server(args.dsn) as pg:
        for i, count in enumerate(counts):
            results.append(validate_once(pg, args, count, idle=i == 0 and args.idle_seconds > 0))
    print(
        f"\nvalidation: {args.rows:,} runtime schedules over {args.expressions:,} expressions, "
        f"every {args.invalid_every}th invalid (one INSERT ... SELECT)"
    )
    print_table(
        [
            "runners",
            "insert s",
            "validated s",
            "rows/s",
            "valid",
            "errors",
            "left",
            "runner CPU s (each)",
            "target s",
        ],
        [
            [
                r["runners"],
                r["insert_seconds"],
                r["validate_seconds"],
                r["rows_per_second"],
                r["valid"],
                r["errors"],
                r["left"],
                " ".join(f"{c:.1f}" for c in r["validation_cpu_seconds_per_runner"]),
                60.0,
            ]
            for r in results
        ],
    )
    if len(results) > 1:
        print(
            f"speed-up {counts[-1]} vs {counts[0]} runners: "
            f"{results[0]['validate_seconds'] / results[-1]['validate_seconds']:.2f}x"
        )
    print(f"sample error: {results[0]['sample_error']}")
    idle = results[0]
    if "idle_after" in idle:
        before = idle["idle_before"]["cpu_percent_of_core"]
        after = idle["idle_after"]["cpu_percent_of_core"]
        print(f"\nidle runner CPU over {args.idle_seconds:g}s, % of one core")
        print_table(
            ["", "no runtime schedules", f"{args.rows:,} schedules", "ratio", "target"],
            [["measured", before, after, round(after / before, 2) if before else "-", 1.0]],
        )
        print(f"runs fired during the benchmark (should be 0): {idle['runs']}")
    write_result(
        "schedules_validate",
        args.tag,
        {
            "params": vars(args),
            "machine": results[0]["machine"],
            "results": results,
        },
    )


# --- fire lag ---------------------------------------------------------------------------


def cmd_lag(args: Any) -> None:
    with server(args.dsn) as pg, database(pg) as dsn:
        # One runner syncs the definitions; the rows go in before the others start.
        with runners(dsn, APP, 1, "lag-sync", [], NO_JOBS):
            pass
        rows(
            dsn,
            "INSERT INTO pgsched.schedules (job_name, key, cron, params) "
            "SELECT %s, 'every-' || i, '* * * * * *', jsonb_build_object('i', i) "
            "FROM generate_series(1, %s) AS i RETURNING 1",
            (JOB, args.schedules),
        )
        log(
            f"{args.schedules} runtime schedules on '* * * * * *', {args.runners} runners, "
            f"{args.seconds}s (concurrency {args.concurrency})"
        )
        with runners(
            dsn, APP, args.runners, "lag", ["--concurrency", str(args.concurrency)], NO_JOBS
        ) as procs:
            start, end, cpu = tick_window(dsn, procs, args.warmup, args.seconds)
        data = rows(
            dsn,
            f"""
            SELECT {FIRE_LAG_COLUMNS}, params
            FROM pgsched.runs
            WHERE trigger = 'schedule' AND job_name = %s AND schedule_key LIKE 'every-%%'
              AND scheduled_for >= %s AND scheduled_for < %s
            """,
            (JOB, start, end),
        )
        info = machine(dsn)
    with_params = sum(1 for row in data if row[5] and "i" in row[5])
    report_fire_lag(
        "schedules_lag",
        args.tag or f"{args.schedules}s{args.runners}r",
        f"fire lag: {args.schedules} runtime schedules x {args.seconds}s, {args.runners} runners "
        f"(concurrency {args.concurrency}), {with_params:,} runs with their params",
        [row[:5] for row in data],
        args.schedules * args.seconds,
        cpu,
        info,
        vars(args),
        {"with_params": with_params},
    )


def cmd_compare(args: Any) -> None:
    """parent / new alternated, fire_precision.py in each worktree, then `lag` here."""
    parent = Path(args.parent).resolve()
    fire = ["--jobs", str(args.jobs), "--runners", "3", "--seconds", str(args.seconds)]
    if args.concurrency:
        fire += ["--concurrency", str(args.concurrency)]
    lag = [
        "bench/schedules.py",
        "lag",
        "--schedules",
        str(args.jobs),
        "--runners",
        "3",
        "--seconds",
        str(args.seconds),
    ]
    if args.concurrency:
        lag += ["--concurrency", str(args.concurrency)]
    plan: list[tuple[str, Path, list[str]]] = []
    for i in range(args.rounds):  # parent / new / new with runtime rows, round after round
        tag = ["--tag", f"cmp{args.tag}-{i}"]
        if args.dsn:  # each child would start its own embedded server instead
            tag += ["--dsn", args.dsn]
        plan.append(("parent, jobs", parent, ["bench/fire_precision.py", *fire, *tag]))
        plan.append(("new, jobs", ROOT, ["bench/fire_precision.py", *fire, *tag]))
        if not args.no_lag:  # --tag and --dsn belong to the top-level parser
            plan.append(("new, runtime schedules", ROOT, [lag[0], *tag, *lag[1:]]))
    table = []
    for label, tree, cmd in plan:
        python = tree / ".venv" / "bin" / "python"
        log(f"{label}: {tree.name}$ {python.relative_to(tree)} {' '.join(cmd)}")
        proc = subprocess.run([str(python), *cmd], cwd=tree, capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"{label} failed:\n{proc.stderr[-3000:]}")
        path = re.search(r"result written to (\S+)", proc.stdout)
        assert path, proc.stdout[-2000:]
        res = json.loads((tree / path.group(1)).read_text())
        lag_ms = res["lag_ms"]
        table.append(
            [
                label,
                res["machine"].get("pgsched_commit", "?"),
                res["recorded_ticks"],
                res["expected_ticks"],
                lag_ms["p50"],
                lag_ms["p90"],
                lag_ms["p99"],
                lag_ms["max"],
                " ".join(str(c) for c in res["runner_cpu_percent"]),
            ]
        )
        log(f"  p50 {lag_ms['p50']} p99 {lag_ms['p99']} max {lag_ms['max']} ms")
    print(
        f"\nfire lag, {args.jobs} every-second jobs (or runtime schedules), 3 runners, "
        f"{args.seconds}s, in order of the runs"
    )
    headers = [
        "code",
        "commit",
        "ticks",
        "expected",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "runner CPU %",
    ]
    print_table(headers, table)
    write_result(
        "schedules_compare",
        args.tag,
        {
            "params": vars(args),
            "machine": machine(),
            "headers": headers,
            "table": table,
        },
    )


# --- EXPLAIN ----------------------------------------------------------------------------


def cmd_explain(args: Any) -> None:
    from bench.scale import explain_all

    with server(args.dsn) as pg, database(pg) as dsn:
        out = subprocess.run(
            [sys.executable, "-m", "pgsched", "--app", APP, "sync"],
            env=env_for(dsn, NO_JOBS),
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if out.returncode:
            raise SystemExit(f"pgsched sync failed:\n{out.stderr[-3000:]}")
        log(f"{args.rows:,} runtime schedules (validated: next_run_at set), {args.due} due now")
        with psycopg.connect(dsn) as conn:
            conn.execute(
                """
                INSERT INTO pgsched.schedules (job_name, key, cron, params, next_run_at)
                SELECT %(job)s, 'tenant-' || i,
                       CASE WHEN i <= %(due)s THEN '* * * * * *'
                            ELSE format('%%s %%s %%s 1 1 *', (i %% 10000) %% 60,
                                        (i %% 10000) / 60 %% 60, (i %% 10000) / 3600) END,
                       jsonb_build_object('tenant', i),
                       CASE WHEN i <= %(due)s THEN date_trunc('second', now())
                            ELSE make_timestamptz(extract(year FROM now())::int + 1, 1, 1,
                                                  (i %% 10000) / 3600, (i %% 10000) / 60 %% 60,
                                                  (i %% 10000) %% 60, 'UTC') END
                FROM generate_series(1, %(n)s) AS i
                """,
                {"job": JOB, "due": args.due, "n": args.rows},
            )
            conn.commit()
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE pgsched.schedules")
            # One due tick per due schedule (not the ticks that passed during the VACUUM), so
            # that record_ticks is explained on the steady-state shape, as scale.py does.
            conn.execute(
                "UPDATE pgsched.schedules SET next_run_at = date_trunc('second', now()) "
                "WHERE cron = '* * * * * *' AND source = 'runtime'"
            )
        sizes = {
            t: scalar(dsn, f"SELECT pg_size_pretty(pg_relation_size('pgsched.{t}'))")
            for t in ("schedules", "schedules_due_idx")
        }
        time.sleep(0.1)
        result = explain_all(dsn)
        info = machine(dsn)
    print(f"\nEXPLAIN with {args.rows:,} schedules, {args.due} due; sizes {sizes}")
    table = []
    for name, e in result.items():
        plan = e["plan"]
        buffers = [int(b) for b in re.findall(r"Buffers: shared hit=(\d+)", plan)[:1]]
        due_rows = re.search(
            r"Index Scan using schedules_due_idx on schedules s.*?"
            r"\(actual time=[\d.]+\.\.[\d.]+ rows=([\d.]+)",
            plan,
        )
        table.append(
            [
                name,
                e["execution_ms"],
                buffers[0] if buffers else "-",
                due_rows.group(1) if due_rows else "-",
                ",".join(e["indexes"]),
                ",".join(e["seq_scans"]) or "-",
            ]
        )
    print_table(
        ["query", "ms", "top shared hit", "due-idx rows (1st)", "indexes", "seq scans"], table
    )
    write_result(
        "schedules_explain",
        args.tag,
        {
            "params": vars(args),
            "machine": info,
            "sizes": sizes,
            "explain": result,
        },
    )


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help="validation of a bulk INSERT, and idle CPU after it")
    v.add_argument("--rows", type=int, default=1_000_000)
    v.add_argument("--expressions", type=int, default=10_000)
    v.add_argument("--invalid-every", type=int, default=100, help="every Nth row invalid; 0: none")
    v.add_argument("--runners", default="1,3", help="runner counts, a fresh database each")
    v.add_argument("--idle-seconds", type=float, default=30, help="0: skip the idle CPU part")
    v.add_argument("--poll", type=float, default=0.2, help="seconds between EXISTS polls")
    v.add_argument("--count-every", type=float, default=5, help="seconds between counts")
    v.add_argument("--timeout", type=float, default=600)
    v.set_defaults(func=cmd_validate)
    lag = sub.add_parser("lag", help="fire lag of runtime schedules due every second")
    lag.add_argument("--schedules", type=int, default=1000)
    lag.add_argument("--runners", type=int, default=3)
    lag.add_argument("--seconds", type=int, default=60)
    lag.add_argument("--warmup", type=int, default=5)
    lag.add_argument("--concurrency", type=int, default=10)
    lag.set_defaults(func=cmd_lag)
    c = sub.add_parser("compare", help="parent vs new, alternated")
    c.add_argument("--parent", required=True, help="worktree of the parent commit, with .venv")
    c.add_argument("--rounds", type=int, default=2)
    c.add_argument("--no-lag", action="store_true", help="without the runtime-schedules runs")
    c.add_argument("--jobs", type=int, default=1000)
    c.add_argument("--seconds", type=int, default=60)
    c.add_argument("--concurrency", type=int, default=0, help="0: fire_precision's default")
    c.set_defaults(func=cmd_compare)
    e = sub.add_parser("explain", help="EXPLAIN of the hot-path queries at 1M schedules")
    e.add_argument("--rows", type=int, default=1_000_000)
    e.add_argument("--due", type=int, default=100)
    e.set_defaults(func=cmd_explain)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
