"""A runner inside an application's own asyncio program (a web app's lifespan).

    async with pgsched.background_runner(dsn, app=my_extension, concurrency=4):
        ...  # serve the app; runs are claimed and executed meanwhile

The runner's control plane and job loop run in threads of their own, as in `pgsched runner`,
so the host's loop never runs a claim or a heartbeat and a blocking host cannot stall them;
no signal handler is taken. Leaving the block stops it the way SIGTERM stops `pgsched
runner`: no new claims, running jobs get the grace period, the rest goes back.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..housekeeping import builtin_extension
from ..isolation import WorkerSpec
from ..profile import Profile, load_profile
from ..registry import Registry, build_registry, extensions_from
from ..settings import RunnerSettings, merge_runner_settings
from ..store import Store
from ..topology import resolve_topology
from .supervisor import ControlThread, Runner

WHERE = "background_runner(app=...)"


@asynccontextmanager
async def background_runner(
    dsn: str,
    *,
    app: Any,
    profile: str | Path | None = None,
    migrate: bool = False,
    **settings: Any,
) -> AsyncIterator[Runner]:
    """Run a pgsched runner beside the application until the block exits.

    `app`: an Extension, an Extension class, a `"module:attr"` import path, or a list of
    them. Import paths also let jobs with `isolation="process"` run (their worker processes
    import the same paths). `profile`: a profile file for overrides and runner settings.
    `settings`: RunnerSettings fields (`concurrency=4`, `listen=False`, ...), over the
    profile's. `migrate=True` creates or upgrades the schema first."""
    prof = _profile(profile, dsn)
    registry, specs = _registry(app, prof)
    runner_settings = _settings(prof.runner, settings)
    schema = prof.schema
    if migrate:
        from ..migrate import upgrade

        await asyncio.to_thread(upgrade, dsn, schema)
    topology = await asyncio.to_thread(
        resolve_topology, dsn, prof.database.pooler, prof.database.listen_url
    )
    syncing = Store(dsn, schema, max_size=1, topology=topology)
    await syncing.open()
    try:
        await syncing.sync(registry, runner_settings.lease_timeout)
    finally:
        await syncing.close()
    spec = None
    if specs is not None:
        spec = WorkerSpec(
            apps=tuple(specs),
            profile_path=str(prof.path) if prof.path else None,
            dsn=dsn,
            schema=schema,
            runner_id="",
            connect_kwargs=topology.connect_kwargs,
        )
    runner = Runner(
        Store(dsn, schema, topology=topology), registry, runner_settings, worker_spec=spec
    )
    thread = ControlThread(runner.serve())
    thread.start()
    try:
        while not runner.ready.is_set():  # registered, or failed trying
            if not thread.is_alive():
                thread.wait()  # raises what stopped it
                raise ConfigError("the background runner stopped before it registered")
            await asyncio.sleep(0.02)
        yield runner
    finally:
        runner.request_stop()
        await asyncio.to_thread(thread.wait)


def _profile(path: str | Path | None, dsn: str) -> Profile:
    base = load_profile(path) if path is not None else Profile(None, dsn)
    return dataclasses.replace(base, database_url=dsn)


def _registry(app: Any, profile: Profile) -> tuple[Registry, list[str] | None]:
    """The registry, and the import paths when the app was given only as paths."""
    extensions = extensions_from(app, where=WHERE)
    items: Sequence[Any] = app if isinstance(app, list | tuple) else [app]
    specs = list(items) if all(isinstance(item, str) for item in items) else None
    extensions.append(builtin_extension(profile.retention, profile.schema))
    return build_registry(extensions, profile), specs


def _settings(base: RunnerSettings, overrides: dict[str, Any]) -> RunnerSettings:
    return merge_runner_settings(base, overrides, where="background_runner")
