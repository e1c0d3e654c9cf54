"""First ticks of many schedules, shared with worker processes: same answers as one by one."""

from __future__ import annotations

import random
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import pgsched.ticks
from pgsched.cron import parse_schedule
from pgsched.ticks import next_ticks_after, next_ticks_here

BAD = ("0 0 0 31 2 *", "UTC")  # parses, never fires


def _many_schedules() -> set[tuple[str, str]]:
    rng = random.Random(7)
    zones = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]
    keys = {
        (f"{rng.randrange(60)} {rng.randrange(60)} {rng.randrange(24)} * * *", rng.choice(zones))
        for _ in range(300)
    }
    return keys | {BAD, ("0 */15 * * * *", "Asia/Kolkata")}


def _split_in_three(monkeypatch: pytest.MonkeyPatch) -> list[dict[Any, datetime] | None]:
    """Make next_ticks_after use two workers besides this process; returns their answers."""
    monkeypatch.setattr(pgsched.ticks, "_PER_WORKER", 50)
    monkeypatch.setattr(pgsched.ticks, "_usable_cpus", lambda: 3)
    answers: list[dict[Any, datetime] | None] = []
    answer = pgsched.ticks._Worker.answer

    def recording(self: Any, deadline: float) -> dict[Any, datetime] | None:
        answers.append(answer(self, deadline))
        return answers[-1]

    monkeypatch.setattr(pgsched.ticks._Worker, "answer", recording)
    return answers


def test_schedules_split_over_worker_processes_get_the_ticks_computed_one_by_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Same ticks in every zone; a bad schedule is left out for the caller to report with its
    job's name; a `pgsched` folder in the working directory does not replace this one."""
    (tmp_path / "pgsched").mkdir()
    (tmp_path / "pgsched" / "__init__.py").write_text("raise SystemExit(3)\n")
    monkeypatch.chdir(tmp_path)
    keys = _many_schedules()
    after = datetime(2027, 3, 27, 23, 59, 30, tzinfo=UTC)
    answers = _split_in_three(monkeypatch)
    split = next_ticks_after(keys, after)
    assert len(answers) == 2 and all(a is not None and len(a) > 50 for a in answers)
    one_by_one = {key: parse_schedule(*key).next_after(after) for key in keys - {BAD}}
    assert split == one_by_one
    assert split[("0 */15 * * * *", "Asia/Kolkata")] == datetime(2027, 3, 28, tzinfo=UTC)


@pytest.mark.parametrize(
    ("executable", "problem"),
    [("/bin/false", "exit code 1"), ("/nonexistent/python", "could not start a worker")],
)
def test_a_failing_worker_is_given_up_on_with_a_warning_and_its_share_computed_here(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    executable: str,
    problem: str,
) -> None:
    keys = _many_schedules()
    after = datetime(2027, 1, 1, tzinfo=UTC)
    answers = _split_in_three(monkeypatch)
    monkeypatch.setattr(sys, "executable", executable)
    assert next_ticks_after(keys, after) == next_ticks_here(keys, after)
    assert answers == [None, None]
    logged = capsys.readouterr()  # structlog: stdout unless the CLI configured it
    assert (logged.out + logged.err).count(problem) == 2


def test_a_worker_that_misses_the_deadline_is_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = _many_schedules()
    after = datetime(2027, 1, 1, tzinfo=UTC)
    answers = _split_in_three(monkeypatch)
    monkeypatch.setattr(pgsched.ticks, "_DEADLINE_S", -1.0)  # already past when they start
    workers: list[Any] = []
    init = pgsched.ticks._Worker.__init__

    def keep(self: Any, *args: Any) -> None:
        init(self, *args)
        workers.append(self)

    monkeypatch.setattr(pgsched.ticks._Worker, "__init__", keep)
    assert next_ticks_after(keys, after) == next_ticks_here(keys, after)
    assert answers == [None, None]
    assert [w.proc.returncode for w in workers] == [-9, -9]  # SIGKILL, reaped


def test_cpu_quota_of_the_process_cgroup_caps_the_workers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cgroup = tmp_path / "sys" / "fs" / "cgroup"
    (cgroup / "app.slice" / "pod").mkdir(parents=True)
    (cgroup / "cpu.max").write_text("max 100000\n")
    (cgroup / "app.slice" / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs, a parent's
    (cgroup / "app.slice" / "pod" / "cpu.max").write_text("max 100000\n")
    proc_cgroup = tmp_path / "cgroup"
    proc_cgroup.write_text("0::/app.slice/pod\n")
    real_path = pgsched.ticks.Path

    def rooted(*parts: Any) -> Path:
        path = real_path(*parts)
        if str(path) == "/proc/self/cgroup":
            return proc_cgroup
        if str(path).startswith("/sys/fs/cgroup"):
            return tmp_path / str(path).lstrip("/")
        return path

    monkeypatch.setattr(pgsched.ticks, "Path", rooted)
    monkeypatch.setattr(pgsched.ticks.os, "sched_getaffinity", lambda _: {0, 1, 2, 3})
    assert pgsched.ticks._usable_cpus() == 1
    (cgroup / "app.slice" / "cpu.max").write_text("max 100000\n")
    assert pgsched.ticks._usable_cpus() == 4


def test_no_temp_folder_for_the_workers_means_computing_here(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = _many_schedules()
    after = datetime(2027, 1, 1, tzinfo=UTC)
    answers = _split_in_three(monkeypatch)
    monkeypatch.setattr(pgsched.ticks.tempfile, "tempdir", "/nonexistent/tmp")
    assert next_ticks_after(keys, after) == next_ticks_here(keys, after)
    assert answers == [None, None]
    logged = capsys.readouterr()
    assert (logged.out + logged.err).count("could not start a worker") == 2
