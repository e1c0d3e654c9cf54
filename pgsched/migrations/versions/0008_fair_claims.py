"""Fair claims: pending runs per job, oldest first (sql/0008_fair_claims.sql).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from alembic import op

from pgsched.migrate import render_sql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(render_sql("0008_fair_claims.sql"))


def downgrade() -> None:
    op.execute(render_sql("0008_fair_claims_down.sql"))
