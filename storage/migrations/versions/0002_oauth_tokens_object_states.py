"""oauth, token lease, object states, event source

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 06:56:18.668394
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "oauth_states",
        sa.Column("id", BigId, nullable=False),
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column("workspace_id", BigId, nullable=False),
        sa.Column("slack_user_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("choice_hash", sa.String(length=64), nullable=True),
        sa.Column("grant_enc", sa.Text(), nullable=True),
        sa.Column("choice_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_oauth_states_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_states")),
        sa.UniqueConstraint("choice_hash", name=op.f("uq_oauth_states_choice_hash")),
        sa.UniqueConstraint("state_hash", name=op.f("uq_oauth_states_state_hash")),
    )
    op.create_table(
        "object_states",
        sa.Column("id", BigId, nullable=False),
        sa.Column("connection_id", BigId, nullable=False),
        sa.Column("object_kind", sa.String(length=16), nullable=False),
        sa.Column("object_id", sa.String(length=32), nullable=False),
        sa.Column("updated", sa.String(length=40), nullable=False),
        sa.Column("snapshot_enc", sa.Text(), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["freshbooks_connections.id"],
            name=op.f("fk_object_states_connection_id_freshbooks_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_object_states")),
        sa.UniqueConstraint(
            "connection_id", "object_kind", "object_id", name=op.f("uq_object_states_connection_id")
        ),
    )
    # Existing events all came from webhooks; their kind is the part of the name before the dot.
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("source", sa.String(length=16), nullable=False, server_default="webhook")
        )
        batch_op.add_column(sa.Column("object_kind", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("notable", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.alter_column("inbox_id", existing_type=sa.BIGINT(), nullable=True)
    for kind in ("invoice", "payment", "bill", "expense"):
        op.execute(
            sa.text("UPDATE events SET object_kind = :kind WHERE name LIKE :prefix").bindparams(
                kind=kind, prefix=f"{kind}.%"
            )
        )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.alter_column("object_kind", existing_type=sa.String(length=16), nullable=False)
        batch_op.alter_column("source", existing_type=sa.String(length=16), server_default=None)
        batch_op.alter_column("notable", existing_type=sa.Boolean(), server_default=None)

    with op.batch_alter_table("freshbooks_connections", schema=None) as batch_op:
        batch_op.add_column(sa.Column("refresh_lease_owner", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("refresh_lease_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("status_reason", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("identity_id", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("disconnected_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("poll_watermark", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("callbacks_alerted_at", sa.DateTime(timezone=True), nullable=True))

    op.create_table(
        "job_leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_job_leases")),
    )


def downgrade() -> None:
    op.drop_table("job_leases")
    with op.batch_alter_table("freshbooks_connections", schema=None) as batch_op:
        batch_op.drop_column("callbacks_alerted_at")
        batch_op.drop_column("poll_watermark")
        batch_op.drop_column("disconnected_at")
        batch_op.drop_column("identity_id")
        batch_op.drop_column("status_reason")
        batch_op.drop_column("refresh_lease_until")
        batch_op.drop_column("refresh_lease_owner")

    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.alter_column("inbox_id", existing_type=sa.BIGINT(), nullable=False)
        batch_op.drop_column("notable")
        batch_op.drop_column("object_kind")
        batch_op.drop_column("source")

    op.drop_table("object_states")
    op.drop_table("oauth_states")
