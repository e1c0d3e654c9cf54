"""The same no-op work for the peers (PgQueuer, Procrastinate); loaded by their own workers.

Only importable in /work/benchvenv (see bench/requirements.txt). The database comes from
$BENCH_DSN. `noop` does nothing; `pickup` records its start time like bench.apps' bench-pickup.
"""

from __future__ import annotations

import os
from contextlib import asynccontextmanager

from bench.apps import record_start

DSN = os.environ.get("BENCH_DSN", "")


# --- PgQueuer: `pgq run bench.peer_apps:pgqueuer_main` (asyncpg driver, as its README) -------
# pgqueuer 1.x wants the factory to be an async context manager (its README still shows a
# coroutine, which `pgq run` now rejects).


@asynccontextmanager
async def pgqueuer_main():  # type: ignore[no-untyped-def]
    import asyncpg
    from pgqueuer import PgQueuer
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.models import Job

    connection = await asyncpg.connect(DSN)
    pgq = PgQueuer(AsyncpgDriver(connection))

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        return None

    @pgq.entrypoint("pickup")
    async def pickup(job: Job) -> None:
        record_start((job.payload or b"").decode())

    try:
        yield pgq
    finally:
        await connection.close()


# --- Procrastinate: `procrastinate --app bench.peer_apps.proc_app worker` ---------------------


def procrastinate_app(dsn: str = DSN):  # type: ignore[no-untyped-def]
    try:
        import procrastinate
    except ImportError:  # bench.apps users without the peers installed
        return None
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(
            conninfo=dsn,
            min_size=1,
            max_size=int(os.environ.get("BENCH_PROC_POOL", "10")),
        )
    )

    @app.task(name="noop")
    async def noop() -> None:
        return None

    @app.task(name="pickup")
    async def pickup(seq: int) -> None:
        record_start(seq)

    return app


proc_app = procrastinate_app()
