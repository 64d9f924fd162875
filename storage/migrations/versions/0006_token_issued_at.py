"""freshbooks_connections.token_issued_at: when the stored access token was issued

With its expiry, it gives the token's lifetime, which the refresh margin scales with (a token
that lives 4 seconds cannot be refreshed 10 minutes before it expires). Null for tokens stored
before this column existed: they get the default margin until their next refresh.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("freshbooks_connections", schema=None) as batch_op:
        batch_op.add_column(sa.Column("token_issued_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("freshbooks_connections", schema=None) as batch_op:
        batch_op.drop_column("token_issued_at")
