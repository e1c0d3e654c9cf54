"""The per-run logger is bound on first use, and behaves like a structlog logger."""

from __future__ import annotations

import copy
import json
import pickle
import re
import subprocess
import sys

import pytest

from pgsched.logs import LazyLogger
from tests.runners import PATIENCE


def test_lazy_logger_binds_on_first_use_only() -> None:
    log = LazyLogger(job="nightly", run_id=7)
    assert log._logger is None
    bound = log.bind(extra=1)  # reaches the real logger
    assert log._logger is not None
    assert bound._context == {"job": "nightly", "run_id": 7, "extra": 1}


@pytest.mark.parametrize("clone", [copy.copy, copy.deepcopy])
def test_lazy_logger_can_be_copied(clone: object) -> None:
    """copy and pickle probe attributes on an instance made without __init__: no recursion."""
    copied = clone(LazyLogger(job="nightly"))  # type: ignore[operator]
    assert copied._bound == {"job": "nightly"}
    assert pickle.loads(pickle.dumps(LazyLogger(job="x")))._bound == {"job": "x"}


# --- pgsched's own output: the CLI and worker processes -----------------------------------------
# What `pgsched runner` (and a worker process) prints is pinned here line for line: operators
# and log shippers parse it. Each case runs in a process of its own, as the CLI does: the set-up
# is structlog's global configuration, which must not leak into this test process.

SCRIPT = """
from pgsched.logs import configure_logging, get_logger
configure_logging({level!r}, json={json}, lazy={lazy})
log = get_logger(runner="r1")
log.info("runner started", concurrency=4, listen=True)
log.debug("not at info")
log.bind(job="nightly").warning("run raised", error="boom: it broke", note=None)
try:
    1 / 0
except ZeroDivisionError:
    log.exception("internal error running a job", run_id=7)
"""

TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def printed(level: str = "info", json: bool = True, lazy: bool = True) -> str:
    """What such a process writes to stderr, its timestamps replaced by TIME."""
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(level=level, json=json, lazy=lazy)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60 * PATIENCE,
    )
    assert done.stdout == ""
    return TIME.sub("TIME", done.stderr)


@pytest.mark.parametrize("lazy", [True, False])  # the CLI's lazy set-up, a worker's at once
def test_cli_json_lines_are_unchanged(lazy: bool) -> None:
    traceback = (
        'Traceback (most recent call last):\\n  File \\"<string>\\", line 9, in <module>\\n'
        "ZeroDivisionError: division by zero"
    )
    assert printed(json=True, lazy=lazy).splitlines() == [
        '{"runner": "r1", "concurrency": 4, "listen": true, "event": "runner started",'
        ' "level": "info", "timestamp": "TIME"}',
        '{"runner": "r1", "job": "nightly", "error": "boom: it broke", "note": null,'
        ' "event": "run raised", "level": "warning", "timestamp": "TIME"}',
        '{"runner": "r1", "run_id": 7, "event": "internal error running a job",'
        f' "level": "error", "timestamp": "TIME", "exception": "{traceback}"}}',
    ]


def test_cli_console_lines_are_unchanged() -> None:
    assert printed(json=False).splitlines() == [
        "TIME [info     ] runner started                 concurrency=4 listen=True runner=r1",
        "TIME [warning  ] run raised                     error='boom: it broke' job=nightly"
        " note=None runner=r1",
        "TIME [error    ] internal error running a job   run_id=7 runner=r1",
        "Traceback (most recent call last):",
        '  File "<string>", line 9, in <module>',
        "ZeroDivisionError: division by zero",
    ]


def test_cli_log_level_drops_lines_below_it() -> None:
    assert [json.loads(line)["event"] for line in printed("warning").splitlines()] == [
        "run raised",
        "internal error running a job",
    ]
    assert "not at info" in printed("debug")
