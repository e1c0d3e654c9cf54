"""Autovacuum of runs and jobs without cost delay (sql/0002_vacuum.sql).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from alembic import op

from pgsched.migrate import render_sql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(render_sql("0002_vacuum.sql"))


def downgrade() -> None:
    op.execute(render_sql("0002_vacuum_down.sql"))
