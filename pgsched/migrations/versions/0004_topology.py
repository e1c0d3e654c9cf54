"""A lock table for sync that only writers can take (sql/0004_topology.sql).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from alembic import op

from pgsched.migrate import render_sql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(render_sql("0004_topology.sql"))


def downgrade() -> None:
    op.execute(render_sql("0004_topology_down.sql"))
