"""Start a PgQueuer worker on bench.peer_apps:pgqueuer_main: `python -m bench.run_pgqueuer 10`."""

from __future__ import annotations


def _run_pgqueuer(batch_size: int) -> None:
    """What `pgq run bench.peer_apps:pgqueuer_main --batch-size N` does (pgqueuer.run on uvloop).

    `pgq run` itself fails in this environment before starting (its --log-level option reaches
    logconfig as a plain str: AttributeError 'str' object has no attribute 'name')."""
    from datetime import timedelta

    import pgqueuer

    coro = pgqueuer.run(
        "bench.peer_apps:pgqueuer_main",
        batch_size=batch_size,
        dequeue_timeout=timedelta(seconds=30),
    )
    try:
        import uvloop
    except ImportError:
        import asyncio

        asyncio.run(coro)
    else:
        uvloop.run(coro)


if __name__ == "__main__":
    import sys

    _run_pgqueuer(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
