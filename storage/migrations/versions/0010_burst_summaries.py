"""burst summaries: a rule's collapse size and urgency, a delivery's batch, shared summary threads

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("routing_rules") as batch_op:
        batch_op.add_column(sa.Column("collapse_at", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("urgent", sa.Boolean(), nullable=False, server_default=sa.false()))
    # Existing rules collapse at the default size (connector.domain.rules.DEFAULT_COLLAPSE_AT).
    op.execute("UPDATE routing_rules SET collapse_at = 5")
    with op.batch_alter_table("routing_rules") as batch_op:
        batch_op.alter_column("urgent", existing_type=sa.Boolean(), server_default=None)
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.add_column(sa.Column("collapse_at", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("batch_key", sa.String(length=36), nullable=True))
    with op.batch_alter_table("slack_threads") as batch_op:
        batch_op.add_column(sa.Column("shared", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("slack_threads") as batch_op:
        batch_op.alter_column("shared", existing_type=sa.Boolean(), server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("slack_threads") as batch_op:
        batch_op.drop_column("shared")
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.drop_column("batch_key")
        batch_op.drop_column("collapse_at")
    with op.batch_alter_table("routing_rules") as batch_op:
        batch_op.drop_column("urgent")
        batch_op.drop_column("collapse_at")
