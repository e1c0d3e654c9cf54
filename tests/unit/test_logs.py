"""pgsched's logging: its own lines where it owns the process (the CLI, a worker process),
records of the host's `logging` where it is a guest; the per-run logger, bound on first use."""

from __future__ import annotations

import copy
import io
import json
import logging
import pickle
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
import structlog

from pgsched.isolation import _Relay
from pgsched.logs import RELAY, LazyLogger, get_logger, relay_logging
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
log = get_logger("pgsched.runner", runner="r1")  # a guest's logger name: not in these lines
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


# --- a guest's logging: records of the host's `logging` ------------------------------------------
# This test process never calls configure_logging: pgsched is a guest here, as in an application.


class Kept(logging.Handler):
    """A host's handler: keeps the records it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def kept() -> Iterator[Kept]:
    """A handler on `pgsched.test`, at DEBUG."""
    logger = logging.getLogger("pgsched.test")
    handler = Kept()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)


def test_a_guests_event_is_a_record_with_its_text_and_its_fields(kept: Kept) -> None:
    get_logger("pgsched.test", runner="r1").info("runner started", concurrency=4, listen=True)
    (record,) = kept.records
    assert (record.name, record.levelname) == ("pgsched.test", "INFO")
    assert record.getMessage() == "runner started runner=r1 concurrency=4 listen=true"
    assert {k: vars(record)[k] for k in ("event", "runner", "concurrency", "listen")} == {
        "event": "runner started",
        "runner": "r1",
        "concurrency": 4,
        "listen": True,
    }
    # the line that logged, not structlog's frames
    assert (record.pathname, record.funcName) == (__file__, sys._getframe().f_code.co_name)


def test_a_hosts_structlog_logger_class_finds_the_line_that_logged_itself() -> None:
    """A host whose structlog uses LoggerFactory has its loggers skip structlog's frames."""
    previous = logging.getLoggerClass()
    structlog.stdlib.LoggerFactory()  # as in the host's structlog.configure(logger_factory=...)
    try:
        logger = logging.getLogger("pgsched.test.structlog_class")
    finally:
        logging.setLoggerClass(previous)
    assert type(logger) is not logging.Logger
    handler = Kept()
    logger.addHandler(handler)
    try:
        get_logger(logger.name).warning("here")
    finally:
        logger.removeHandler(handler)
    (record,) = handler.records
    assert (record.pathname, record.funcName) == (__file__, sys._getframe().f_code.co_name)


def test_a_guests_record_keeps_keys_logging_reserves_and_quotes_values(kept: Kept) -> None:
    log = get_logger("pgsched.test")
    log.warning("odd keys", thread="pgsched-job-1", name="x", message="y", error="a b")
    (record,) = kept.records
    assert record.threadName != "pgsched-job-1"  # the record's own attributes stand
    assert {k: vars(record)[k] for k in ("thread_", "name_", "message_")} == {
        "thread_": "pgsched-job-1",
        "name_": "x",
        "message_": "y",
    }
    assert record.getMessage() == 'odd keys thread=pgsched-job-1 name=x message=y error="a b"'


def test_a_guests_exception_and_positional_arguments_are_the_stdlib_kind(kept: Kept) -> None:
    log = get_logger("pgsched.test")
    log.info("took %d s", 3, job="j")
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError:
        log.exception("internal error running a job", run_id=7)
    took, failed = kept.records
    assert took.getMessage() == "took 3 s job=j"
    assert failed.levelno == logging.ERROR and failed.exc_info is not None
    assert "ZeroDivisionError: division by zero" in logging.Formatter().format(failed)


def test_a_guest_logs_at_the_hosts_levels(kept: Kept) -> None:
    log = get_logger("pgsched.test.child")
    logging.getLogger("pgsched.test").setLevel(logging.WARNING)
    log.info("dropped")
    log.warning("kept")
    assert [r.getMessage() for r in kept.records] == ["kept"]


def test_a_host_that_uses_structlog_itself_sees_the_event_and_its_fields() -> None:
    """structlog's own recipe for records of other libraries: ProcessorFormatter, ExtraAdder.
    pgsched's record carries `event` without the key/values: the host's line has them once."""
    config = structlog.get_config()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, structlog.stdlib.ExtraAdder()],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(sort_keys=True),
            ],
        )
    )
    host = logging.getLogger("pgsched.structlog_host")  # its first handler: no other formats
    host.addHandler(handler)  # the record first (that sets record.message, which ExtraAdder
    host.setLevel(logging.INFO)  # would copy)
    try:
        get_logger(host.name, runner="r1").info("runner started", concurrency=4)
    finally:
        host.removeHandler(handler)
        host.setLevel(logging.NOTSET)
    assert json.loads(out.getvalue()) == {
        "event": "runner started",
        "logger": "pgsched.structlog_host",
        "runner": "r1",
        "concurrency": 4,
    }
    assert structlog.get_config() == config  # pgsched configured nothing of structlog's


# --- a worker process's records, relayed ---------------------------------------------------------


def relayed_line(kept: Kept, text: str, **fields: object) -> str:
    """The line a worker writes for a record: made with relay_logging's handler."""
    stream = io.StringIO()
    root, level = logging.getLogger(), logging.getLogger().level
    before = root.handlers[:]
    relay_logging({"pgsched.test": logging.INFO}, stream)
    try:
        get_logger("pgsched.test", **fields).info(text)
    finally:
        root.handlers[:] = before
        root.setLevel(level)
    kept.records.clear()  # it was kept here too, as it was made
    return stream.getvalue()


def test_relayed_records_are_the_hosts_and_the_rest_passes_on_as_it_came(kept: Kept) -> None:
    record = relayed_line(kept, "said hello", job="j")
    assert record.startswith(RELAY) and record.endswith("\n")
    relay = _Relay()
    pieces = [
        "a job's print\nmid-",  # text passes on at once, even mid-line
        "line" + RELAY[:4],  # ... a relay prefix inside a line is no record
        "\n" + record[:3],  # a line's first characters that may be a record: held back
        record[3:20],
        record[20:] + RELAY + "not json\n" + "no newline yet",
    ]
    passed, told = zip(*(relay.feed(p) for p in pieces), strict=True)
    assert "".join(passed) == (
        "a job's print\nmid-line" + RELAY[:4] + "\n" + RELAY + "not json\nno newline yet"
    )
    assert passed[2:4] == ("\n", "")  # the record's start waits for the rest
    assert "said hello job=j\n" in "".join(told) and RELAY + "{" not in "".join(told)
    assert relay.rest() == ""
    (replayed,) = kept.records
    assert (replayed.name, replayed.getMessage(), vars(replayed)["job"]) == (
        "pgsched.test",
        "said hello job=j",
        "j",
    )


def test_a_relayed_record_below_the_hosts_level_is_dropped(kept: Kept) -> None:
    record = relayed_line(kept, "said hello")
    logging.getLogger("pgsched.test").setLevel(logging.WARNING)
    assert _Relay().feed(record) == ("", "said hello\n")  # not passed on raw either
    assert kept.records == []
