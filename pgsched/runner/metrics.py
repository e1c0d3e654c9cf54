"""One runner's own Prometheus metrics, `/healthz` and `/readyz` (`pgsched runner
--metrics-port`).

Needs `prometheus_client` (the `web` extra); the runner imports this module only when a
metrics port is configured, so the core runner runs without it. The metrics live in a
registry of the runner's own, not the process-wide default one (a host application's
metrics stay its own), and are served by a small HTTP server in a daemon thread: a scrape
never runs on the control loop.

The hot path is `run_finished`, once per outcome (the drain benchmark does 30,000 runs/s):
`.labels()` hashes its arguments and takes a lock on every call, so each job's children are
looked up once and kept.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from ..errors import ConfigError
from ..runs import ClaimedRun, RunOutcome

# Run durations and fire lags span milliseconds (a drain) to hours (a nightly report).
DURATION_BUCKETS = (0.005, 0.025, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, float("inf"))
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 60, 300, float("inf"))
_NOT_FOUND = b"not found; try /metrics, /healthz or /readyz\n"
CLAIM_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, float("inf"))


@dataclass(slots=True)
class _JobSeries:
    """One job's labelled children, looked up once."""

    duration: Any
    fire_lag: Any
    finished: dict[str, Any] = field(default_factory=dict)  # status -> counter child


@dataclass(frozen=True)
class Probe:
    """What `/healthz` or `/readyz` answers: ok, and why not."""

    ok: bool
    reason: str


class RunnerMetrics:
    """The runner's metrics. `run_finished`, `claim_round` and `database_error` are called
    on the control loop; the gauges are read when scraped, from the server's thread."""

    def __init__(
        self,
        *,
        heartbeat_age: Callable[[], float | None],
        running: Callable[[], int],
        slots: Callable[[], int],
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._finished = Counter(
            "pgsched_runner_runs_finished",
            "Runs this runner finished, by job and final status",
            ["job", "status"],
            registry=r,
        )
        self._duration = Histogram(
            "pgsched_runner_run_duration_seconds",
            "Run durations (finished_at - started_at, database clock)",
            ["job"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self._fire_lag = Histogram(
            "pgsched_runner_fire_lag_seconds",
            "How late scheduled runs started (started_at - scheduled_for)",
            ["job"],
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self._claim = Histogram(
            "pgsched_runner_claim_duration_seconds",
            "Duration of one claim round (due ticks, then pending runs)",
            buckets=CLAIM_BUCKETS,
            registry=r,
        )
        self._db_errors = Counter(
            "pgsched_runner_database_errors",
            "Steps of a duty that failed because the database was unavailable",
            ["duty"],
            registry=r,
        )
        heartbeat = Gauge(
            "pgsched_runner_heartbeat_lag_seconds",
            "Seconds since this runner last wrote its heartbeat (NaN before the first)",
            registry=r,
        )
        heartbeat.set_function(lambda: _or_nan(heartbeat_age()))
        Gauge("pgsched_runner_runs_running", "Runs executing now", registry=r).set_function(running)
        Gauge("pgsched_runner_slots", "Runs this runner executes at once", registry=r).set_function(
            slots
        )
        self._jobs: dict[str, _JobSeries] = {}

    def run_finished(self, outcome: RunOutcome, claimed: ClaimedRun) -> None:
        series = self._jobs.get(claimed.job_name)
        if series is None:
            series = self._series(claimed.job_name)
        counter = series.finished.get(outcome.status)
        if counter is None:
            counter = series.finished[outcome.status] = self._finished.labels(
                claimed.job_name, outcome.status
            )
        counter.inc()
        started = outcome.started_at
        if started is None:  # never started (an unknown job, a run cancelled before it began)
            return
        if outcome.finished_at is not None:
            series.duration.observe(max(0.0, outcome.finished_at - started))
        if claimed.trigger == "schedule" and claimed.scheduled_for is not None:
            series.fire_lag.observe(max(0.0, started - claimed.scheduled_for.timestamp()))

    def _series(self, job: str) -> _JobSeries:
        series = self._jobs[job] = _JobSeries(
            self._duration.labels(job), self._fire_lag.labels(job)
        )
        return series

    def claim_round(self, seconds: float) -> None:
        self._claim.observe(seconds)

    def database_error(self, duty: str) -> None:
        self._db_errors.labels(duty).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value


class MetricsServer:
    """`/metrics`, `/healthz`, `/readyz` on a ThreadingHTTPServer in a daemon thread."""

    def __init__(
        self,
        metrics: RunnerMetrics,
        host: str,
        port: int,
        *,
        healthz: Callable[[], Probe],
        readyz: Callable[[], Probe],
    ) -> None:
        routes: dict[str, Callable[[], tuple[int, str, bytes]]] = {
            "/metrics": lambda: (200, CONTENT_TYPE_LATEST, metrics.exposition()),
            "/healthz": lambda: _probe(healthz()),
            "/readyz": lambda: _probe(readyz()),
        }

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route = routes.get(self.path.split("?", 1)[0])
                if route is None:
                    status, kind, body = 404, "text/plain", _NOT_FOUND
                else:
                    status, kind, body = route()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # scrapes every few seconds: not worth a log line each

        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve runner metrics on {host}:{port}: {exc.strerror or exc}; choose "
                "another --metrics-port (runner.metrics_port) or --metrics-bind"
            ) from exc
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="pgsched-metrics", daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()


def _probe(probe: Probe) -> tuple[int, str, bytes]:
    text = ("ok" if probe.ok else "unavailable") + f": {probe.reason}\n"
    return (200 if probe.ok else 503), "text/plain; charset=utf-8", text.encode()


def heartbeat_probe(last_beat: float | None, lease_timeout: float) -> Probe:
    """Live while the heartbeat duty wrote a heartbeat within `lease_timeout` (monotonic)."""
    if last_beat is None:
        return Probe(False, "no heartbeat written yet")
    age = time.monotonic() - last_beat
    if age > lease_timeout:
        return Probe(
            False,
            f"last heartbeat written {age:.1f}s ago, over the lease timeout "
            f"({lease_timeout:g}s): other runners will declare this one dead",
        )
    return Probe(True, f"heartbeat written {age:.1f}s ago")
