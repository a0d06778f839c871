"""Attempts count only crashes a request can be blamed for: `at_risk` marks the steps that work
on its own content (reading what it refers to, turning the model's reply into messages), and
`interruptions` counts the processes that died while it only waited, under a larger bound.
Requests unfinished at the upgrade are taken as not at risk.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(
            sa.Column("at_risk", sa.Boolean, nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("interruptions", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("interruptions")
        batch.drop_column("at_risk")
