"""Runner metrics on the hot path: what `RunnerMetrics.run_finished` costs per outcome.

The drain benchmark finishes 30,000 runs/s on one runner, so every outcome's bookkeeping
counts. Measured with no database: the outcome path without metrics (the outbox append it
always does), with metrics (cached children per job, as the runner does), and with a
`.labels()` lookup per outcome (what caching avoids). Prints µs per outcome.

    python bench/runner_metrics.py --outcomes 200000 --jobs 100
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pgsched.runner.metrics import RunnerMetrics
from pgsched.runs import ClaimedRun, RunOutcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outcomes", type=int, default=200_000)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    tick = datetime(2026, 1, 1, tzinfo=UTC)
    runs = [
        ClaimedRun(i, f"job-{i % args.jobs}", "schedule", tick, 1, {}, "l", 0.0, 0.0)
        for i in range(args.outcomes)
    ]
    outcomes = [
        RunOutcome(i, "l", "succeeded", tick.timestamp() + 0.01, tick.timestamp() + 0.02)
        for i in range(args.outcomes)
    ]
    pairs = list(zip(outcomes, runs, strict=True))

    def without_metrics() -> None:
        outbox: deque[RunOutcome] = deque()
        for o, _ in pairs:
            outbox.append(o)

    def with_metrics() -> None:
        outbox: deque[RunOutcome] = deque()
        metrics = RunnerMetrics(heartbeat_age=lambda: 0.0, running=lambda: 0, slots=lambda: 1)
        for o, c in pairs:
            outbox.append(o)
            metrics.run_finished(o, c)

    def with_labels_each_time() -> None:
        outbox: deque[RunOutcome] = deque()
        metrics = RunnerMetrics(heartbeat_age=lambda: 0.0, running=lambda: 0, slots=lambda: 1)
        for o, c in pairs:
            outbox.append(o)
            metrics._finished.labels(c.job_name, o.status).inc()
            assert o.started_at is not None and o.finished_at is not None
            metrics._duration.labels(c.job_name).observe(o.finished_at - o.started_at)
            assert c.scheduled_for is not None
            metrics._fire_lag.labels(c.job_name).observe(o.started_at - c.scheduled_for.timestamp())

    for name, case in [
        ("outcome path without metrics", without_metrics),
        ("with metrics (cached children)", with_metrics),
        ("with .labels() per outcome", with_labels_each_time),
    ]:
        best = float("inf")
        for _ in range(args.repeat):
            start = time.perf_counter()
            case()
            best = min(best, time.perf_counter() - start)
        print(
            f"{name:<34} {best / args.outcomes * 1e6:6.2f} µs per outcome (best of {args.repeat})"
        )


if __name__ == "__main__":
    main()
