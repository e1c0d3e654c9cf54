"""The runner's metrics object, in-process: what one outcome, claim round or database error
adds, parsed back with prometheus_client's own parser."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families

from pgsched.runner.metrics import RunnerMetrics, heartbeat_probe
from pgsched.runs import ClaimedRun, RunOutcome


def claimed(
    run_id: int, job: str, trigger: str = "manual", tick: float | None = None
) -> ClaimedRun:
    scheduled = datetime.fromtimestamp(tick, UTC) if tick is not None else None
    return ClaimedRun(run_id, job, trigger, scheduled, 1, {}, "lease", 0.0, 0.0)  # type: ignore[arg-type]


def outcome(run_id: int, status: str, started: float | None, finished: float | None) -> RunOutcome:
    return RunOutcome(run_id, "lease", status, started, finished)  # type: ignore[arg-type]


def samples(metrics: RunnerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.exposition().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def make(**state: Any) -> RunnerMetrics:
    return RunnerMetrics(
        heartbeat_age=lambda: state.get("age"),
        running=lambda: state.get("running", 0),
        slots=lambda: state.get("slots", 10),
    )


def test_each_outcome_counts_by_job_and_status_with_its_duration() -> None:
    metrics = make()
    metrics.run_finished(outcome(1, "succeeded", 100.0, 100.5), claimed(1, "a"))
    metrics.run_finished(outcome(2, "succeeded", 101.0, 103.0), claimed(2, "a"))
    metrics.run_finished(outcome(3, "failed", 101.0, 101.1), claimed(3, "a"))
    metrics.run_finished(outcome(4, "failed", None, 102.0), claimed(4, "b"))  # never started
    got = samples(metrics)
    finished = "pgsched_runner_runs_finished_total"
    assert got[(finished, (("job", "a"), ("status", "succeeded")))] == 2
    assert got[(finished, (("job", "a"), ("status", "failed")))] == 1
    assert got[(finished, (("job", "b"), ("status", "failed")))] == 1
    duration = "pgsched_runner_run_duration_seconds"
    assert got[(duration + "_count", (("job", "a"),))] == 3
    assert got[(duration + "_sum", (("job", "a"),))] == pytest.approx(2.6)
    assert got[(duration + "_count", (("job", "b"),))] == 0  # no start, no duration


def test_fire_lag_is_observed_for_scheduled_runs_only() -> None:
    metrics = make()
    metrics.run_finished(outcome(1, "succeeded", 50.25, 51.0), claimed(1, "t", "schedule", 50.0))
    metrics.run_finished(outcome(2, "succeeded", 60.0, 61.0), claimed(2, "t", "manual"))
    got = samples(metrics)
    lag = "pgsched_runner_fire_lag_seconds"
    assert got[(lag + "_count", (("job", "t"),))] == 1
    assert got[(lag + "_sum", (("job", "t"),))] == pytest.approx(0.25)
    assert got[(lag + "_bucket", (("job", "t"), ("le", "0.25")))] == 1
    assert got[(lag + "_bucket", (("job", "t"), ("le", "0.1")))] == 0


def test_claim_rounds_database_errors_and_gauges() -> None:
    metrics = make(age=1.5, running=3, slots=8)
    metrics.claim_round(0.004)
    metrics.claim_round(0.2)
    metrics.database_error("heartbeat")
    metrics.database_error("heartbeat")
    metrics.database_error("claim")
    got = samples(metrics)
    assert got[("pgsched_runner_claim_duration_seconds_count", ())] == 2
    assert got[("pgsched_runner_database_errors_total", (("duty", "heartbeat"),))] == 2
    assert got[("pgsched_runner_database_errors_total", (("duty", "claim"),))] == 1
    assert got[("pgsched_runner_heartbeat_lag_seconds", ())] == 1.5
    assert got[("pgsched_runner_runs_running", ())] == 3
    assert got[("pgsched_runner_slots", ())] == 8


def test_heartbeat_lag_is_nan_before_the_first_heartbeat() -> None:
    got = samples(make(age=None))
    assert math.isnan(got[("pgsched_runner_heartbeat_lag_seconds", ())])


def test_healthz_follows_the_last_heartbeat_against_the_lease_timeout() -> None:
    assert not heartbeat_probe(None, 15).ok
    assert heartbeat_probe(time.monotonic() - 1, 15).ok
    stale = heartbeat_probe(time.monotonic() - 20, 15)
    assert not stale.ok
    assert "lease timeout" in stale.reason


def test_the_metrics_live_in_the_runners_own_registry() -> None:
    from prometheus_client import REGISTRY

    make().run_finished(outcome(1, "succeeded", 1.0, 2.0), claimed(1, "own"))
    assert (
        REGISTRY.get_sample_value(
            "pgsched_runner_runs_finished_total", {"job": "own", "status": "succeeded"}
        )
        is None
    )
