"""The threads that run sync jobs: as few hand-offs as the jobs allow.

A `ThreadPoolExecutor` wakes one thread per task. When a thousand schedules share a second,
that is a thousand wake-ups and GIL hand-overs at the same instant, and they, not the jobs,
were most of a runner's CPU in that burst (bench/README.md, section 10). The crew wakes one
thread for a batch instead, and that thread takes run after run while its jobs return
quickly; a watch thread gives every waiting run a thread of its own as soon as nobody has
taken one for `stall` seconds (the threads taking them are held by their jobs: I/O, sleeps,
long work). A run that blocks thus delays the others by about `stall`, never by its own
length.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

from ..logs import RUNNER, get_logger

# Nobody took a waiting run for this long: give each waiting run a thread of its own.
STALL = 0.001


class Crew(Executor):
    """Threads for sync jobs, woken one per batch, more when the jobs hold them. Threads are
    daemons: a job that never returns must not keep the process from exiting."""

    def __init__(
        self, name: str, stall: float = STALL, on_drained: Callable[[], None] | None = None
    ) -> None:
        self.name = name
        self.stall = stall
        self.on_drained = on_drained  # called by the thread that takes the last waiting task
        self._lock = threading.Lock()
        self._work_ready = threading.Condition(self._lock)  # the threads wait here
        self._watch_ready = threading.Condition(self._lock)  # the watch waits here
        self._todo: deque[Callable[[], object]] = deque()
        # tasks handed over ahead of their time: (not before, order, task), a heap
        self._later: list[tuple[float, int, Callable[[], object]]] = []
        self._order = itertools.count()
        self._free = 0  # threads awake and not inside a task (about to take one)
        self._waiting = 0  # threads waiting for work, not yet woken
        self._threads = 0
        self._taken = 0  # tasks taken so far: the watch's measure of progress
        self._closed = False
        self._watch: threading.Thread | None = None

    # --- handing work over ------------------------------------------------------------------

    def call(self, fn: Callable[[], object], not_before: float = 0.0) -> None:
        """Run `fn` in a crew thread, not before the monotonic instant `not_before`; no
        future (its own code reports its end). Handed over a little ahead of their time,
        the runs of one instant start together at it, timed by one thread to a fraction of
        a millisecond (an event loop's timers are only good to the millisecond)."""
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.name}: closed")
            if not_before > time.monotonic():
                heapq.heappush(self._later, (not_before, next(self._order), fn))
                if self._later[0][0] == not_before:  # the earliest: the watch times it
                    self._notify_watch()
                return
            self._todo.append(fn)
            if self._free == 0:  # every thread awake is inside a task: wake one more
                self._wake(1)
            if len(self._todo) == 1:
                self._notify_watch()

    def _notify_watch(self) -> None:
        if self._watch is None:
            self._watch = self._start(self._watch_over, "watch")
        else:
            self._watch_ready.notify()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """`concurrent.futures.Executor.submit` (for `loop.run_in_executor`)."""
        task = _FutureTask(fn, args, kwargs)
        self.call(task)
        return task.future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking tasks; those not started are dropped. Running ones are not waited for
        (`wait` is ignored: a job's thread cannot be stopped, and it is a daemon)."""
        with self._lock:
            self._closed = True
            dropped = [*self._todo, *(task for _, _, task in self._later)]
            self._todo.clear()
            self._later.clear()
            self._work_ready.notify_all()
            self._watch_ready.notify_all()
        for task in dropped:
            if isinstance(task, _FutureTask):
                task.future.cancel()  # whoever awaits it is not left waiting

    def __len__(self) -> int:
        """Threads started so far."""
        return self._threads

    @property
    def queued(self) -> int:
        """Tasks waiting for a thread."""
        return len(self._todo)

    # --- the threads ------------------------------------------------------------------------

    def _wake(self, count: int) -> None:
        """`count` more threads to take tasks: waiting ones first, then new ones (lock held)."""
        woken = min(count, self._waiting)
        if woken:
            self._waiting -= woken
            self._work_ready.notify(woken)
        self._free += count
        for _ in range(count - woken):
            self._threads += 1
            self._start(self._work, str(self._threads))

    def _start(self, target: Callable[[], None], suffix: str) -> threading.Thread:
        thread = threading.Thread(target=target, name=f"{self.name}-{suffix}", daemon=True)
        thread.start()
        return thread

    def _work(self) -> None:
        """Counted in `_free` whenever it is outside a task and not waiting."""
        lock = self._lock
        with lock:
            while True:
                while not self._todo:
                    self._free -= 1
                    if self._closed:
                        return
                    self._waiting += 1
                    self._work_ready.wait()  # whoever wakes it counts it free again
                task = self._todo.popleft()
                self._free -= 1
                self._taken += 1
                drained = not self._todo
                lock.release()
                try:
                    if drained and self.on_drained is not None:
                        self._guarded(self.on_drained)
                    self._guarded(task)
                finally:
                    lock.acquire()
                self._free += 1

    def _guarded(self, fn: Callable[[], object]) -> None:
        """Tasks report their own failures (a job's are its outcome); one that escapes is a
        bug of ours, logged, and the thread goes on serving."""
        try:
            fn()
        except BaseException:
            get_logger(RUNNER).exception("internal error in a job thread", thread=self.name)

    def _watch_over(self) -> None:
        """Releases tasks at their time, and while tasks wait: if none was taken for `stall`
        seconds, wakes a thread for each."""
        with self._lock:
            while not self._closed:
                now = time.monotonic()
                while self._later and self._later[0][0] <= now:
                    self._todo.append(heapq.heappop(self._later)[2])
                    if self._free == 0:
                        self._wake(1)
                timeout = self._later[0][0] - now if self._later else None
                if not self._todo:
                    self._watch_ready.wait(timeout)
                    continue
                taken = self._taken
                self._watch_ready.wait(self.stall if timeout is None else min(timeout, self.stall))
                if (
                    self._todo
                    and self._free == 0  # a thread woken but not yet scheduled will take one
                    and self._taken == taken
                    and time.monotonic() - now >= self.stall
                ):
                    self._wake(len(self._todo))


class _FutureTask:
    """A submitted call and the future that reports it."""

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]):
        self.future: Future[Any] = Future()
        self._call = (fn, args, kwargs)

    def __call__(self) -> None:
        if not self.future.set_running_or_notify_cancel():
            return
        fn, args, kwargs = self._call
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self.future.set_exception(exc)
        else:
            self.future.set_result(result)
