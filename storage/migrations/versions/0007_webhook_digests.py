"""webhook digests: a keyed hash of each recent webhook body per connection, to acknowledge repeats

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_digests",
        sa.Column("connection_id", BigId, nullable=False),
        sa.Column("digest", sa.String(length=32), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["freshbooks_connections.id"],
            name=op.f("fk_webhook_digests_connection_id_freshbooks_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("connection_id", "digest", name=op.f("pk_webhook_digests")),
    )


def downgrade() -> None:
    op.drop_table("webhook_digests")
