"""Alembic environment: runs pgsched's revisions in one transaction, under a table lock.

The connection and schema come from `pgsched.migrate.upgrade` through `config.attributes`;
the version table lives in the pgsched schema so several apps can share a database.

The lock is `LOCK TABLE {schema}.alembic_version IN EXCLUSIVE MODE` inside the migration's
transaction (pgsched/locks.py), not a session advisory lock: a session lock taken through a
transaction pooler is released on another server connection (or never), and any role that can
connect could hold an advisory key. The version table must exist before it can be locked, so
a first step creates the schema and the empty version table in a transaction of its own;
first migrations racing there retry on the other's duplicate key, then serialise on the lock.
"""

from __future__ import annotations

from alembic import context

from pgsched.locks import acquire_sync, bootstrap_schema, migration_lock

config = context.config
connection = config.attributes["connection"]
schema = config.attributes["schema"]
lock_timeout = config.attributes.get("lock_timeout", 60.0)

driver = connection.connection.driver_connection  # the psycopg connection under SQLAlchemy
bootstrap_schema(driver, schema)
connection.commit()
context.configure(
    connection=connection,
    version_table="alembic_version",
    version_table_schema=schema,
    transaction_per_migration=False,
)
with context.begin_transaction():
    acquire_sync(driver, migration_lock(schema, lock_timeout), schema)
    # Read under the lock: what this migration really starts from (an earlier read may have
    # been overtaken by a concurrent migration).
    config.attributes["revision_before"] = context.get_context().get_current_revision()
    context.run_migrations()
connection.commit()
