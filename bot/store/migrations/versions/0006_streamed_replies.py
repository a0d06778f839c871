"""A request's reply may be a streamed message (chat.startStream): a resumed request must close
that stream before it changes the message, and must not share the answer's overflow file twice.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(
            sa.Column("reply_streamed", sa.Boolean, nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("attachment_file_id", sa.String(32)))


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("attachment_file_id")
        batch.drop_column("reply_streamed")
