"""Start real `pgsched runner` processes for the tests, and talk to the CLI as a user would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

ROOT = Path(__file__).resolve().parent.parent
FINAL = ("succeeded", "failed", "skipped", "cancelled")
# Every wait below is a bound on liveness ("it happens, eventually"), never the property
# under test: on a loaded machine (a laptop compiling, CI beside other jobs) the same events
# take several times longer. The bounds are multiplied by this (env PGSCHED_TEST_PATIENCE),
# so a passing test is as fast as ever and only a failing one waits longer to say so.
PATIENCE = float(os.environ.get("PGSCHED_TEST_PATIENCE", "4"))

FAST_PROFILE = """
# The built-in prune job fires every 10 minutes by default: a test that counts the runs of
# its database saw one more whenever it crossed such a minute. Once a year here. (Before
# `runner:`: tests append indented runner settings to this text.)
retention:
  prune_schedule: "0 0 0 1 1 *"
runner:
  heartbeat_interval: 0.5
  lease_timeout: 3
  poll_interval: 1
  grace_period: {grace}
"""


def write_profile(tmp: Path, extra: str = "", grace: float = 5) -> Path:
    path = tmp / "profile.yaml"
    path.write_text(FAST_PROFILE.format(grace=grace) + extra)
    return path


def env_for(dsn: str, profile: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PGSCHED_DATABASE_URL"] = dsn
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("PGSCHED_PROFILE", None)
    if profile is not None:
        env["PGSCHED_PROFILE"] = str(profile)
    return env


def pgsched(
    *args: str,
    dsn: str,
    profile: Path | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "pgsched", *args],
        env=env_for(dsn, profile),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout * PATIENCE,
    )


class RunnerProcess:
    def __init__(
        self,
        dsn: str,
        apps: Sequence[str],
        log: Path,
        profile: Path | None = None,
        extra: Sequence[str] = (),
    ) -> None:
        self.log_path = log
        app_args = [a for app in apps for a in ("--app", app)]
        self._log = open(log, "ab")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pgsched", *app_args, "runner", "--no-migrate", *extra],
            env=env_for(dsn, profile),
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout * PATIENCE)
        finally:
            self._log.close()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def runners(
    dsn: str,
    tmp: Path,
    count: int = 1,
    apps: Sequence[str] = ("tests.apps.basic:ext",),
    profile: Path | None = None,
    extra: Sequence[str] = (),
) -> Iterator[list[RunnerProcess]]:
    procs = [
        RunnerProcess(dsn, apps, tmp / f"runner-{i}.log", profile, extra) for i in range(count)
    ]
    try:
        yield procs
    finally:
        for p in procs:
            if p.alive:
                p.proc.send_signal(signal.SIGKILL)
                p.wait(10)


def query(dsn: str, statement: str, params: Any = None) -> list[dict[str, Any]]:
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        cur = conn.execute(statement, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def wait_until(
    check: Callable[[], Any],
    timeout: float = 30,
    what: str = "condition",
    procs: Sequence[RunnerProcess] = (),
    state: Callable[[], object] | None = None,
) -> Any:
    """`check()` until truthy; a timeout says what was awaited, the runners' logs and, when
    given, `state()` (e.g. the rows that should have changed)."""
    end = time.monotonic() + timeout * PATIENCE
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    logs = "\n".join(f"--- {p.log_path.name}\n{p.output()[-3000:]}" for p in procs)
    seen = f"\nstate: {state()}" if state is not None else ""
    raise AssertionError(
        f"timed out after {timeout * PATIENCE:g}s waiting for {what}{seen}\n{logs}"
    )


def wait_registered(
    dsn: str, count: int, procs: Sequence[RunnerProcess], timeout: float = 60
) -> None:
    wait_until(
        lambda: len(query(dsn, "SELECT id FROM pgsched.runners")) >= count,
        timeout,
        f"{count} runners to register",
        procs,
    )


def request(dsn: str, job: str, params: dict[str, Any] | None = None) -> int:
    """A manual request, made with plain SQL as any client would."""
    rows = query(
        dsn,
        "INSERT INTO pgsched.runs (job_name, params) VALUES (%s, %s) RETURNING id",
        [job, json.dumps(params or {})],
    )
    return int(rows[0]["id"])


def run_row(dsn: str, run_id: int) -> dict[str, Any]:
    return query(dsn, "SELECT * FROM pgsched.runs WHERE id = %s", [run_id])[0]


def wait_status(
    dsn: str,
    run_id: int,
    procs: Sequence[RunnerProcess],
    statuses: Sequence[str] = FINAL,
    timeout: float = 20,
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        row = run_row(dsn, run_id)
        return row if row["status"] in statuses else None

    return wait_until(check, timeout, f"run {run_id} to be {'/'.join(statuses)}", procs)
