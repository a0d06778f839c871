"""Who may read what: the asker's own team, as Slack's event names it (`user_team`: Slack
Connect brings people from other organisations into shared channels, and they read public
sources only), and whether a thread's cached context came from a private source (reused only
where it may still be read). Rows cached before are taken as private.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("user_team_id", sa.String(32), nullable=True))
    with op.batch_alter_table("context_cache") as batch:
        batch.add_column(sa.Column("private", sa.Boolean, nullable=False, server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table("context_cache") as batch:
        batch.drop_column("private")
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("user_team_id")
