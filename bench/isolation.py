"""Process isolation's costs: a worker's start-up, a run's round trip, a worker's memory.

No database is needed: runs are made up (`ClaimedRun`), their outcomes not written, and the
job (`tests/apps/isolated.py: iso-echo`) opens no connection.

    python bench/isolation.py --starts 10 --runs 500
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import base_parser, log, machine, print_table, summary_ms, write_result
from pgsched.execution import Execution, UserPools
from pgsched.isolation import ProcessPool, WorkerSpec
from pgsched.runs import ClaimedRun
from pgsched.worker import load_registry

APP = "tests.apps.isolated:ext"
DSN = "postgresql://nobody@localhost/never-connected"
SPEC = WorkerSpec(apps=(APP,), profile_path=None, dsn=DSN, schema="pgsched", runner_id="bench")


def claimed(run_id: int) -> ClaimedRun:
    return ClaimedRun(
        id=run_id,
        job_name="iso-echo",
        trigger="manual",
        scheduled_for=None,
        attempt=1,
        params={},
        lease=str(uuid.uuid4()),
        claimed_at=time.time(),
        claimed_mono=time.monotonic(),
    )


async def starts(count: int) -> list[float]:
    """Seconds from asking for a worker to its `ready` (imports of pgsched and the app done)."""
    took = []
    for _ in range(count):
        pool = ProcessPool(SPEC, max_workers=1)
        began = time.monotonic()
        await pool.start(prewarm=1)
        took.append(time.monotonic() - began)
        await pool.close(grace=5)
    return took


async def round_trips(count: int) -> tuple[list[float], list[float], int]:
    """Seconds per no-op run: through a warm worker, and in this process's thread pool."""
    definition = load_registry([APP], None, DSN, "pgsched")["iso-echo"]
    pool = ProcessPool(SPEC, max_workers=1)
    await pool.start(prewarm=1)
    pid = 0
    isolated = []
    try:
        for i in range(count):
            began = time.monotonic()
            outcome = await pool.run(claimed(i), definition)
            isolated.append(time.monotonic() - began)
            assert outcome.status == "succeeded", outcome
            assert outcome.data is not None
            pid = outcome.data["pid"]
        rss_kb = _rss_kb(pid)
    finally:
        await pool.close(grace=5)
    threaded = []
    pools = UserPools(DSN)
    for i in range(count):
        began = time.monotonic()
        await Execution(claimed(i), definition, pools, "bench").run(None)
        threaded.append(time.monotonic() - began)
    return isolated, threaded, rss_kb


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=10)
    parser.add_argument("--runs", type=int, default=500)
    args = parser.parse_args()
    os.chdir(Path(__file__).resolve().parent.parent)  # the test app imports from here
    log(f"{args.starts} worker starts")
    start_s = asyncio.run(starts(args.starts))
    log(f"{args.runs} no-op runs through a warm worker, then in a thread")
    isolated, threaded, rss_kb = asyncio.run(round_trips(args.runs))
    result = {
        "machine": machine(),
        "worker_start_ms": summary_ms(start_s),
        "run_isolated_ms": summary_ms(isolated),
        "run_threaded_ms": summary_ms(threaded),
        "worker_rss_mb": round(rss_kb / 1024, 1),
    }
    print_table(
        ["what", "median ms", "p90 ms", "max ms"],
        [
            ["worker start → ready", *_three(start_s)],
            ["no-op run, warm worker", *_three(isolated)],
            ["no-op run, thread", *_three(threaded)],
        ],
    )
    print(f"idle worker RSS after {args.runs} runs: {result['worker_rss_mb']} MB")
    write_result("isolation", args.tag, result)


def _three(values: list[float]) -> list[float]:
    ordered = sorted(values)
    p90 = ordered[int(0.9 * (len(ordered) - 1))]
    return [statistics.median(values) * 1000, p90 * 1000, ordered[-1] * 1000]


if __name__ == "__main__":
    main()
