"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from alembic import op

from pgsched.migrate import render_sql

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(render_sql("..."))


def downgrade() -> None:
    raise NotImplementedError("pgsched does not downgrade; restore from a backup")
