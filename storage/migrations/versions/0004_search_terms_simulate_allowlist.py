"""search terms (blind indexes), app secrets, simulated objects, allowlist, purge indexes

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 09:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "search_terms",
        sa.Column("id", BigId, nullable=False),
        sa.Column("workspace_id", BigId, nullable=False),
        sa.Column("event_id", BigId, nullable=False),
        sa.Column("term", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_search_terms_workspace_id_workspaces")
        ),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name=op.f("fk_search_terms_event_id_events"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_search_terms")),
        sa.UniqueConstraint("event_id", "term", name=op.f("uq_search_terms_event_id")),
    )
    op.create_index("ix_search_terms_lookup", "search_terms", ["workspace_id", "term", "event_id"])
    op.create_table(
        "app_secrets",
        sa.Column("id", BigId, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value_enc", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_secrets")),
        sa.UniqueConstraint("name", name=op.f("uq_app_secrets_name")),
    )
    op.create_table(
        "simulated_objects",
        sa.Column("id", BigId, nullable=False),
        sa.Column("connection_id", BigId, nullable=False),
        sa.Column("object_kind", sa.String(length=16), nullable=False),
        sa.Column("object_id", sa.String(length=32), nullable=False),
        sa.Column("payload_enc", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["freshbooks_connections.id"],
            name=op.f("fk_simulated_objects_connection_id_freshbooks_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_simulated_objects")),
        sa.UniqueConstraint(
            "connection_id", "object_kind", "object_id", name=op.f("uq_simulated_objects_connection_id")
        ),
    )
    op.create_table(
        "allowed_users",
        sa.Column("workspace_id", BigId, nullable=False),
        sa.Column("slack_user_id", sa.String(length=32), nullable=False),
        sa.Column("added_by_user_id", sa.String(length=32), nullable=True),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_allowed_users_workspace_id_workspaces")
        ),
        sa.PrimaryKeyConstraint("workspace_id", "slack_user_id", name=op.f("pk_allowed_users")),
    )
    op.create_index("ix_deliveries_workspace_created", "deliveries", ["workspace_id", "created_at"])
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_subject", "audit_log", ["subject_id"])
    op.create_index("ix_events_connection_created", "events", ["connection_id", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_events_connection_created", table_name="events")
    op.drop_index("ix_audit_log_subject", table_name="audit_log")
    op.drop_index("ix_audit_log_at", table_name="audit_log")
    op.drop_index("ix_deliveries_workspace_created", table_name="deliveries")
    op.drop_table("allowed_users")
    op.drop_table("simulated_objects")
    op.drop_table("app_secrets")
    op.drop_index("ix_search_terms_lookup", table_name="search_terms")
    op.drop_table("search_terms")
