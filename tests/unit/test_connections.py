"""The pure parts of out-of-connections reporting and of the server-settings check."""

from __future__ import annotations

import time

import pytest

from pgsched.connections import ConnectionWatch, Refusals, pool_timeout_reason, server_reason
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


class _Log:
    def __init__(self) -> None:
        self.events: list[str] = []

    def error(self, event: str, **kw: object) -> None:
        self.events.append(event)

    def info(self, event: str, **kw: object) -> None:
        self.events.append(event)


def test_a_connection_problem_is_logged_once_and_over_when_cured_or_not_seen_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    log = _Log()
    watch = ConnectionWatch(log, window=60)
    watch.failed("too many clients already")
    watch.failed("too many clients already")
    assert watch.problem == "too many clients already"
    assert log.events == ["cannot get a database connection"]
    now[0] += 59
    assert watch.problem is not None  # still within the window
    now[0] += 2
    assert watch.problem is None  # not seen again for a window: over (a nightly job's refusal)
    watch.failed("too many clients already")
    watch.ok()
    assert watch.problem is None
    assert log.events[-1] == "database connections available again"
