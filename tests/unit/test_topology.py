"""Connection settings for a pooler, and the lock wait's schedule: no database needed."""

from __future__ import annotations

from pgsched.locks import REPORT_AFTER, describe, sync_lock
from pgsched.topology import resolve_topology

DSN = "postgresql://app@bouncer:6432/app"
DIRECT = "postgresql://app@db:5432/app"


def test_a_declared_transaction_pooler_turns_off_prepared_statements_and_listen() -> None:
    topology = resolve_topology(DSN, "transaction")
    assert topology.connect_kwargs == {"prepare_threshold": None}
    assert topology.listen_dsn is None
    assert "database.listen_url" in (topology.listen_unavailable or "")


def test_a_direct_listen_url_keeps_listen_behind_a_pooler() -> None:
    topology = resolve_topology(DSN, "transaction", listen_url=DIRECT)
    assert topology.listen_dsn == DIRECT and topology.listen_unavailable is None


def test_no_pooler_changes_nothing() -> None:
    topology = resolve_topology(DIRECT, "none")
    assert topology.connect_kwargs == {} and topology.listen_dsn == DIRECT


def test_a_lock_wait_reports_after_five_seconds_or_half_a_short_timeout() -> None:
    assert sync_lock("pgsched", 60).steps() == [REPORT_AFTER, 60 - REPORT_AFTER]
    assert sync_lock("pgsched", 2).steps() == [1.0, 1.0]


def test_lock_holders_are_described_for_people() -> None:
    holder = {
        "pid": 42,
        "user": "ops",
        "application_name": "psql",
        "mode": "ExclusiveLock",
        "granted": True,
        "state": "idle in transaction",
        "for_seconds": 312.4,
    }
    text = describe([holder])
    assert text == (
        "pid 42 (user ops, application_name 'psql', ExclusiveLock, idle in transaction"
        " in a transaction for 312s)"
    )
    error = str(sync_lock("pgsched", 2).failure([holder]))
    assert "pg_terminate_backend(42)" in error and "database.lock_timeout" in error
