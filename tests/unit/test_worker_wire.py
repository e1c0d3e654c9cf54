"""The worker protocol's wire format and exit descriptions (no process, no database)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pgsched.isolation import describe_exit
from pgsched.runs import ClaimedRun
from pgsched.worker import (
    HEADER_SIZE,
    MAX_MESSAGE_BYTES,
    claimed_from_wire,
    claimed_to_wire,
    decode,
    decode_length,
    encode,
)


def test_a_claimed_run_crosses_the_pipe_unchanged() -> None:
    claimed = ClaimedRun(
        id=7,
        job_name="reports-send",
        trigger="schedule",
        scheduled_for=datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
        attempt=2,
        params={"tenant": 42, "name": "Zürich\n"},
        lease="8d1b6a52-0000-4000-8000-000000000000",
        claimed_at=1774747800.25,
        claimed_mono=12345.5,
    )
    frame = encode({"type": "run", "run": claimed_to_wire(claimed)})
    assert decode_length(frame[:HEADER_SIZE]) == len(frame) - HEADER_SIZE
    message = decode(frame[HEADER_SIZE:])
    assert claimed_from_wire(message["run"]) == claimed


def test_a_corrupt_stream_is_refused_not_trusted() -> None:
    with pytest.raises(ValueError, match="corrupt"):
        decode_length((MAX_MESSAGE_BYTES + 1).to_bytes(HEADER_SIZE, "big"))
    with pytest.raises(ValueError, match="not a pgsched worker message"):
        decode(b"[1, 2]")


@pytest.mark.parametrize(
    ("returncode", "said"),
    [
        (0, "exited with code 0"),
        (3, "exited with code 3"),
        (-9, "killed by SIGKILL (signal 9)"),
        (-11, "killed by SIGSEGV (signal 11)"),
        (-200, "killed by signal 200"),
    ],
)
def test_exit_codes_and_signals_are_named(returncode: int, said: str) -> None:
    assert describe_exit(returncode) == said
