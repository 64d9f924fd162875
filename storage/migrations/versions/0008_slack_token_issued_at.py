"""slack_installations.bot_token_issued_at: when the stored (rotated) bot token was issued

With its expiry, it gives the token's lifetime, which the refresh margin scales with, as for
FreshBooks tokens (0006). Null until a token is first refreshed: the install's own token was
issued when it was installed (installed_at).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("slack_installations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("bot_token_issued_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("slack_installations", schema=None) as batch_op:
        batch_op.drop_column("bot_token_issued_at")
