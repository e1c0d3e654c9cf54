"""Leases: this runner's heartbeat, and recovery of the runs of runners that stopped beating.

A running run has an owner (`runs.runner`) and a lease token (`runs.lease`). The owner's
heartbeat keeps the lease; when a runner goes silent for `lease_timeout`, any live runner
fails its runs as "runner lost" (the retry trigger applies) and removes it. Both duties run
on the control loop, so no job can delay them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..settings import RunnerSettings
from ..store import Store
from .duty import Duty
from .results import Results


class Heartbeat(Duty):
    name = "heartbeat"

    def __init__(
        self,
        store: Store,
        runner_id: str,
        settings: RunnerSettings,
        on_lease_lost: Callable[[], Awaitable[None]],
        log: Any,
    ) -> None:
        super().__init__()
        self.store = store
        self.runner_id = runner_id
        self.settings = settings
        self.on_lease_lost = on_lease_lost
        self.log = log
        self.stopping = False  # told to the table, so others' fair shares leave us out
        self.last_beat: float | None = None  # monotonic time of the last heartbeat written

    async def step(self) -> float | None:
        if not await self.store.heartbeat(self.runner_id, self.stopping):
            self.log.warning(
                "this runner was declared dead (lease expired); re-registering; results of "
                "its old runs are discarded"
            )
            await self.on_lease_lost()
        self.last_beat = time.monotonic()
        return self.settings.heartbeat_interval


class CancelWatch(Duty):
    """Stops the runs this runner holds that someone asked to cancel (`pgsched.cancel_run`,
    `jobs cancel`, the dashboard, SQL): woken by NOTIFY, and every heartbeat interval."""

    name = "cancels"

    def __init__(
        self,
        store: Store,
        runner_id: str,
        settings: RunnerSettings,
        cancel: Callable[[int, str], Awaitable[None]],
    ) -> None:
        super().__init__()
        self.store = store
        self.runner_id = runner_id
        self.settings = settings
        self.cancel = cancel

    async def step(self) -> float | None:
        for row in await self.store.cancel_requests(self.runner_id):
            await self.cancel(row["id"], row["cancelled_by"] or "someone")
        return self.settings.heartbeat_interval


class Reaper(Duty):
    """Fails what nobody will finish: runs of lost runners, runs whose owner row is gone, and
    runs this runner holds in the database but not in memory (a claim that committed while
    its reply was lost)."""

    name = "reaper"

    def __init__(
        self,
        store: Store,
        runner_id: str,
        settings: RunnerSettings,
        known: Callable[[], list[int]],
        results: Results,
        log: Any,
    ) -> None:
        super().__init__()
        self.store = store
        self.runner_id = runner_id
        self.settings = settings
        self.known = known
        self.results = results
        self.log = log

    async def step(self) -> float | None:
        known = set(self.known())
        unknown = [i for i in await self.store.held_runs(self.runner_id) if i not in known]
        if again := self.results.rewrite(unknown):
            self.log.warning(
                "writing results again: the database shows runs this runner already finished "
                "as still running (a failover to a standby that had not received the results?)",
                runs=again,
            )
        if stranded := await self.store.fail_stranded_runs(self.runner_id, [*known, *again]):
            self.log.error("failed runs whose claim reply was lost", runs=stranded)
        runners, runs = await self.store.reap_lost(self.settings.lease_timeout)
        if runners or runs:
            self.log.warning("recovered runs of lost runners", runners=runners, runs=runs)
        return self.settings.heartbeat_interval
