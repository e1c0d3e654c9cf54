"""A real `pgsched runner --metrics-port`: its /metrics, /healthz and /readyz."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families

from tests.runners import request, runners, wait_registered, wait_status, wait_until

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def sample(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def test_runner_serves_its_metrics_and_probes(dsn: str, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with runners(dsn, tmp_path, extra=["--metrics-port", str(port)]) as procs:
        wait_registered(dsn, 1, procs)
        ok = request(dsn, "echo-params", {"x": 1})
        bad = request(dsn, "raises")
        wait_status(dsn, ok, procs)
        wait_status(dsn, bad, procs)

        def scraped() -> str | None:
            status, text = get(base + "/metrics")
            finished = "pgsched_runner_runs_finished_total"
            counted = sample(text, finished, job="echo-params", status="succeeded") == 1
            failed = sample(text, finished, job="raises", status="failed") == 1
            lag = sample(text, "pgsched_runner_fire_lag_seconds_count", job="tick-every-second")
            return text if status == 200 and counted and failed and lag else None

        text = wait_until(scraped, 15, "the runs in /metrics", procs)
        assert sample(text, "pgsched_runner_run_duration_seconds_count", job="echo-params") == 1
        assert (sample(text, "pgsched_runner_claim_duration_seconds_count") or 0) >= 1
        assert sample(text, "pgsched_runner_slots") == 10
        assert sample(text, "pgsched_runner_runs_running") is not None
        heartbeat_lag = sample(text, "pgsched_runner_heartbeat_lag_seconds")
        assert heartbeat_lag is not None and heartbeat_lag < 3  # lease_timeout of the profile
        print(f"heartbeat lag at scrape: {heartbeat_lag:.3f} s")
        assert get(base + "/healthz")[0] == 200
        status, body = get(base + "/readyz")
        assert status == 200, body
        assert get(base + "/nothing")[0] == 404
        assert procs[0].terminate() == 0
