"""The crew that runs sync jobs: every task once, never before its time, and a task that
blocks never holds the others back. No timing is asserted except the not-before bound."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from pgsched.runner.crew import Crew

WAIT = 10.0  # generous: the machines are shared; a pass never depends on speed


@pytest.fixture
def crew() -> Iterator[Crew]:
    crew = Crew("test-crew")
    yield crew
    crew.shutdown()


def test_every_task_runs_exactly_once(crew: Crew) -> None:
    ran: Counter[int] = Counter()
    done = threading.Semaphore(0)

    def task(i: int) -> None:
        ran[i] += 1
        done.release()

    for i in range(2_000):
        crew.call(lambda i=i: task(i))
    for _ in range(2_000):
        assert done.acquire(timeout=WAIT)
    assert ran == Counter(range(2_000))
    assert crew.queued == 0


def test_tasks_handed_over_ahead_never_start_before_their_time(crew: Crew) -> None:
    started: dict[int, float] = {}
    done = threading.Semaphore(0)
    not_before = {i: time.monotonic() + 0.02 + (i % 3) * 0.01 for i in range(300)}

    def task(i: int) -> None:
        started[i] = time.monotonic()
        done.release()

    for i, when in not_before.items():
        crew.call(lambda i=i: task(i), not_before=when)
    for _ in not_before:
        assert done.acquire(timeout=WAIT)
    early = [i for i, when in not_before.items() if started[i] < when]
    assert early == []


def test_a_blocked_task_does_not_hold_back_the_ones_behind_it(crew: Crew) -> None:
    release = threading.Event()
    blocked_done = threading.Event()
    others = threading.Semaphore(0)

    def blocking() -> None:
        release.wait(WAIT)
        blocked_done.set()

    crew.call(blocking)
    for _ in range(50):
        crew.call(others.release)
    for _ in range(50):
        assert others.acquire(timeout=WAIT), "a task waited behind a blocked one"
    assert not blocked_done.is_set()  # all of them ran while the first one was still held
    release.set()
    assert blocked_done.wait(WAIT)


def test_many_blocking_tasks_each_get_a_thread(crew: Crew) -> None:
    """Tasks that all block (I/O, sleeps) run at the same time, as in a thread pool."""
    gate = threading.Barrier(21, timeout=WAIT)
    for _ in range(20):
        crew.call(gate.wait)
    gate.wait()  # breaks (BrokenBarrierError) unless all 20 run at once
    assert len(crew) >= 20


def test_submit_reports_results_and_exceptions(crew: Crew) -> None:
    assert crew.submit(lambda a, b: a + b, 2, b=3).result(WAIT) == 5
    with pytest.raises(ZeroDivisionError):
        crew.submit(lambda: 1 / 0).result(WAIT)


def test_shutdown_drops_what_has_not_started(crew: Crew) -> None:
    ran = threading.Event()
    crew.call(ran.set, not_before=time.monotonic() + 0.05)
    future = crew.submit(time.sleep, 0)  # may have started already; if not, it is cancelled
    crew.shutdown()
    with pytest.raises(RuntimeError, match="closed"):
        crew.call(ran.set)
    assert not ran.wait(0.3)  # it was due 0.05 s after the shutdown
    assert future.cancelled() or future.result(WAIT) is None


def test_a_task_that_escapes_its_guard_is_logged_and_the_thread_serves_on(crew: Crew) -> None:
    def broken() -> None:
        raise SystemExit("a bug of ours")

    after = threading.Event()
    crew.call(broken)
    crew.call(after.set)
    assert after.wait(WAIT)
