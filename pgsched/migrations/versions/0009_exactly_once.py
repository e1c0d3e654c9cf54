"""Exactly-once holes: cancels end retry chains, sync owns code schedules, re-added
schedule keys keep their ticks (sql/0009_exactly_once.sql).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from alembic import op

from pgsched.migrate import render_sql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(render_sql("0009_exactly_once.sql"))


def downgrade() -> None:
    op.execute(render_sql("0009_exactly_once_down.sql"))
