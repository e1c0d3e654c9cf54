"""Initial schema: jobs, runs, runners, indexes and NOTIFY triggers (sql/0001_initial.sql).

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from alembic import op

from pgsched.migrate import render_sql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(render_sql("0001_initial.sql"))


def downgrade() -> None:
    op.execute(render_sql("drop.sql"))
