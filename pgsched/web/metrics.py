"""Cluster metrics read from the tables, the way postgres_exporter reads the catalog.

One custom collector turns a `ClusterSnapshot` (read by `Insight.cluster_snapshot`, a handful
of index-backed queries) into Prometheus families; register it in any `CollectorRegistry`.
Collection is synchronous in prometheus_client while the read is async, so `/metrics` reads
first and renders second. Per-job series of pending, running and overdue work, of schedules
and of invalid schedules exist only for jobs that have some: at 100,000 jobs a zero for each
would be most of the scrape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..insight import ClusterSnapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

PerJob = Callable[[ClusterSnapshot], dict[str, float] | dict[str, int]]

RUNNERS_LIVE = ("pgsched_runners_live", "Runners whose heartbeat is within the lease timeout.")
PER_JOB: tuple[tuple[str, str, PerJob], ...] = (
    ("pgsched_runs_pending", "Runs waiting to start, by job.", lambda s: s.pending),
    ("pgsched_runs_running", "Runs running now, by job.", lambda s: s.running),
    (
        "pgsched_job_last_success_timestamp_seconds",
        "When the job's newest successful run finished (Unix time).",
        lambda s: s.last_success,
    ),
    (
        "pgsched_job_next_run_timestamp_seconds",
        "The job's next tick (Unix time); absent when it cannot fire.",
        lambda s: s.next_run,
    ),
    (
        "pgsched_ticks_overdue",
        "Ticks past their misfire grace that no runner has started, by job.",
        lambda s: s.overdue,
    ),
    (
        "pgsched_schedules",
        "Schedules of the job (rows of pgsched.schedules); absent for a manual-only job.",
        lambda s: s.schedules,
    ),
    (
        "pgsched_schedules_invalid",
        "Schedules of the job that cannot fire (their error is set); absent when none.",
        lambda s: s.schedules_invalid,
    ),
)


class ClusterCollector(Collector):
    """pgsched_* gauges of one snapshot of the cluster's tables."""

    def __init__(self, snapshot: ClusterSnapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        name, doc = RUNNERS_LIVE
        yield GaugeMetricFamily(name, doc, value=self.snapshot.runners_live)
        for name, doc, values in PER_JOB:
            family = GaugeMetricFamily(name, doc, labels=["job"])
            for job, value in values(self.snapshot).items():
                family.add_metric([job], value)
            yield family


def render_metrics(snapshot: ClusterSnapshot) -> bytes:
    """The text exposition format of one snapshot, as `generate_latest` of the collector
    writes it (a test compares the two), in one pass over the snapshot: at 100,000 jobs
    (200,000 per-job samples) `generate_latest` spent 0.85 s of CPU building and formatting
    sample objects, this loop 0.1 s."""
    name, doc = RUNNERS_LIVE
    out = [f"# HELP {name} {doc}\n# TYPE {name} gauge\n{name} {float(snapshot.runners_live)!r}\n"]
    for name, doc, values in PER_JOB:
        out.append(f"# HELP {name} {doc}\n# TYPE {name} gauge\n")
        out.extend(
            f'{name}{{job="{_escape(job)}"}} {float(v)!r}\n' for job, v in values(snapshot).items()
        )
    return "".join(out).encode()


def render_metrics_reference(snapshot: ClusterSnapshot) -> bytes:
    """prometheus_client's own rendering of the collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ClusterCollector(snapshot))
    return generate_latest(registry)


def _escape(value: str) -> str:
    """A label value as the exposition format quotes it."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value
