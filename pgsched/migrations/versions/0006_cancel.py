"""Cancellation of pending and running runs (sql/0006_cancel.sql).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from alembic import op

from pgsched.migrate import render_sql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(render_sql("0006_cancel.sql"))


def downgrade() -> None:
    op.execute(render_sql("0006_cancel_down.sql"))
