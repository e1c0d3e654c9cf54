"""The operators' ledger: pgsched.actions (sql/0003_actions.sql).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from alembic import op

from pgsched.migrate import render_sql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(render_sql("0003_actions.sql"))


def downgrade() -> None:
    op.execute(render_sql("0003_actions_down.sql"))
