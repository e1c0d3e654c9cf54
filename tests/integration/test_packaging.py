"""The example SQL of pgsched/sql/examples runs against a real history. (That the wheel
carries every file: tests/unit/test_packaging.py.)"""

from __future__ import annotations

import psycopg

from tests.runners import ROOT, pgsched


def test_example_history_queries_run(dsn: str) -> None:
    assert pgsched("--app", "examples.demo:ext", "sync", dsn=dsn).returncode == 0
    inline = pgsched("--app", "examples.demo:ext", "jobs", "run", "demo-greet", "--inline", dsn=dsn)
    assert inline.returncode == 0, inline.stderr
    examples = sorted((ROOT / "pgsched" / "sql" / "examples").glob("*.sql"))
    assert len(examples) >= 5
    with psycopg.connect(dsn, autocommit=True) as conn:
        for path in examples:
            conn.execute(path.read_text().encode())
        greeted = conn.execute(
            "SELECT count(*) FROM pgsched.runs WHERE job_name = 'demo-greet'"
        ).fetchone()
    assert greeted == (2,)  # the inline run and the one request_run.sql inserted
