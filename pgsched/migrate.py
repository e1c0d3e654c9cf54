"""Create or upgrade the schema with alembic; safe when many processes start at once."""

from __future__ import annotations

from importlib.resources import as_file, files
from typing import Any

import psycopg
import sqlalchemy.exc
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from .errors import DatabaseUnavailableError, PermissionDeniedError
from .queries import DEFAULT_SCHEMA, quote_ident, read_sql, render


def render_sql(filename: str) -> str:
    """Used by revisions: a file of sql/ rendered for the schema being migrated."""
    from alembic import context

    return render(read_sql(filename), context.config.attributes["schema"])


def _engine(dsn: str, connect_kwargs: dict[str, Any] | None = None) -> Any:
    """One connection, opened as the topology says (through a transaction pooler: no
    server-side prepared statements; see pgsched.topology)."""
    kwargs = connect_kwargs or {}
    return create_engine(
        "postgresql+psycopg://",
        creator=lambda: psycopg.connect(dsn, **kwargs),
        poolclass=NullPool,
    )


def _config(schema: str, connection: Any, location: str, lock_timeout: float) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", location)
    cfg.attributes.update(
        connection=connection,
        schema=schema,
        quoted_schema=quote_ident(schema),
        lock_timeout=lock_timeout,
    )
    return cfg


def upgrade(
    dsn: str,
    schema: str = DEFAULT_SCHEMA,
    *,
    lock_timeout: float = 60.0,
    connect_kwargs: dict[str, Any] | None = None,
) -> tuple[str | None, str]:
    """Bring the schema to the newest revision; returns (revision before, revision after).

    Concurrent upgrades serialise on a transaction-scoped lock of the version table
    (migrations/env.py), waiting at most `lock_timeout` seconds (LockTimeoutError)."""
    engine = _engine(dsn, connect_kwargs)
    try:
        with as_file(files("pgsched.migrations")) as location, engine.connect() as conn:
            cfg = _config(schema, conn, str(location), lock_timeout)
            command.upgrade(cfg, "head")
    except sqlalchemy.exc.OperationalError as exc:  # by meaning, as the store does
        raise DatabaseUnavailableError(f"cannot migrate: {exc.orig}") from exc
    except sqlalchemy.exc.ProgrammingError as exc:
        raise PermissionDeniedError(
            f"cannot migrate: {exc.orig}; `pgsched migrate` needs a role that may create the "
            f"{schema} schema (run it as the owner; runners can use --no-migrate)"
        ) from exc
    before: str | None = cfg.attributes["revision_before"]  # read under the lock (env.py)
    return before, head_revision()


def downgrade(
    dsn: str, revision: str, schema: str = DEFAULT_SCHEMA, *, lock_timeout: float = 60.0
) -> None:
    """Step the schema back to `revision` ("base" removes everything pgsched created, history
    included)."""
    with as_file(files("pgsched.migrations")) as location, _engine(dsn).connect() as conn:
        command.downgrade(_config(schema, conn, str(location), lock_timeout), revision)


def head_revision() -> str:
    with as_file(files("pgsched.migrations")) as location:
        cfg = Config()
        cfg.set_main_option("script_location", str(location))
        head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


def current_revision(
    dsn: str, schema: str = DEFAULT_SCHEMA, connect_kwargs: dict[str, Any] | None = None
) -> str | None:
    with _engine(dsn, connect_kwargs).connect() as conn:
        exists = conn.execute(
            text("SELECT to_regclass(:t) IS NOT NULL"),
            {"t": f"{quote_ident(schema)}.alembic_version"},
        ).scalar()
        if not exists:
            return None
        ctx = MigrationContext.configure(conn, opts={"version_table_schema": schema})
        return ctx.get_current_revision()
