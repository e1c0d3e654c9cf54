"""The dashboard's fast /metrics text says exactly what prometheus_client's own rendering says."""

from __future__ import annotations

import pytest

pytest.importorskip("prometheus_client", reason="the dashboard needs pip install 'pgsched[web]'")

from prometheus_client.parser import text_string_to_metric_families

from pgsched.insight import ClusterSnapshot
from pgsched.web.metrics import render_metrics, render_metrics_reference


def samples(text: bytes) -> list[tuple[str, tuple[tuple[str, str], ...], float]]:
    return sorted(
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    )


def test_fast_rendering_matches_prometheus_client_including_escapes() -> None:
    odd = 'quote" back\\slash\nnewline'
    snapshot = ClusterSnapshot(
        runners_live=2,
        pending={"a": 3, odd: 1},
        running={"b": 1},
        overdue={"c": 4},
        next_run={"a": 1_700_000_000.25, "c": 1_600_000_000.0},
        last_success={"a": 1_700_000_000.0},
        schedules={"a": 3, odd: 1},
        schedules_invalid={"a": 1},
    )
    fast, reference = render_metrics(snapshot), render_metrics_reference(snapshot)
    assert samples(fast) == samples(reference)
    families = {f.name: f.type for f in text_string_to_metric_families(fast.decode())}
    assert families == {f.name: f.type for f in text_string_to_metric_families(reference.decode())}
    assert ("pgsched_runs_pending", (("job", odd),), 1.0) in samples(fast)
    assert ("pgsched_schedules_invalid", (("job", "a"),), 1.0) in samples(fast)
