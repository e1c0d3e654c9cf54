"""Runners record the code they carry (sql/0005_definitions.sql).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from alembic import op

from pgsched.migrate import render_sql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(render_sql("0005_definitions.sql"))


def downgrade() -> None:
    op.execute(render_sql("0005_definitions_down.sql"))
