"""Peers: the same manual pickup and drain for pgsched, PgQueuer and Procrastinate.

Runs in /work/benchvenv (`pip install -r bench/requirements.txt`). All three use the same
server, a fresh database per test, no-op async jobs, and the same clocks: pickup latency =
handler start (time.time() in the worker) - just before the client's INSERT/enqueue call;
drain = requests / (time the queue is seen empty - bulk-insert commit), polled every 20 ms.

Settings: pgsched `--concurrency 100` (10 for pickup: its default); PgQueuer `pgq run` with the
asyncpg driver of its README and its default batch size (10) unless --pgq-batch-size;
Procrastinate `worker -c 100` (its default is 1, meant for sync tasks), pool of 10 connections.

    /work/benchvenv/bin/python bench/peers.py --requests 100000 --workers 1,4 --pickups 1000
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    OUT,
    PGSCHED_BACKLOG_SQL,
    ROOT,
    base_parser,
    database,
    log,
    machine,
    print_table,
    server,
    summary_ms,
    write_result,
)

PY = sys.executable


class System:
    name: str
    pending_sql: str

    def close(self) -> None: ...

    def setup(self, dsn: str) -> None: ...
    def worker_cmd(self, concurrency: int) -> list[str]: ...
    def submit_one(self, dsn: str) -> Callable[[int], None]: ...
    def bulk(self, dsn: str, count: int) -> None: ...


def _run(cmd: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd[1:])} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")


def to_url(dsn: str) -> str:
    """asyncpg (PgQueuer) wants a URL; the embedded server's DSNs are key=value strings."""
    from urllib.parse import quote, urlencode

    from psycopg.conninfo import conninfo_to_dict

    if "://" in dsn:
        return dsn
    parts = {k: str(v) for k, v in conninfo_to_dict(dsn).items()}
    user = quote(parts.pop("user", ""))
    password = parts.pop("password", None)
    dbname = quote(parts.pop("dbname", ""))
    auth = f"{user}:{quote(password)}@" if password else (f"{user}@" if user else "")
    return f"postgresql://{auth}/{dbname}?{urlencode(parts)}"


def _env(dsn: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(ROOT),
        BENCH_DSN=to_url(dsn),
        PGSCHED_DATABASE_URL=dsn,
        PGDSN=to_url(dsn),
        PGSCHED_BENCH_JOBS="0",
        **(extra or {}),
    )
    return env


class Pgsched(System):
    name = "pgsched"
    pending_sql = PGSCHED_BACKLOG_SQL

    def setup(self, dsn: str) -> None:
        _run([PY, "-m", "pgsched", "--app", "bench.apps:ext", "migrate"], _env(dsn))
        _run([PY, "-m", "pgsched", "--app", "bench.apps:ext", "sync"], _env(dsn))

    def worker_cmd(self, concurrency: int) -> list[str]:
        return [
            PY,
            "-m",
            "pgsched",
            "--app",
            "bench.apps:ext",
            "runner",
            "--no-migrate",
            "--concurrency",
            str(concurrency),
        ]

    def submit_one(self, dsn: str) -> Callable[[int], None]:
        conn = psycopg.connect(dsn, autocommit=True)
        sql = "INSERT INTO pgsched.runs (job_name, params) VALUES ('bench-pickup', %s)"
        return lambda seq: conn.execute(sql, (Jsonb({"seq": seq}),)) and None

    def bulk(self, dsn: str, count: int) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO pgsched.runs (job_name) "
                "SELECT 'bench-async-noop' FROM generate_series(1, %s)",
                (count,),
            )


