"""Bloat: push 1,000,000 runs through pgsched.runs with retention on; watch the table sizes.

Worker processes drive the real lifecycle with pgsched's own named queries: bulk-insert a batch
of manual requests, claim it with `claim_pending`, complete it with
`finish_runs`. Meanwhile the main process prunes with
`pgsched.store.prune_history_on` (what the built-in
pgsched-prune-history job calls) every `--prune-every` s with a short `--keep`, and samples
pg_total_relation_size / index sizes / n_dead_tup of pgsched.runs and pgsched.jobs.

    python bench/bloat.py --runs 1000000 --workers 2 --keep 10 --prune-every 5
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    base_parser,
    database,
    finish_params,
    log,
    machine,
    print_table,
    server,
    write_result,
)
from pgsched.queries import named_queries
from pgsched.store import prune_history_on

SAMPLE = """
SELECT pg_total_relation_size('pgsched.runs'), pg_relation_size('pgsched.runs'),
       pg_indexes_size('pgsched.runs'), pg_total_relation_size('pgsched.jobs'),
       s.n_live_tup, s.n_dead_tup, s.autovacuum_count, s.autoanalyze_count,
       (SELECT count(*) FROM pgsched.runs WHERE status = 'pending')
FROM pg_stat_user_tables s WHERE s.relid = 'pgsched.runs'::regclass
"""

INDEXES = """
SELECT c.relname, pg_relation_size(c.oid)
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid IN ('pgsched.runs'::regclass, 'pgsched.jobs'::regclass)
ORDER BY 1
"""


def _worker(dsn: str, batch: int, target: int, done: Any, stop: Any) -> None:
    q = named_queries()
    runner = f"bloat-{mp.current_process().pid}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO pgsched.runners (id, hostname, pid) VALUES (%s, 'bench', 0)", (runner,)
        )
        while not stop.is_set():
            with done.get_lock():
                if done.value >= target:
                    break
            conn.execute(
                "INSERT INTO pgsched.runs (job_name) "
                "SELECT 'bench-noop' FROM generate_series(1, %s)",
                (batch,),
            )
            with conn.transaction():  # the request claim as the store runs it (overlap allowed)
                conn.execute(q["plan_by_index"])
                claimed = conn.execute(
                    q["claim_pending"], {"limit": batch, "runner": runner}
                ).fetchall()
            n = len(claimed)
            conn.execute(q["finish_runs"], finish_params(claimed))
            with done.get_lock():
                done.value += n


async def monitor(
    dsn: str, args: Any, done: Any, procs: list[Any]
) -> tuple[list[dict[str, Any]], int]:
    samples: list[dict[str, Any]] = []
    pruned = 0
    t0 = time.monotonic()
    finished_at: float | None = None
    last_prune = t0
    async with (
        await psycopg.AsyncConnection.connect(dsn) as prune_conn,
        await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn,
    ):
        while True:
            now = time.monotonic()
            if now - last_prune >= args.prune_every:
                pruned += await prune_history_on(prune_conn, "pgsched", args.keep, args.prune_batch)
                last_prune = now
            row = await (await conn.execute(SAMPLE)).fetchone()
            assert row is not None
            samples.append(
                {
                    "t": round(now - t0, 1),
                    "runs_done": done.value,
                    "pruned": pruned,
                    "runs_total_mb": round(row[0] / 2**20, 2),
                    "runs_heap_mb": round(row[1] / 2**20, 2),
                    "runs_indexes_mb": round(row[2] / 2**20, 2),
                    "jobs_total_kb": round(row[3] / 2**10, 1),
                    "live_tup": row[4],
                    "dead_tup": row[5],
                    "autovacuums": row[6],
                    "pending": row[8],
                }
            )
            if finished_at is None and not any(p.is_alive() for p in procs):
                finished_at = now
                log(f"  {done.value:,} runs pushed in {now - t0:.1f}s; watching the tail")
            if finished_at is not None and now - finished_at >= args.tail:
                return samples, pruned
            await asyncio.sleep(args.sample_every)


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--keep", type=float, default=10, help="retention, seconds")
    parser.add_argument("--prune-every", type=float, default=5)
    parser.add_argument("--prune-batch", type=int, default=5000, help="prune_history_on batch")
    parser.add_argument("--sample-every", type=float, default=5)
    parser.add_argument("--tail", type=float, default=30, help="seconds to watch after the push")
    args = parser.parse_args()

    with server(args.dsn) as pg, database(pg) as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO pgsched.jobs (name, extension, overlap) "
                "VALUES ('bench-noop', 'bench', 'allow')"
            )
        ctx = mp.get_context("fork")
        done, stop = ctx.Value("q", 0), ctx.Event()
        procs = [
            ctx.Process(target=_worker, args=(dsn, args.batch, args.runs, done, stop))
            for _ in range(args.workers)
        ]
        log(f"pushing {args.runs:,} runs, keep {args.keep:g}s, prune every {args.prune_every:g}s")
        t0 = time.monotonic()
        for p in procs:
            p.start()
        try:
            samples, _pruned = asyncio.run(monitor(dsn, args, done, procs))
        finally:
            stop.set()
            for p in procs:
                p.join()
        elapsed = time.monotonic() - t0
        with psycopg.connect(dsn, autocommit=True) as conn:
            indexes = {name: size for name, size in conn.execute(INDEXES).fetchall()}
        info = machine(dsn)

    print(f"\nbloat: {done.value:,} runs through pgsched.runs, keep {args.keep:g}s")
    cols = [
        "t",
        "runs_done",
        "pruned",
        "live_tup",
        "dead_tup",
        "runs_total_mb",
        "runs_heap_mb",
        "runs_indexes_mb",
        "jobs_total_kb",
        "autovacuums",
    ]
    print_table(cols, [[s[c] for c in cols] for s in samples])
    print("\nindex sizes at the end (kB):")
    print_table(["index", "kB"], [[k, round(v / 1024, 1)] for k, v in indexes.items()])
    write_result(
        "bloat",
        args.tag,
        {
            "params": vars(args),
            "machine": info,
            "push_seconds": round(elapsed, 1),
            "samples": samples,
            "index_bytes_end": indexes,
        },
    )


if __name__ == "__main__":
    main()
