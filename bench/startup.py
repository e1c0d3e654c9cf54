"""Start-up punctuality: how late are the first ticks after runners start together?

Each round: a fresh database, N no-op jobs on `* * * * * *`, R runner processes started at
once. Measured (lag = started_at - scheduled_for): the ticks of the first F seconds after the
first runner registered (the others still starting: importing, syncing), those of the F
seconds after the last one registered, and the same runners' steady state later on, in the
same round.

    python bench/startup.py --rounds 5 --jobs 20 --runners 3
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    base_parser,
    database,
    log,
    machine,
    print_latency,
    rows,
    runners,
    scalar,
    server,
    summary_ms,
    write_result,
)

LAG_SQL = """
SELECT extract(epoch FROM scheduled_for - %s::timestamptz)::float8 AS tick,
       extract(epoch FROM started_at - scheduled_for)::float8 AS lag
FROM pgsched.runs
WHERE trigger = 'schedule' AND status = 'succeeded' AND job_name LIKE 'bench-tick-%%'
  AND scheduled_for > %s::timestamptz
ORDER BY scheduled_for
"""


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--runners", type=int, default=3)
    parser.add_argument("--first", type=int, default=2, help="ticks (seconds) that count as first")
    parser.add_argument("--steady", type=int, default=10, help="seconds of steady state after")
    args = parser.parse_args()

    early_lags: list[float] = []
    first_lags: list[float] = []
    steady_lags: list[float] = []
    per_round = []
    with server(args.dsn) as pg:
        for round_no in range(args.rounds):
            with database(pg) as dsn:
                env = {"PGSCHED_BENCH_JOBS": str(args.jobs)}
                with runners(dsn, "bench.apps:ext", args.runners, f"start{round_no}", [], env):
                    ready = scalar(dsn, "SELECT max(started_at) FROM pgsched.runners")
                    began = scalar(dsn, "SELECT min(started_at) FROM pgsched.runners")
                    time.sleep(args.first + args.steady + 2)
                data = rows(dsn, LAG_SQL, (ready, ready))
                early = [
                    lag
                    for tick, lag in rows(dsn, LAG_SQL, (began, began))
                    if tick <= args.first and lag is not None
                ]
            early_lags += early
            first = [lag for tick, lag in data if tick <= args.first and lag is not None]
            steady = [
                lag
                for tick, lag in data
                if args.first + 1 < tick <= args.first + args.steady and lag is not None
            ]
            first_lags += first
            steady_lags += steady
            stats = summary_ms(first)
            per_round.append(stats)
            log(
                f"round {round_no + 1}: first {len(first)} ticks p50 {stats.get('p50', 0):.1f} "
                f"max {stats.get('max', 0):.1f} ms; steady p50 "
                f"{summary_ms(steady).get('p50', 0):.1f} ms"
            )
        info = machine()

    print(
        f"\nstart-up punctuality: {args.rounds} rounds, {args.runners} runners started at once, "
        f"{args.jobs} jobs every second"
    )
    print_latency(
        f"first {args.first} s of ticks after the first runner registered", summary_ms(early_lags)
    )
    print_latency(
        f"first {args.first} s of ticks after the last runner registered", summary_ms(first_lags)
    )
    print_latency(f"steady state (the {args.steady} s after)", summary_ms(steady_lags))
    print(f"\nper round, max of the first ticks (ms): {[r.get('max') for r in per_round]}")
    write_result(
        "startup",
        args.tag or f"{args.runners}r{args.jobs}j",
        {
            "params": vars(args),
            "machine": info,
            "after_first_registered_ms": summary_ms(early_lags),
            "first_ms": summary_ms(first_lags),
            "steady_ms": summary_ms(steady_lags),
            "per_round_first_ms": per_round,
        },
    )


if __name__ == "__main__":
    main()
