"""Job definitions the benchmarks load into real `pgsched runner` processes.

Everything is driven by environment variables so one module serves every benchmark:

- `ext` (`--app bench.apps:ext`): PGSCHED_BENCH_JOBS no-op jobs on `* * * * * *`
  (fire precision), plus two manual-only jobs: `bench-noop` (sync) and `bench-async-noop`
  (async). Both allow overlap, so many requests of one job can run at once, as in a queue.
- `scale` (`--app bench.apps:scale`): PGSCHED_BENCH_SCALE_JOBS jobs (default 100,000), daily at
  seeded random times, of which PGSCHED_BENCH_SCALE_DUE (default 100) run every second.
  PGSCHED_BENCH_SCALE_SPREAD: `second` (default: random second of the day, ~86,000 distinct
  expressions, the worst case for croniter) or `minute` (random minute: 1,440 distinct).
"""

from __future__ import annotations

import os
import random
import time

from pgsched import Extension, JobContext

_pickup_file = None


def record_start(seq: object) -> None:
    """Append `seq wall-clock-time` to $BENCH_PICKUP_FILE (peers benchmark: one method for all)."""
    global _pickup_file
    if _pickup_file is None:
        _pickup_file = open(os.environ["BENCH_PICKUP_FILE"], "a", buffering=1)  # noqa: SIM115
    _pickup_file.write(f"{seq} {time.time()}\n")


def _noop(ctx: JobContext) -> None:
    return None


async def _pickup(ctx: JobContext) -> None:
    record_start(ctx.params.get("seq"))


async def _async_noop(ctx: JobContext) -> None:
    return None


def ext() -> Extension:
    extension = Extension("bench")
    for i in range(int(os.environ.get("PGSCHED_BENCH_JOBS", "100"))):
        extension.job(f"bench-tick-{i:05d}", schedule="* * * * * *", description="no-op")(_noop)
    extension.job("bench-noop", description="sync no-op", overlap="allow")(_noop)
    extension.job("bench-async-noop", description="async no-op", overlap="allow")(_async_noop)
    extension.job("bench-pickup", description="records its start", overlap="allow")(_pickup)
    return extension


def scale() -> Extension:
    extension = Extension("bench-scale")
    total = int(os.environ.get("PGSCHED_BENCH_SCALE_JOBS", "100000"))
    due = int(os.environ.get("PGSCHED_BENCH_SCALE_DUE", "100"))
    spread = os.environ.get("PGSCHED_BENCH_SCALE_SPREAD", "second")
    rng = random.Random(42)  # the same schedules on every sync: a re-sync changes nothing
    for i in range(total):
        second, minute, hour = rng.randrange(60), rng.randrange(60), rng.randrange(24)
        if i < due:
            schedule = "* * * * * *"
        elif spread == "minute":  # daily at a random minute: 1,440 distinct expressions
            schedule = f"0 {minute} {hour} * * *"
        else:  # daily at a random second: nearly every job has its own expression
            schedule = f"{second} {minute} {hour} * * *"
        extension.job(f"scale-{i:06d}", schedule=schedule, description="no-op")(_noop)
    extension.job("bench-noop", description="sync no-op", overlap="allow")(_noop)
    return extension
