"""Fire precision: how late do `* * * * * *` ticks start?

N no-op jobs fire every second; R runner processes claim them. For every tick in the measured
window, lag = started_at - scheduled_for (both from pgsched.runs; started_at is the moment the
callable began, on the database clock).

    python bench/fire_precision.py --jobs 100 --runners 3 --seconds 60
    python bench/fire_precision.py --jobs 1000 --runners 3 --seconds 60
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    FIRE_LAG_COLUMNS,
    base_parser,
    database,
    log,
    machine,
    report_fire_lag,
    rows,
    runners,
    server,
    tick_window,
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
            f"""
            SELECT {FIRE_LAG_COLUMNS}
            FROM pgsched.runs
            WHERE trigger = 'schedule' AND job_name LIKE 'bench-tick-%%'
              AND scheduled_for >= %s AND scheduled_for < %s
            """,
            (start, end),
        )
        info = machine(dsn)
    report_fire_lag(
        "fire_precision",
        args.tag or f"{args.jobs}j{args.runners}r",
        f"fire precision: {args.jobs} jobs x {args.seconds}s, {args.runners} runners "
        f"(concurrency {args.concurrency})",
        data,
        args.jobs * args.seconds,
        cpu,
        info,
        vars(args),
    )


if __name__ == "__main__":
    main()
