"""Index requests by author and time: the per-person rate limit counts them at every claim.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_requests_author_created", "requests", ["team_id", "user_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_requests_author_created", table_name="requests")
