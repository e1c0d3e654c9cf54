"""The worker process of `cron.next_ticks_after`: reads {"after", "keys"} as JSON on stdin,
writes [[expression, timezone, first tick]] as JSON on stdout (invalid schedules left out).

A module of its own run with `python -m`, not a multiprocessing child: those re-import the
parent's main module, which would run a user's program again if it calls sync unguarded."""

from __future__ import annotations

import json
import sys
from datetime import datetime

from .cron import next_ticks_here


def main() -> None:
    job = json.load(sys.stdin)
    found = next_ticks_here([(e, z) for e, z in job["keys"]], datetime.fromisoformat(job["after"]))
    json.dump([[e, z, tick.isoformat()] for (e, z), tick in found.items()], sys.stdout)


if __name__ == "__main__":
    main()
