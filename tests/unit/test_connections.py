"""The pure parts of out-of-connections reporting and of the server-settings check."""

from __future__ import annotations

from pgsched.connections import Refusals, pool_timeout_reason, server_reason
from pgsched.store import setting_conflicts


def test_server_reason_is_what_the_server_said() -> None:
    libpq = (
        'connection failed: connection to server at "127.0.0.1", port 5432 failed: '
        "FATAL:  sorry, too many clients already"
    )
    assert server_reason(Exception(libpq)) == "sorry, too many clients already"
    assert server_reason(Exception("timeout expired\n")) == "timeout expired"


def test_a_pool_timeout_says_refused_or_full() -> None:
    refusals = Refusals()
    full = pool_timeout_reason("p", 4, 4, refusals)
    assert full == "all 4 of pool 'p''s connections (max_size 4) were in use"
    refusals.refused(Exception('FATAL:  too many connections for role "r"'))
    refused = pool_timeout_reason("p", 4, 1, refusals)
    assert (
        refused == "the server refused pool 'p' a connection: too many connections for role \"r\""
    )
    refusals.connected()
    assert pool_timeout_reason("p", 4, 4, refusals) == full


def _row(ms: int, text: str) -> dict[str, object]:
    role, db = "app owner", "app"
    return {
        "role": role,
        "database": db,
        "statement_timeout_ms": ms,
        "statement_timeout_text": text,
    }


def test_only_a_statement_timeout_shorter_than_pgscheds_longest_statement_conflicts() -> None:
    assert setting_conflicts(_row(0, "0")) == []
    assert setting_conflicts(_row(3_600_000, "1h")) == []
    [conflict] = setting_conflicts(_row(200, "200ms"))
    assert conflict.startswith("statement_timeout is 200ms for role app owner on database app")
    assert 'ALTER ROLE "app owner" SET statement_timeout = 0' in conflict
