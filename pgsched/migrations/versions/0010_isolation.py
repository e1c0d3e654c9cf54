"""Jobs say how they are isolated: pgsched.jobs.isolation (sql/0010_isolation.sql).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08
"""

from alembic import op

from pgsched.migrate import render_sql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(render_sql("0010_isolation.sql"))


def downgrade() -> None:
    op.execute(render_sql("0010_isolation_down.sql"))
