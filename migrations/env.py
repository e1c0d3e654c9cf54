"""Alembic environment: runs pgsched's revisions under an advisory lock on one connection.

The connection and schema come from `pgsched.migrate.upgrade` through `config.attributes`;
the version table lives in the pgsched schema so several apps can share a database.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

config = context.config
connection = config.attributes["connection"]
schema = config.attributes["schema"]
quoted = config.attributes["quoted_schema"]

# Session-level lock: the second of N concurrent starters waits here, then finds nothing to do.
connection.execute(
    text("SELECT pg_advisory_lock(hashtext(:key))"), {"key": f"pgsched.migrate.{schema}"}
)
try:
    connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {quoted}"))
    connection.commit()
    context.configure(
        connection=connection,
        version_table="alembic_version",
        version_table_schema=schema,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
finally:
    connection.execute(
        text("SELECT pg_advisory_unlock(hashtext(:key))"), {"key": f"pgsched.migrate.{schema}"}
    )
    connection.commit()
