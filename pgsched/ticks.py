"""First ticks of many schedules at once, shared with worker processes when there are many.

A sync computes each new or changed schedule's first `next_run_at` with croniter, ≈ 90 µs per
distinct (expression, zone), most of it croniter reading the expression: 100,000 jobs at
random seconds of the day spend most of a first sync there. From `_PER_WORKER` distinct
schedules per extra process on, they are shared with workers, one per usable core, this
process taking a share too.

A worker is this module run as `python -P -m pgsched.ticks`, reading its share as JSON from a
temporary file and answering on stdout; not a multiprocessing child, which would re-import the
parent's main module (a user's program calling sync would run again). A worker that cannot
start, fails, answers nonsense or misses the deadline is given up on, with a warning, and its
share computed here.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterable
from datetime import datetime
from pathlib import Path
from typing import IO

from .cron import parse_schedule
from .errors import CronError

Key = tuple[str, str]  # (expression, timezone)

_PER_WORKER = 5000  # below this, starting an interpreter (~0.1 s) costs more than it saves
_MAX_PROCESSES = 8  # this one included
_DEADLINE_S = 30.0  # plus 2 ms per schedule of the largest share (20 times the usual pace)


def next_ticks_after(keys: Collection[Key], after: datetime) -> dict[Key, datetime]:
    """The first tick after `after` of each valid (expression, timezone); invalid ones are left
    out, for the caller to report with the job's name."""
    ordered = list(keys)
    processes = min(_usable_cpus(), _MAX_PROCESSES, len(ordered) // _PER_WORKER)
    if processes < 2 or not sys.executable or getattr(sys, "frozen", False):
        return next_ticks_here(ordered, after)  # frozen: sys.executable is the app itself
    shares = [ordered[i::processes] for i in range(processes)]
    deadline = time.monotonic() + _DEADLINE_S + 0.002 * len(shares[0])
    workers: list[_Worker] = []
    try:
        for share in shares[1:]:
            workers.append(_Worker(share, after))
        found = next_ticks_here(shares[0], after)
        for worker in workers:
            answer = worker.answer(deadline)
            found.update(next_ticks_here(worker.share, after) if answer is None else answer)
        return found
    finally:
        for worker in workers:  # interrupted, or given up on: leave no process behind
            worker.close()


def next_ticks_here(keys: Iterable[Key], after: datetime) -> dict[Key, datetime]:
    """`next_ticks_after` in this process alone (and a worker's whole job)."""

    found = {}
    for expression, timezone in keys:
        try:
            found[(expression, timezone)] = parse_schedule(expression, timezone).next_after(after)
        except (CronError, ValueError):  # cron.py wraps croniter's errors into CronError
            continue
    return found


class _Worker:
    """One worker process and its share."""

    def __init__(self, share: list[Key], after: datetime) -> None:
        self.share = share
        self.proc: subprocess.Popen[bytes] | None = None
        self.problem = ""
        self._stderr: IO[bytes] | None = None
        try:  # a full or read-only temp folder, or no process allowed: computed here instead
            self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
            with tempfile.TemporaryFile() as job:
                job.write(json.dumps({"after": after.isoformat(), "keys": share}).encode())
                job.seek(0)
                self.proc = subprocess.Popen(
                    [sys.executable, "-P", "-m", "pgsched.ticks"],  # -P: not the working dir's
                    stdin=job,
                    stdout=subprocess.PIPE,
                    stderr=self._stderr,
                    env=_worker_env(),
                )
        except OSError as exc:
            self.problem = f"could not start a worker ({sys.executable}): {exc}"

    def answer(self, deadline: float) -> dict[Key, datetime] | None:
        """Its ticks, or None (after a warning) when it has to be given up on."""
        found = self._read_answer(deadline)
        if found is None:
            self._warn()
        return found

    def _read_answer(self, deadline: float) -> dict[Key, datetime] | None:
        if self.proc is None:
            return None
        try:
            out, _ = self.proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.problem = "no answer before the deadline"
            return None
        if self.proc.returncode != 0:
            self.problem = f"exit code {self.proc.returncode}"
            return None
        try:
            return {(e, z): datetime.fromisoformat(tick) for e, z, tick in json.loads(out)}
        except (ValueError, TypeError) as exc:
            self.problem = f"unreadable answer ({exc})"
            return None

    def _warn(self) -> None:
        from .logs import get_logger  # only on this rare path

        self._stop()  # its stderr is complete once it has ended
        tail = ""
        if self._stderr is not None:
            self._stderr.seek(0)
            tail = self._stderr.read()[-2000:].decode(errors="replace").strip()
        get_logger().warning(
            "tick worker failed; its share of the sync is computed in this process (slower)",
            problem=self.problem,
            schedules=len(self.share),
            stderr=tail or None,
        )

    def close(self) -> None:
        self._stop()
        if self._stderr is not None:
            self._stderr.close()

    def _stop(self) -> None:
        """Kill it unless it has ended and been reaped; reap it, close its pipe."""
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.kill()
        self.proc.communicate()


def _worker_env() -> dict[str, str]:
    """This very pgsched for the worker: its folder goes on PYTHONPATH unless it is a
    site-packages folder (which a new interpreter finds anyway, after the standard library)."""
    package_root = str(Path(__file__).resolve().parent.parent)
    sites = {str(Path(p).resolve()) for p in [*site.getsitepackages(), site.getusersitepackages()]}
    if package_root in sites:
        return dict(os.environ)
    paths = [package_root, os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def _usable_cpus() -> int:
    """Cores this process may use: its affinity, and the CPU quota of its cgroup and their
    parents (a container's or a systemd unit's), which the affinity does not show."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    return max(1, min(cpus, int(quota))) if quota is not None else cpus


def _cgroup_cpu_quota() -> float | None:
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    limits: list[float] = []
    for line in lines:
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        _, controllers, path = fields
        if controllers == "":  # v2: cpu.max is "QUOTA PERIOD" or "max PERIOD" at each level
            limits += _quotas(Path("/sys/fs/cgroup"), path, lambda d: _read(d / "cpu.max"))
        elif "cpu" in controllers.split(","):  # v1: cfs_quota_us is -1 when unlimited
            base = Path("/sys/fs/cgroup", controllers)
            if not base.exists():
                base = Path("/sys/fs/cgroup/cpu")
            limits += _quotas(
                base,
                path,
                lambda d: [_read(d / "cpu.cfs_quota_us")[0], _read(d / "cpu.cfs_period_us")[0]],
            )
    return min(limits, default=None)


def _quotas(base: Path, path: str, read: Callable[[Path], list[str]]) -> list[float]:
    found = []
    directory = base / path.lstrip("/")
    while True:
        try:
            quota, period = read(directory)
            if quota not in ("max", "-1"):
                found.append(int(quota) / int(period))
        except (OSError, ValueError, IndexError):
            pass
        if directory == base or base not in directory.parents:
            return found
        directory = directory.parent


def _read(path: Path) -> list[str]:
    return path.read_text().split()


def _worker_main() -> None:
    job = json.load(sys.stdin)
    keys = [(e, z) for e, z in job["keys"]]
    found = next_ticks_here(keys, datetime.fromisoformat(job["after"]))
    json.dump([[e, z, tick.isoformat()] for (e, z), tick in found.items()], sys.stdout)


if __name__ == "__main__":
    _worker_main()
