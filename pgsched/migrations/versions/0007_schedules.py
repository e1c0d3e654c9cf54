"""Schedules as rows (sql/0007_schedules.sql).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from alembic import op

from pgsched.migrate import render_sql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(render_sql("0007_schedules.sql"))


def downgrade() -> None:
    op.execute(render_sql("0007_schedules_down.sql"))
