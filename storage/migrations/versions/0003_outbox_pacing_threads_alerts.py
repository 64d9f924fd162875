"""outbox pacing threads alerts

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 07:20:39.514573
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", BigId, nullable=False),
        sa.Column("workspace_id", BigId, nullable=False),
        sa.Column("cause", sa.String(length=120), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_alerts_workspace_id_workspaces")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("workspace_id", "cause", name=op.f("uq_alerts_workspace_id")),
    )
    op.create_table(
        "channel_pacing",
        sa.Column("workspace_id", BigId, nullable=False),
        sa.Column("channel_id", sa.String(length=32), nullable=False),
        sa.Column("next_post_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("busy_until", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_channel_pacing_workspace_id_workspaces")
        ),
        sa.PrimaryKeyConstraint("workspace_id", "channel_id", name=op.f("pk_channel_pacing")),
    )
    op.create_table(
        "workspace_pacing",
        sa.Column("workspace_id", BigId, nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("refilled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("paused_until", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_workspace_pacing_workspace_id_workspaces")
        ),
        sa.PrimaryKeyConstraint("workspace_id", name=op.f("pk_workspace_pacing")),
    )
    op.create_table(
        "slack_threads",
        sa.Column("id", BigId, nullable=False),
        sa.Column("workspace_id", BigId, nullable=False),
        sa.Column("channel_id", sa.String(length=32), nullable=False),
        sa.Column("object_kind", sa.String(length=16), nullable=False),
        sa.Column("object_id", sa.String(length=32), nullable=False),
        sa.Column("card_ts", sa.String(length=32), nullable=False),
        sa.Column("connection_id", BigId, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["freshbooks_connections.id"],
            name=op.f("fk_slack_threads_connection_id_freshbooks_connections"),
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_slack_threads_workspace_id_workspaces")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_slack_threads")),
        sa.UniqueConstraint(
            "workspace_id",
            "channel_id",
            "object_kind",
            "object_id",
            name=op.f("uq_slack_threads_workspace_id"),
        ),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("permalink", sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column("parked_reason", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("rule_ids", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_deliveries_channel", ["workspace_id", "channel_id", "state"], unique=False)

    with op.batch_alter_table("workspaces", schema=None) as batch_op:
        batch_op.add_column(sa.Column("suspended_reason", sa.String(length=64), nullable=True))

    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("routed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_events_routed_at"), ["routed_at"], unique=False)
    # Events recorded before routing existed are not news any more: never post them on upgrade.
    op.execute("UPDATE events SET routed_at = created_at")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.alter_column("rule_ids", existing_type=sa.JSON(), server_default=None)

    with op.batch_alter_table("routing_rules", schema=None) as batch_op:
        batch_op.alter_column(
            "min_amount",
            existing_type=sa.NUMERIC(precision=18, scale=2),
            type_=sa.String(length=32),
            existing_nullable=True,
        )
        batch_op.alter_column(
            "max_amount",
            existing_type=sa.NUMERIC(precision=18, scale=2),
            type_=sa.String(length=32),
            existing_nullable=True,
        )


def downgrade() -> None:
    with op.batch_alter_table("routing_rules", schema=None) as batch_op:
        batch_op.alter_column(
            "max_amount",
            existing_type=sa.String(length=32),
            type_=sa.NUMERIC(precision=18, scale=2),
            existing_nullable=True,
            postgresql_using="max_amount::numeric",
        )
        batch_op.alter_column(
            "min_amount",
            existing_type=sa.String(length=32),
            type_=sa.NUMERIC(precision=18, scale=2),
            existing_nullable=True,
            postgresql_using="min_amount::numeric",
        )

    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_routed_at"))
        batch_op.drop_column("routed_at")

    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_channel")
        batch_op.drop_column("sent_at")
        batch_op.drop_column("rule_ids")
        batch_op.drop_column("parked_reason")
        batch_op.drop_column("permalink")

    with op.batch_alter_table("workspaces", schema=None) as batch_op:
        batch_op.drop_column("suspended_reason")

    op.drop_table("slack_threads")
    op.drop_table("workspace_pacing")
    op.drop_table("channel_pacing")
    op.drop_table("alerts")