class PgQueuer(System):
    name = "pgqueuer"
    pending_sql = "SELECT count(*) FROM pgqueuer"

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.loop = asyncio.new_event_loop()

    def setup(self, dsn: str) -> None:
        _run([PY, "-m", "pgqueuer", "install"], _env(dsn))

    def worker_cmd(self, concurrency: int) -> list[str]:
        # pgq's knob is the batch size; it runs everything it fetched concurrently.
        return [PY, "-m", "bench.run_pgqueuer", str(self.batch_size)]

    def _queries(self, dsn: str) -> Any:
        import asyncpg
        from pgqueuer.db import AsyncpgDriver
        from pgqueuer.queries import Queries

        conn = self.loop.run_until_complete(asyncpg.connect(to_url(dsn)))
        return Queries(AsyncpgDriver(conn))

    def submit_one(self, dsn: str) -> Callable[[int], None]:
        queries = self._queries(dsn)
        return lambda seq: (
            self.loop.run_until_complete(queries.enqueue("pickup", str(seq).encode())) and None
        )

    def bulk(self, dsn: str, count: int) -> None:
        queries = self._queries(dsn)
        self.loop.run_until_complete(queries.enqueue(["noop"] * count, [None] * count, [0] * count))


class Procrastinate(System):
    name = "procrastinate"
    pending_sql = "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.apps: list[Any] = []

    def close(self) -> None:
        for app in self.apps:
            self.loop.run_until_complete(app.close_async())
        self.apps.clear()

    def setup(self, dsn: str) -> None:
        _run(
            [PY, "-m", "procrastinate", "--app", "bench.peer_apps.proc_app", "schema", "--apply"],
            _env(dsn),
        )

    def worker_cmd(self, concurrency: int) -> list[str]:
        return [
            PY,
            "-m",
            "procrastinate",
            "--app",
            "bench.peer_apps.proc_app",
            "worker",
            "-c",
            str(concurrency),
        ]

    def _app(self, dsn: str) -> Any:
        from bench.peer_apps import procrastinate_app

        app = procrastinate_app(dsn)
        self.loop.run_until_complete(app.open_async())
        return app

    def submit_one(self, dsn: str) -> Callable[[int], None]:
        app = self._app(dsn)
        self.apps.append(app)
        task = app.tasks["pickup"]
        return lambda seq: self.loop.run_until_complete(task.defer_async(seq=seq)) and None

    def bulk(self, dsn: str, count: int) -> None:
        app = self._app(dsn)
        self.loop.run_until_complete(app.tasks["noop"].batch_defer_async(*([{}] * count)))
        self.loop.run_until_complete(app.close_async())


@contextmanager
def workers(
    system: System, dsn: str, count: int, concurrency: int, env: dict[str, str]
) -> Iterator[None]:
    logs = OUT / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    for i in range(count):
        out = open(logs / f"peers-{system.name}-{i}.log", "wb")  # noqa: SIM115
        procs.append(
            (
                subprocess.Popen(
                    system.worker_cmd(concurrency),
                    env=_env(dsn, env),
                    cwd=ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                ),
                out,
            )
        )
    try:
        time.sleep(4)  # imports, connect, LISTEN; then a probe proves at least one is serving
        for p, _ in procs:
            if p.poll() is not None:
                raise SystemExit(f"{system.name} worker exited; see {logs}")
        yield
    finally:
        for p, _ in procs:
            p.send_signal(signal.SIGTERM)
        for p, out in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            out.close()


def wait_empty(dsn: str, sql: str, timeout: float, interval: float = 0.02) -> float:
    end = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < end:
            if not conn.execute(sql).fetchone()[0]:  # type: ignore[index]
                return time.time()
            time.sleep(interval)
    raise SystemExit(f"queue not empty after {timeout}s")


def pickup(system: System, dsn: str, count: int, interval_ms: float, concurrency: int) -> dict:
    fd, path = tempfile.mkstemp(prefix=f"pickup-{system.name}-")
    os.close(fd)
    with workers(system, dsn, 1, concurrency, {"BENCH_PICKUP_FILE": path}):
        submit = system.submit_one(dsn)
        submit(-1)  # warm-up: connection, prepared statements; not measured
        wait_empty(dsn, system.pending_sql, 30)
        sent: dict[str, float] = {}
        next_at = time.monotonic()
        for i in range(count):
            next_at += interval_ms / 1000
            sent[str(i)] = time.time()
            submit(i)
            time.sleep(max(0.0, next_at - time.monotonic()))
        wait_empty(dsn, system.pending_sql, 60)
        time.sleep(0.5)
        system.close()
    started = {}
    for line in Path(path).read_text().splitlines():
        seq, at = line.split()
        started[seq] = float(at)
    os.unlink(path)
    lags = [started[s] - t for s, t in sent.items() if s in started]
    return summary_ms(lags) | {"missing": count - len(lags)}


