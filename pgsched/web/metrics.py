"""Cluster metrics read from the tables, the way postgres_exporter reads the catalog.

One custom collector turns a `ClusterSnapshot` (read by `Insight.cluster_snapshot`, a handful
of index-backed queries) into Prometheus families. Collection is synchronous in
prometheus_client while the read is async, so `/metrics` reads first and collects second.
Per-job series of pending, running and overdue work exist only for jobs that have some: at
100,000 jobs a zero for each would be most of the scrape.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..insight import ClusterSnapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ClusterCollector(Collector):
    """pgsched_* gauges of one snapshot of the cluster's tables."""

    def __init__(self, snapshot: ClusterSnapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot
        yield GaugeMetricFamily(
            "pgsched_runners_live",
            "Runners whose heartbeat is within the lease timeout.",
            value=s.runners_live,
        )
        yield _per_job("pgsched_runs_pending", "Runs waiting to start, by job.", s.pending)
        yield _per_job("pgsched_runs_running", "Runs running now, by job.", s.running)
        yield _per_job(
            "pgsched_job_last_success_timestamp_seconds",
            "When the job's newest successful run finished (Unix time).",
            s.last_success,
        )
        yield _per_job(
            "pgsched_job_next_run_timestamp_seconds",
            "The job's next tick (Unix time); absent when it cannot fire.",
            s.next_run,
        )
        yield _per_job(
            "pgsched_ticks_overdue",
            "Ticks past their misfire grace that no runner has started, by job.",
            s.overdue,
        )


def _per_job(name: str, documentation: str, values: dict[str, float] | dict[str, int]) -> Metric:
    family = GaugeMetricFamily(name, documentation, labels=["job"])
    for job, value in values.items():
        family.add_metric([job], value)
    return family


def render_metrics(snapshot: ClusterSnapshot) -> bytes:
    """The text exposition format of one snapshot."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ClusterCollector(snapshot))
    return generate_latest(registry)
