"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-24 06:45:14.362764
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets bigint.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "workspaces",
        sa.Column("id", BigId, nullable=False),
        sa.Column("slack_team_id", sa.String(length=32), nullable=False),
        sa.Column("slack_enterprise_id", sa.String(length=32), nullable=True),
        sa.Column("installed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("uninstalled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workspaces")),
        sa.UniqueConstraint("slack_team_id", name=op.f("uq_workspaces_slack_team_id")),
    )
    op.create_table(
        "freshbooks_connections",
        sa.Column("id", BigId, nullable=False),
        sa.Column("workspace_id", BigId, nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("business_id", sa.BigInteger(), nullable=True),
        sa.Column("business_name_enc", sa.Text(), nullable=True),
        sa.Column("webhook_token_hash", sa.String(length=64), nullable=False),
        sa.Column("webhook_token_enc", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("access_token_enc", sa.Text(), nullable=True),
        sa.Column("refresh_token_enc", sa.Text(), nullable=True),
        sa.Column("token_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("token_version", sa.Integer(), nullable=False),
        sa.Column("connected_by_user_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_freshbooks_connections_workspace_id_workspaces"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_freshbooks_connections")),
        sa.UniqueConstraint("webhook_token_hash", name=op.f("uq_freshbooks_connections_webhook_token_hash")),
        sa.UniqueConstraint(
            "workspace_id", "account_id", name=op.f("uq_freshbooks_connections_workspace_id")
        ),
    )
    with op.batch_alter_table("freshbooks_connections", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_freshbooks_connections_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "audit_log",
        sa.Column("id", BigId, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("workspace_id", BigId, nullable=True),
        sa.Column("connection_id", BigId, nullable=True),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("subject_id", sa.String(length=64), nullable=True),
        sa.Column("outcome", sa.String(length=40), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=True),
        sa.Column("detail_enc", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["freshbooks_connections.id"],
            name=op.f("fk_audit_log_connection_id_freshbooks_connections"),
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_audit_log_workspace_id_workspaces")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_workspace_at", ["workspace_id", "at"], unique=False)

    op.create_table(
        "callback_verifications",
        sa.Column("id", BigId, nullable=False),
        sa.Column("connection_id", BigId, nullable=False),
        sa.Column("callback_id", sa.BigInteger(), nullable=False),
        sa.Column("verifier_enc", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.String(length=200), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["freshbooks_connections.id"],
            name=op.f("fk_callback_verifications_connection_id_freshbooks_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_verifications")),
    )
    with op.batch_alter_table("callback_verifications", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_callback_verifications_connection_id"), ["connection_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_callback_verifications_state"), ["state"], unique=False)

    op.create_table(
        "events",
        sa.Column("id", BigId, nullable=False),
        sa.Column("connection_id", BigId, nullable=False),
        sa.Column("inbox_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("object_id", sa.String(length=32), nullable=False),
        sa.Column("object_updated", sa.String(length=40), nullable=False),
        sa.Column("object_enc", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["freshbooks_connections.id"],
            name=op.f("fk_events_connection_id_freshbooks_connections"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint(
            "connection_id", "name", "object_id", "object_updated", name=op.f("uq_events_connection_id")
        ),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_events_created_at"), ["created_at"], unique=False)

    op.create_table(
        "freshbooks_callbacks",
        sa.Column("id", BigId, nullable=False),
        sa.Column("connection_id", BigId, nullable=False),
        sa.Column("callback_id", sa.BigInteger(), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=False),
        sa.Column("verifier_enc", sa.Text(), nullable=True),
        sa.Column("resend_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["freshbooks_connections.id"],
            name=op.f("fk_freshbooks_callbacks_connection_id_freshbooks_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_freshbooks_callbacks")),
        sa.UniqueConstraint(
            "connection_id", "callback_id", name=op.f("uq_freshbooks_callbacks_connection_id")
        ),
    )
    with op.batch_alter_table("freshbooks_callbacks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_freshbooks_callbacks_connection_id"), ["connection_id"], unique=False
        )

    op.create_table(
        "routing_rules",
        sa.Column("id", BigId, nullable=False),
        sa.Column("workspace_id", BigId, nullable=False),
        sa.Column("connection_id", BigId, nullable=False),
        sa.Column("patterns", sa.JSON(), nullable=False),
        sa.Column("min_amount", sa.Numeric(precision=18, scale=2), nullable=True),
        sa.Column("max_amount", sa.Numeric(precision=18, scale=2), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("billable_only", sa.Boolean(), nullable=False),
        sa.Column("counterparty_enc", sa.Text(), nullable=True),
        sa.Column("channel_id", sa.String(length=32), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("created_by_user_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["freshbooks_connections.id"],
            name=op.f("fk_routing_rules_connection_id_freshbooks_connections"),
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_routing_rules_workspace_id_workspaces")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routing_rules")),
    )
    with op.batch_alter_table("routing_rules", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_routing_rules_workspace_id"), ["workspace_id"], unique=False)

    op.create_table(
        "deliveries",
        sa.Column("id", BigId, nullable=False),
        sa.Column("event_id", BigId, nullable=False),
        sa.Column("workspace_id", BigId, nullable=False),
        sa.Column("channel_id", sa.String(length=32), nullable=False),
        sa.Column("delivery_key", sa.String(length=36), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("message_enc", sa.Text(), nullable=True),
        sa.Column("slack_ts", sa.String(length=32), nullable=True),
        sa.Column("thread_ts", sa.String(length=32), nullable=True),
        sa.Column("last_error_code", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], name=op.f("fk_deliveries_event_id_events")),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_deliveries_workspace_id_workspaces")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint("delivery_key", name=op.f("uq_deliveries_delivery_key")),
        sa.UniqueConstraint("event_id", "channel_id", name=op.f("uq_deliveries_event_id")),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_deliveries_due", ["state", "next_attempt_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_deliveries_workspace_id"), ["workspace_id"], unique=False)

    op.create_table(
        "webhook_inbox",
        sa.Column("id", BigId, nullable=False),
        sa.Column("connection_id", BigId, nullable=False),
        sa.Column("event_name", sa.String(length=64), nullable=False),
        sa.Column("object_id", sa.String(length=32), nullable=False),
        sa.Column("body_enc", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("available_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("event_id", BigId, nullable=True),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["freshbooks_connections.id"],
            name=op.f("fk_webhook_inbox_connection_id_freshbooks_connections"),
        ),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], name=op.f("fk_webhook_inbox_event_id_events")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_inbox")),
    )
    with op.batch_alter_table("webhook_inbox", schema=None) as batch_op:
        batch_op.create_index(
            "ix_webhook_inbox_connection_received", ["connection_id", "received_at"], unique=False
        )
        batch_op.create_index("ix_webhook_inbox_due", ["state", "available_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("webhook_inbox", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_inbox_due")
        batch_op.drop_index("ix_webhook_inbox_connection_received")

    op.drop_table("webhook_inbox")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deliveries_workspace_id"))
        batch_op.drop_index("ix_deliveries_due")

    op.drop_table("deliveries")
    with op.batch_alter_table("routing_rules", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_routing_rules_workspace_id"))

    op.drop_table("routing_rules")
    with op.batch_alter_table("freshbooks_callbacks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_freshbooks_callbacks_connection_id"))

    op.drop_table("freshbooks_callbacks")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_created_at"))

    op.drop_table("events")
    with op.batch_alter_table("callback_verifications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_callback_verifications_state"))
        batch_op.drop_index(batch_op.f("ix_callback_verifications_connection_id"))

    op.drop_table("callback_verifications")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_workspace_at")

    op.drop_table("audit_log")
    with op.batch_alter_table("freshbooks_connections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_freshbooks_connections_workspace_id"))

    op.drop_table("freshbooks_connections")
    op.drop_table("workspaces")
