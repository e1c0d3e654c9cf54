"""Balancing the books after a process-level test: ticks, runs, executions, pickup latency."""

from __future__ import annotations

import random
import statistics
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from tests.runners import query

FINAL = ("succeeded", "failed", "skipped", "cancelled")


class Requester(threading.Thread):
    """A client inserting manual requests with plain SQL every ~`every` seconds, shrugging off
    an unreachable database (a failover)."""

    def __init__(self, dsn: str, job: str, every: float = 0.25, seed: int = 1) -> None:
        super().__init__(daemon=True)
        self.dsn, self.job, self.every = dsn, job, every
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.sent: list[int] = []
        self.refused = 0

    def run(self) -> None:
        while not self.stop.wait(self.rng.uniform(0.5, 1.5) * self.every):
            try:
                with psycopg.connect(self.dsn, autocommit=True, connect_timeout=2) as conn:
                    row = conn.execute(
                        "INSERT INTO pgsched.runs (job_name, params) "
                        "VALUES (%s, jsonb_build_object('n', %s::int)) RETURNING id",
                        [self.job, len(self.sent)],
                    ).fetchone()
                assert row is not None
                self.sent.append(int(row[0]))
            except psycopg.OperationalError:
                self.refused += 1


def whole_seconds(start: datetime, end: datetime) -> list[datetime]:
    """The every-second ticks strictly after `start`, up to `end`."""
    first = start.replace(microsecond=0) + timedelta(seconds=1)
    return [first + timedelta(seconds=i) for i in range(int((end - first).total_seconds()) + 1)]


def executions(path: Path) -> Counter[int]:
    """How many times each run id was executed (tests/apps/topology.py writes the file)."""
    if not path.exists():
        return Counter()
    return Counter(int(line.split()[0]) for line in path.read_text().splitlines() if line)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[min(98, int(p) - 1)]


@dataclass
class Ledger:
    """What the database says happened to the ticks of `jobs` in [start, end], and to runs."""

    runs: list[dict[str, Any]]
    expected: list[tuple[str, datetime]]
    execs: Counter[int]
    killed: frozenset[str] = frozenset()  # runner ids SIGKILLed on purpose: their runs are lost
    tick_rows: Counter[tuple[str, datetime]] = field(init=False)

    def __post_init__(self) -> None:
        self.tick_rows = Counter(
            (r["job_name"], r["scheduled_for"]) for r in self.runs if r["trigger"] == "schedule"
        )

    @classmethod
    def read(
        cls,
        dsn: str,
        jobs: list[str],
        start: datetime,
        end: datetime,
        exec_log: Path,
        killed: frozenset[str] = frozenset(),
    ) -> Ledger:
        runs = query(dsn, "SELECT * FROM pgsched.runs ORDER BY id")
        expected = [(j, t) for j in jobs for t in whole_seconds(start, end)]
        return cls(runs, expected, executions(exec_log), killed)

    @property
    def missing(self) -> list[tuple[str, datetime]]:
        return [k for k in self.expected if self.tick_rows[k] == 0]

    @property
    def duplicated(self) -> list[tuple[str, datetime]]:
        return [k for k, n in self.tick_rows.items() if n > 1]

    @property
    def executed_twice(self) -> list[int]:
        return [run_id for run_id, n in self.execs.items() if n > 1]

    def _unrecorded(self) -> list[dict[str, Any]]:
        """Runs that executed but whose row does not say succeeded or failed by the job."""
        by_id = {r["id"]: r for r in self.runs}
        return [
            by_id.get(run_id, {"id": run_id, "status": "no row", "runner": None})
            for run_id in self.execs
            if by_id.get(run_id, {}).get("status") not in ("succeeded", "failed")
            or (by_id[run_id]["message"] or "").startswith("runner lost")
        ]

    @property
    def results_lost(self) -> list[dict[str, Any]]:
        """Executed runs without their result, but for those of runners killed on purpose."""
        return [r for r in self._unrecorded() if r["runner"] not in self.killed]

    @property
    def lost_with_killed_runners(self) -> list[dict[str, Any]]:
        return [r for r in self._unrecorded() if r["runner"] in self.killed]

    @property
    def not_final(self) -> list[dict[str, Any]]:
        return [r for r in self.runs if r["status"] not in FINAL]

    def pickup_latencies(self, job: str) -> list[float]:
        return [
            (r["started_at"] - r["created_at"]).total_seconds()
            for r in self.runs
            if r["job_name"] == job and r["trigger"] == "manual" and r["started_at"] is not None
        ]

    def tick_lags(self) -> list[float]:
        """How late each tick of the window started (started_at - scheduled_for)."""
        window = set(self.expected)
        return [
            (r["started_at"] - r["scheduled_for"]).total_seconds()
            for r in self.runs
            if r["trigger"] == "schedule"
            and r["started_at"] is not None
            and (r["job_name"], r["scheduled_for"]) in window
        ]

    def summary(self, title: str, manual_job: str) -> str:
        schedule = [r for r in self.runs if r["trigger"] == "schedule"]
        pickup = self.pickup_latencies(manual_job)
        lag = self.tick_lags()
        lines = [
            title,
            f"ticks expected        : {len(self.expected)}",
            f"ticks with 1 row      : {sum(1 for k in self.expected if self.tick_rows[k] == 1)}",
            f"ticks missing (0 rows): {len(self.missing)}",
            f"ticks duplicated      : {len(self.duplicated)}",
            f"schedule rows         : {dict(Counter(r['status'] for r in schedule))}",
            f"runs (all rows)       : {len(self.runs)}, "
            f"{dict(Counter(r['trigger'] for r in self.runs))}",
            f"executions            : {sum(self.execs.values())} "
            f"({len(self.executed_twice)} runs executed twice)",
            f"results lost          : {len(self.results_lost)}"
            + (
                f" (and {len(self.lost_with_killed_runners)} of the SIGKILLed runner: "
                "failed as 'runner lost', by design)"
                if self.killed
                else ""
            ),
            f"rows not final        : {len(self.not_final)}",
            f"tick start lag        : n={len(lag)} p50={percentile(lag, 50):.3f}s "
            f"p99={percentile(lag, 99):.3f}s max={max(lag, default=float('nan')):.3f}s",
            f"manual pickup latency : n={len(pickup)} p50={percentile(pickup, 50):.3f}s "
            f"p99={percentile(pickup, 99):.3f}s max={max(pickup, default=float('nan')):.3f}s",
        ]
        return "\n  ".join(lines)
