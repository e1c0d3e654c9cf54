"""Fire precision: how late do `* * * * * *` ticks start?

N no-op jobs fire every second; R runner processes claim them. For every tick in the measured
window, lag = started_at - scheduled_for (both from pgsched.runs; started_at is the moment the
callable began, on the database clock).

    python bench/fire_precision.py --jobs 100 --runners 3 --seconds 60
    python bench/fire_precision.py --jobs 1000 --runners 3 --seconds 60
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    base_parser,
    database,
    distribution_ms,
    log,
    machine,
    print_latency,
    print_table,
    rows,
    runners,
    server,
    summary_ms,
    tick_window,
    write_result,
)


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--runners", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5, help="seconds ignored after start")
    parser.add_argument(
        "--concurrency", type=int, default=10, help="runner --concurrency (pgsched default 10)"
    )
    args = parser.parse_args()

    with server(args.dsn) as pg, database(pg) as dsn:
        env = {"PGSCHED_BENCH_JOBS": str(args.jobs)}
        log(f"{args.jobs} jobs on '* * * * * *', {args.runners} runners, {args.seconds}s")
        with runners(
            dsn,
            "bench.apps:ext",
            args.runners,
            "fire",
            ["--concurrency", str(args.concurrency)],
            env,
        ) as procs:
            start, end, cpu = tick_window(dsn, procs, args.warmup, args.seconds)
        data = rows(
            dsn,
            """
            SELECT status, runner, extract(epoch FROM started_at - scheduled_for)::float8,
                   extract(epoch FROM created_at - scheduled_for)::float8
            FROM pgsched.runs
            WHERE trigger = 'schedule' AND job_name LIKE 'bench-tick-%%'
              AND scheduled_for >= %s AND scheduled_for < %s
            """,
            (start, end),
        )
        info = machine(dsn)

    done = [(lag, wake) for status, _, lag, wake in data if status == "succeeded" and lag]
    lags = [lag for lag, _ in done]
    # created_at is the claim transaction's start: how late the claim began, vs. how long it
    # and the local start took after that.
    wakes = [wake for _, wake in done]
    statuses = Counter(status for status, _, _, _ in data)
    per_runner = Counter(runner for _, runner, _, _ in data)
    expected = args.jobs * args.seconds
    stats = summary_ms(lags)
    print(
        f"\nfire precision: {args.jobs} jobs x {args.seconds}s, {args.runners} runners "
        f"(concurrency {args.concurrency}); {expected:,} ticks expected, {len(data):,} recorded"
    )
    print_latency("lag = started_at - scheduled_for", stats)
    print_latency("of which: claim began = created_at - scheduled_for", summary_ms(wakes))
    print(f"\nstatuses: {dict(statuses)}")
    print(f"runs per runner: {sorted(per_runner.values(), reverse=True)}")
    print(f"runner CPU, % of one core: {cpu}")
    print("\ntargets (100 jobs, 3 runners): p50 <= 5 ms, p99 <= 20 ms")
    print_table(
        ["", "p50 ms", "p99 ms"],
        [["measured", stats.get("p50", 0.0), stats.get("p99", 0.0)], ["target", 5.0, 20.0]],
    )
    write_result(
        "fire_precision",
        args.tag or f"{args.jobs}j{args.runners}r",
        {
            "params": vars(args),
            "machine": info,
            "expected_ticks": expected,
            "recorded_ticks": len(data),
            "statuses": dict(statuses),
            "runs_per_runner": sorted(per_runner.values(), reverse=True),
            "runner_cpu_percent": cpu,
            "lag_ms": stats,
            "claim_began_ms": summary_ms(wakes),
            "lag_cdf_ms": distribution_ms(lags),
        },
    )


if __name__ == "__main__":
    main()