def drain(system: System, dsn: str, count: int, n: int, concurrency: int) -> dict:
    log(f"{system.name}: drain of {count:,} with {n} worker(s)")
    with workers(system, dsn, n, concurrency, {}):
        system.bulk(dsn, count)
        committed = time.time()
        done = wait_empty(dsn, system.pending_sql, 900)
    seconds = done - committed
    return {
        "workers": n,
        "requests": count,
        "seconds": round(seconds, 3),
        "runs_per_s": round(count / seconds, 1),
    }


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--workers", default="1,4")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--pickups", type=int, default=1000)
    parser.add_argument("--interval-ms", type=float, default=20)
    parser.add_argument("--pgq-batch-size", type=int, default=10)
    parser.add_argument(
        "--procrastinate-requests",
        type=int,
        default=20_000,
        help="Procrastinate fetches one job per query (~hundreds/s here): a smaller backlog "
        "keeps the run short; runs/s is a steady-state rate either way",
    )
    parser.add_argument("--systems", default="pgsched,pgqueuer,procrastinate")
    args = parser.parse_args()
    counts = [int(c) for c in args.workers.split(",") if c]
    every = {
        "pgsched": Pgsched(),
        "pgqueuer": PgQueuer(args.pgq_batch_size),
        "procrastinate": Procrastinate(),
    }
    systems = [every[s] for s in args.systems.split(",")]
    results: dict[str, Any] = {}
    with server(args.dsn) as pg:
        for system in systems:
            r: dict[str, Any] = {}
            if args.pickups:
                with database(pg, migrate=False) as dsn:
                    system.setup(dsn)
                    log(f"{system.name}: pickup of {args.pickups} requests")
                    pickup_conc = 10 if system.name == "pgsched" else args.concurrency
                    r["pickup_ms"] = pickup(
                        system, dsn, args.pickups, args.interval_ms, pickup_conc
                    )
                    log(f"  {r['pickup_ms']}")
            for n in counts:
                with database(pg, migrate=False) as dsn:
                    system.setup(dsn)
                    count = (
                        args.procrastinate_requests
                        if system.name == "procrastinate"
                        else args.requests
                    )
                    r[f"drain_{n}"] = drain(system, dsn, count, n, args.concurrency)
                    log(f"  {r[f'drain_{n}']}")
            results[system.name] = r
        with database(pg, migrate=False) as dsn:
            info = machine(dsn)

    print(
        f"\npeers: pickup ({args.pickups} requests, {args.interval_ms} ms apart, 1 worker) "
        f"and drain ({args.requests:,} no-op requests; Procrastinate "
        f"{args.procrastinate_requests:,})"
    )
    headers = ["", "pickup p50 ms", "p99 ms", "max ms"] + [f"drain {n}w runs/s" for n in counts]
    table = []
    for name, r in results.items():
        p = r.get("pickup_ms", {})
        table.append(
            [
                name,
                p.get("p50", float("nan")),
                p.get("p99", float("nan")),
                p.get("max", float("nan")),
            ]
            + [r[f"drain_{n}"]["runs_per_s"] for n in counts]
        )
    print_table(headers, table)
    if "pgsched" in results:
        best = {
            n: max(
                (r[f"drain_{n}"]["runs_per_s"] for s, r in results.items() if s != "pgsched"),
                default=float("nan"),
            )
            for n in counts
        }
        for n in counts:
            ratio = results["pgsched"][f"drain_{n}"]["runs_per_s"] / best[n]
            print(f"pgsched / fastest peer, {n} worker(s): {ratio:.2f}x  (target >= 1.3x at 4)")
    write_result("peers", args.tag, {"params": vars(args), "machine": info, "results": results})


if __name__ == "__main__":
    main()
