"""Leases on requests (crash recovery, replicas), posted continuations, daily token usage.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("continuation_ts", sa.Text, nullable=False, server_default=""))
        batch.add_column(sa.Column("attempts", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("lease_owner", sa.String(128), nullable=True))
        batch.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "token_usage",
        sa.Column("team_id", sa.String(32), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("tokens", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("token_usage")
    with op.batch_alter_table("requests") as batch:
        for column in ("lease_expires_at", "lease_owner", "attempts", "continuation_ts"):
            batch.drop_column(column)
