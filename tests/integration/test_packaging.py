"""A plain (non-editable) install carries the SQL and the migrations; the example SQL runs."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import psycopg

from tests.runners import ROOT, pgsched


def test_wheel_carries_sql_and_migrations(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        timeout=300,
    )
    wheel = next(tmp_path.glob("pgsched-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in [
        "pgsched/sql/queries.sql",
        "pgsched/sql/schema.sql",
        "pgsched/sql/grants.sql",
        "pgsched/sql/examples/did_it_run.sql",
        "pgsched/migrations/env.py",
        "pgsched/migrations/versions/0001_initial.py",
        "pgsched/migrations/versions/0002_vacuum.py",
        "pgsched/sql/0002_vacuum.sql",
        "pgsched/sql/0002_vacuum_down.sql",
        "pgsched/migrations/versions/0003_actions.py",
        "pgsched/sql/0003_actions.sql",
        "pgsched/sql/0003_actions_down.sql",
        "pgsched/sql/insight.sql",
        "pgsched/web/templates/base.html",
        "pgsched/web/static/htmx.min.js",
        "pgsched/web/static/uPlot.iife.min.js",
        "pgsched/web/static/README.md",
        "pgsched/migrations/versions/0004_topology.py",
        "pgsched/sql/0004_topology.sql",
        "pgsched/sql/0004_topology_down.sql",
        "pgsched/migrations/versions/0005_definitions.py",
        "pgsched/sql/0005_definitions.sql",
        "pgsched/sql/0005_definitions_down.sql",
        "pgsched/migrations/versions/0006_cancel.py",
        "pgsched/sql/0006_cancel.sql",
        "pgsched/sql/0006_cancel_down.sql",
        "pgsched/migrations/versions/0007_schedules.py",
        "pgsched/sql/0007_schedules.sql",
        "pgsched/sql/0007_schedules_down.sql",
        "pgsched/migrations/versions/0008_fair_claims.py",
        "pgsched/sql/0008_fair_claims.sql",
        "pgsched/sql/0008_fair_claims_down.sql",
        "pgsched/migrations/versions/0009_exactly_once.py",
        "pgsched/sql/0009_exactly_once.sql",
        "pgsched/sql/0009_exactly_once_down.sql",
        "pgsched/py.typed",
    ]:
        assert required in names, f"{required} missing from {wheel.name}"


def test_example_history_queries_run(dsn: str) -> None:
    assert pgsched("--app", "examples.demo:ext", "sync", dsn=dsn).returncode == 0
    inline = pgsched("--app", "examples.demo:ext", "jobs", "run", "demo-greet", "--inline", dsn=dsn)
    assert inline.returncode == 0, inline.stderr
    examples = sorted((ROOT / "sql" / "examples").glob("*.sql"))
    assert len(examples) >= 5
    with psycopg.connect(dsn, autocommit=True) as conn:
        for path in examples:
            conn.execute(path.read_text().encode())
        greeted = conn.execute(
            "SELECT count(*) FROM pgsched.runs WHERE job_name = 'demo-greet'"
        ).fetchone()
    assert greeted == (2,)  # the inline run and the one request_run.sql inserted
