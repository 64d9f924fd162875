"""The schema, in one place. Columns ending in `_enc` hold MultiFernet tokens (see storage.crypto).

Plaintext columns carry only IDs, states, event names and timestamps: a dump of the database must
not reveal tokens, client or vendor names, invoice numbers, amounts of money or message text.
Every encrypted column is declared with `encrypted_text()` so `fbslack keys rotate` finds it.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names, so migrations are identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a real bigint.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes on both databases (SQLite drops the offset; we put it back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def encrypted_text(*, nullable: bool = True) -> Mapped[Any]:
    return mapped_column(Text, nullable=nullable, info={"encrypted": True})


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ConnectionStatus(enum.StrEnum):
    ACTIVE = "active"
    NEEDS_RECONNECT = "needs_reconnect"
    DISCONNECTED = "disconnected"


class InboxState(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"
    DUPLICATE = "duplicate"  # a repeat of an event already recorded
    IGNORED = "ignored"
    FAILED = "failed"


class VerificationState(enum.StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    IGNORED = "ignored"


class Workspace(Base):
    """A Slack workspace (team) the app is installed in."""

    __tablename__ = "workspaces"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    slack_team_id: Mapped[str] = mapped_column(String(32), unique=True)
    slack_enterprise_id: Mapped[str | None] = mapped_column(String(32))
    installed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    uninstalled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Set when Slack refused the install (revoked token, uninstalled): nothing is posted until a
    # reinstall or new token clears it, and parked deliveries are replayed then.
    suspended_reason: Mapped[str | None] = mapped_column(String(64))


class FreshBooksConnection(Base):
    """One FreshBooks business connected to one workspace, with its OAuth tokens."""

    __tablename__ = "freshbooks_connections"
    __table_args__ = (UniqueConstraint("workspace_id", "account_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), index=True)
    account_id: Mapped[str] = mapped_column(String(32))
    business_id: Mapped[int | None] = mapped_column(BigInteger)
    business_name_enc: Mapped[str | None] = encrypted_text()
    # The webhook URL token is looked up by its SHA-256; the token itself is kept encrypted
    # because the callback URIs registered at FreshBooks are rebuilt from it.
    webhook_token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    webhook_token_enc: Mapped[str] = encrypted_text(nullable=False)
    status: Mapped[str] = mapped_column(String(20), default=ConnectionStatus.ACTIVE)
    access_token_enc: Mapped[str | None] = encrypted_text()
    refresh_token_enc: Mapped[str | None] = encrypted_text()
    token_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # When FreshBooks issued that access token: with the expiry, its lifetime (the refresh margin
    # scales with it). Null when unknown (a token from the connect flow or an older version).
    token_issued_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Bumped on every token refresh: refreshes compare-and-swap on it (refresh tokens are single-use).
    token_version: Mapped[int] = mapped_column(Integer, default=0)
    # A lease, not a held database lock: one process refreshes at a time across all processes, and
    # a process that dies mid-refresh lets go when the lease runs out.
    refresh_lease_owner: Mapped[str | None] = mapped_column(String(64))
    refresh_lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    status_reason: Mapped[str | None] = mapped_column(String(200))
    identity_id: Mapped[int | None] = mapped_column(BigInteger)
    connected_by_user_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    disconnected_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Reconciliation poll: objects updated at or after this instant are listed on the next poll.
    poll_watermark: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Set when the admin was told the webhooks are unhealthy; cleared when they recover (tell once).
    callbacks_alerted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class FreshBooksCallback(Base):
    """A webhook callback registered at FreshBooks; its verifier is the HMAC key for its webhooks."""

    __tablename__ = "freshbooks_callbacks"
    __table_args__ = (UniqueConstraint("connection_id", "callback_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    connection_id: Mapped[int] = mapped_column(
        ForeignKey("freshbooks_connections.id", ondelete="CASCADE"), index=True
    )
    callback_id: Mapped[int] = mapped_column(BigInteger)
    event: Mapped[str] = mapped_column(String(64))
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    verifier_enc: Mapped[str | None] = encrypted_text()
    # Set when we ask FreshBooks to resend the verification: only then may a verified callback's
    # verifier be replaced (otherwise a forged verify could swap our HMAC key).
    resend_requested_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    registered_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    verified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class CallbackVerification(Base):
    """A `callback.verify` request as received; the verifier is adopted only once FreshBooks accepts it."""

    __tablename__ = "callback_verifications"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    connection_id: Mapped[int] = mapped_column(
        ForeignKey("freshbooks_connections.id", ondelete="CASCADE"), index=True
    )
    callback_id: Mapped[int] = mapped_column(BigInteger)
    verifier_enc: Mapped[str] = encrypted_text(nullable=False)
    state: Mapped[str] = mapped_column(String(16), default=VerificationState.PENDING, index=True)
    detail: Mapped[str | None] = mapped_column(String(200))
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    processed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class WebhookInbox(Base):
    """Every authentic webhook FreshBooks delivered, repeats included, committed before the 2xx."""

    __tablename__ = "webhook_inbox"
    __table_args__ = (
        Index("ix_webhook_inbox_due", "state", "available_at"),
        # Also answers "when did this connection last hear from FreshBooks" without a hot
        # per-connection counter row that every webhook would have to lock.
        Index("ix_webhook_inbox_connection_received", "connection_id", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("freshbooks_connections.id"))
    event_name: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[str] = mapped_column(String(32))
    body_enc: Mapped[str] = encrypted_text(nullable=False)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(16), default=InboxState.PENDING)
    available_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    processed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(500))
    event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id"))


class WebhookDigest(Base):
    """A keyed hash (never the body) of a webhook body a connection received lately: the same body
    again within storage.inbox.REPEAT_WINDOW is acknowledged without a new inbox row or fetch."""

    __tablename__ = "webhook_digests"

    connection_id: Mapped[int] = mapped_column(
        ForeignKey("freshbooks_connections.id", ondelete="CASCADE"), primary_key=True
    )
    digest: Mapped[str] = mapped_column(String(32), primary_key=True)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class Event(Base):
    """A FreshBooks change worth reporting, unique per (connection, name, object, object's `updated`)."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("connection_id", "name", "object_id", "object_updated"),
        # Newest-first audit search within a connection (storage.search).
        Index("ix_events_connection_created", "connection_id", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("freshbooks_connections.id"))
    # The inbox row that produced this event (repeats point here through inbox.event_id); None for
    # events derived from state (invoice.paid) or found by the reconciliation poll or overdue scan.
    inbox_id: Mapped[int | None] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(16), default="webhook")
    object_kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[str] = mapped_column(String(32))
    object_updated: Mapped[str] = mapped_column(String(40))
    # False for a change nobody needs to hear about (an invoice.update that changed nothing material).
    notable: Mapped[bool] = mapped_column(Boolean, default=True)
    object_enc: Mapped[str | None] = encrypted_text()
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    # Set once the router has turned the event into deliveries (in the same transaction).
    routed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, index=True)


class ObjectState(Base):
    """The last known state of a FreshBooks object, to tell what changed (paid, partially paid...)."""

    __tablename__ = "object_states"
    __table_args__ = (UniqueConstraint("connection_id", "object_kind", "object_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("freshbooks_connections.id", ondelete="CASCADE"))
    object_kind: Mapped[str] = mapped_column(String(16))
    object_id: Mapped[str] = mapped_column(String(32))
    updated: Mapped[str] = mapped_column(String(40))
    snapshot_enc: Mapped[str] = encrypted_text(nullable=False)
    seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class OAuthState(Base):
    """A pending FreshBooks authorization: single-use, bound to a workspace and user, short-lived."""

    __tablename__ = "oauth_states"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    slack_user_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # When the identity has several businesses, the exchanged tokens wait here (encrypted) until
    # the user picks one; a second single-use token guards that choice.
    choice_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    grant_enc: Mapped[str | None] = encrypted_text()
    choice_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class JobLease(Base):
    """Makes a scheduled job run once per interval across every process sharing the database."""

    __tablename__ = "job_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    until: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class RoutingRule(Base):
    """Which events of a connection go to which channel (evaluated by connector.features.rules.syntax)."""

    __tablename__ = "routing_rules"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), index=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("freshbooks_connections.id"))
    patterns: Mapped[list[str]] = mapped_column(JSON)
    # Decimal strings: exact on both databases (SQLite has no decimal type).
    min_amount: Mapped[str | None] = mapped_column(String(32))
    max_amount: Mapped[str | None] = mapped_column(String(32))
    currency: Mapped[str | None] = mapped_column(String(3))
    billable_only: Mapped[bool] = mapped_column(Boolean, default=False)
    counterparty_enc: Mapped[str | None] = encrypted_text()
    channel_id: Mapped[str] = mapped_column(String(32))
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    # A burst of this many deliveries waiting for the channel goes out as one summary; None: never.
    collapse_at: Mapped[int | None] = mapped_column(Integer)
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by_user_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class DeliveryState(enum.StrEnum):
    PENDING = "pending"
    IN_DOUBT = "in_doubt"  # the post may have happened: look in the channel before posting again
    DELIVERED = "delivered"
    PARKED = "parked"  # waits for a person (archived channel, revoked token); replayed when fixed
    FAILED = "failed"  # our bug (invalid blocks) or retries exhausted


class Delivery(Base):
    """The outbox: one row per (event, channel), so an event can never be posted twice to a channel."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "channel_id"),
        Index("ix_deliveries_due", "state", "next_attempt_at"),
        Index("ix_deliveries_channel", "workspace_id", "channel_id", "state"),
        Index("ix_deliveries_workspace_created", "workspace_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"))
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), index=True)
    channel_id: Mapped[str] = mapped_column(String(32))
    # Opaque identifier carried in Slack message metadata, used to reconcile in-doubt posts.
    delivery_key: Mapped[str] = mapped_column(String(36), unique=True)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    message_enc: Mapped[str | None] = encrypted_text()
    slack_ts: Mapped[str | None] = mapped_column(String(32))
    thread_ts: Mapped[str | None] = mapped_column(String(32))
    permalink: Mapped[str | None] = mapped_column(String(300))
    last_error_code: Mapped[str | None] = mapped_column(String(64))
    parked_reason: Mapped[str | None] = mapped_column(String(64))
    rule_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    # Collapsed into a summary when at least this many wait for the channel; None: always alone
    # (`collapse off`, and every replay).
    collapse_at: Mapped[int | None] = mapped_column(Integer)
    # The metadata key of the summary (or summary thread reply) that lists this delivery; the
    # in-doubt check looks for it instead of delivery_key. None: posted alone.
    batch_key: Mapped[str | None] = mapped_column(String(36))
    # When the last post attempt started: bounds the history search for an in-doubt post.
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class ChannelPacing(Base):
    """One post at a time and at most one per second per channel, across all processes."""

    __tablename__ = "channel_pacing"

    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    next_post_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    busy_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class WorkspacePacing(Base):
    """The workspace-wide budget (a token bucket) and any 429 pause Slack imposed."""

    __tablename__ = "workspace_pacing"

    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    refilled_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    paused_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class SlackThread(Base):
    """The card message of an invoice or bill in a channel; later events reply in its thread."""

    __tablename__ = "slack_threads"
    __table_args__ = (UniqueConstraint("workspace_id", "channel_id", "object_kind", "object_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"))
    channel_id: Mapped[str] = mapped_column(String(32))
    object_kind: Mapped[str] = mapped_column(String(16))
    object_id: Mapped[str] = mapped_column(String(32))
    card_ts: Mapped[str] = mapped_column(String(32))
    connection_id: Mapped[int] = mapped_column(ForeignKey("freshbooks_connections.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # A burst summary that lists several objects: its thread is theirs, but it is never rewritten
    # as one object's card.
    shared: Mapped[bool] = mapped_column(Boolean, default=False)


class ChannelQuietHours(Base):
    """A channel's quiet hours: deliveries routed in them wait for their end (urgent rules aside)."""

    __tablename__ = "quiet_hours"

    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    start_minute: Mapped[int] = mapped_column(Integer)  # local wall-clock minutes after midnight
    end_minute: Mapped[int] = mapped_column(Integer)
    weekends: Mapped[bool] = mapped_column(Boolean, default=False)
    zone: Mapped[str] = mapped_column(String(64))  # IANA, from the setter's Slack profile
    set_by_user_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class Alert(Base):
    """A problem a person must fix, told once per cause (not once per message)."""

    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("workspace_id", "cause"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"))
    cause: Mapped[str] = mapped_column(String(120))  # e.g. "is_archived:C0123" or "token_revoked"
    opened_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    notified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class AuditEntry(Base):
    """Append-only trail: what was received, attempted and replayed, by whom, with what outcome."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_workspace_at", "workspace_id", "at"),
        Index("ix_audit_log_at", "at"),
        Index("ix_audit_log_subject", "subject_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    workspace_id: Mapped[int | None] = mapped_column(ForeignKey("workspaces.id"))
    connection_id: Mapped[int | None] = mapped_column(ForeignKey("freshbooks_connections.id"))
    kind: Mapped[str] = mapped_column(String(40))
    subject_id: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str | None] = mapped_column(String(64))
    detail_enc: Mapped[str | None] = encrypted_text()


class SearchTerm(Base):
    """Keyed blind indexes of an event's invoice or bill number and client or vendor name words.

    `term` is a truncated HMAC (storage.search) under a key kept encrypted in app_secrets, so exact
    matches can be found without storing the number or name as plaintext.
    """

    __tablename__ = "search_terms"
    __table_args__ = (
        UniqueConstraint("event_id", "term"),
        Index("ix_search_terms_lookup", "workspace_id", "term", "event_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"))
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    term: Mapped[str] = mapped_column(String(32))


class AppSecret(Base):
    """Secrets the app generates for itself (the blind-index key), encrypted like every other secret."""

    __tablename__ = "app_secrets"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)  # `fbslack keys rotate` pages by id
    name: Mapped[str] = mapped_column(String(64), unique=True)
    value_enc: Mapped[str] = encrypted_text(nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class SimulatedObject(Base):
    """A sample object written by `fbslack simulate`: the enricher answers from it, never FreshBooks."""

    __tablename__ = "simulated_objects"
    __table_args__ = (UniqueConstraint("connection_id", "object_kind", "object_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("freshbooks_connections.id", ondelete="CASCADE"))
    object_kind: Mapped[str] = mapped_column(String(16))
    object_id: Mapped[str] = mapped_column(String(32))
    payload_enc: Mapped[str] = encrypted_text(nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class AllowedUser(Base):
    """A user an admin allowed to change settings (connect, route, replay...) besides admins."""

    __tablename__ = "allowed_users"

    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), primary_key=True)
    slack_user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    added_by_user_id: Mapped[str | None] = mapped_column(String(32))
    added_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class SlackInstallation(Base):
    """One Slack install of the app (multi-workspace mode), in slack_sdk's SQLAlchemy store layout.

    slack_sdk.oauth.installation_store.sqlalchemy reads and writes these columns through its own
    Table object, so they keep its names (no `_enc` suffix): the tokens are still ciphertext, because
    storage.installations encrypts them before the store sees them. Times are naive UTC, the way
    slack_sdk writes them. The refresh lease is ours: one token refresh at a time across processes.
    """

    __tablename__ = "slack_installations"
    __table_args__ = (
        Index("slack_installations_idx", "client_id", "enterprise_id", "team_id", "user_id", "installed_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(32))
    app_id: Mapped[str] = mapped_column(String(32))
    enterprise_id: Mapped[str | None] = mapped_column(String(32))
    enterprise_name: Mapped[str | None] = mapped_column(String(200))
    enterprise_url: Mapped[str | None] = mapped_column(String(200))
    team_id: Mapped[str | None] = mapped_column(String(32))
    team_name: Mapped[str | None] = mapped_column(String(200))
    bot_token: Mapped[str | None] = encrypted_text()
    bot_id: Mapped[str | None] = mapped_column(String(32))
    bot_user_id: Mapped[str | None] = mapped_column(String(32))
    bot_scopes: Mapped[str | None] = mapped_column(String(1000))
    bot_refresh_token: Mapped[str | None] = encrypted_text()
    bot_token_expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    user_id: Mapped[str] = mapped_column(String(32))
    user_token: Mapped[str | None] = encrypted_text()
    user_scopes: Mapped[str | None] = mapped_column(String(1000))
    user_refresh_token: Mapped[str | None] = encrypted_text()
    user_token_expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    incoming_webhook_url: Mapped[str | None] = encrypted_text()  # posting to it needs no other secret
    incoming_webhook_channel: Mapped[str | None] = mapped_column(String(200))
    incoming_webhook_channel_id: Mapped[str | None] = mapped_column(String(200))
    incoming_webhook_configuration_url: Mapped[str | None] = mapped_column(String(200))
    is_enterprise_install: Mapped[bool] = mapped_column(Boolean, default=False)
    token_type: Mapped[str | None] = mapped_column(String(32))
    installed_at: Mapped[dt.datetime] = mapped_column(DateTime)
    refresh_lease_owner: Mapped[str | None] = mapped_column(String(64))
    refresh_lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Ours too: when our last refresh issued the bot token (its lifetime scales the refresh
    # margin); null for the install's own token, issued at installed_at.
    bot_token_issued_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class SlackBot(Base):
    """The bot part of each install (slack_sdk's `slack_bots`), tokens encrypted as above."""

    __tablename__ = "slack_bots"
    __table_args__ = (Index("slack_bots_idx", "client_id", "enterprise_id", "team_id", "installed_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(32))
    app_id: Mapped[str] = mapped_column(String(32))
    enterprise_id: Mapped[str | None] = mapped_column(String(32))
    enterprise_name: Mapped[str | None] = mapped_column(String(200))
    team_id: Mapped[str | None] = mapped_column(String(32))
    team_name: Mapped[str | None] = mapped_column(String(200))
    bot_token: Mapped[str | None] = encrypted_text()
    bot_id: Mapped[str | None] = mapped_column(String(32))
    bot_user_id: Mapped[str | None] = mapped_column(String(32))
    bot_scopes: Mapped[str | None] = mapped_column(String(1000))
    bot_refresh_token: Mapped[str | None] = encrypted_text()
    bot_token_expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    is_enterprise_install: Mapped[bool] = mapped_column(Boolean, default=False)
    installed_at: Mapped[dt.datetime] = mapped_column(DateTime)


class SlackOAuthState(Base):
    """A pending Slack install (slack_sdk's `slack_oauth_states`): single-use, ten minutes. `state`
    holds the SHA-256 of the value in the install link and cookie, not the value itself."""

    __tablename__ = "slack_oauth_states"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    state: Mapped[str] = mapped_column(String(200), unique=True)
    expire_at: Mapped[dt.datetime] = mapped_column(DateTime)


class DigestSchedule(Base):
    """A cash-flow digest an admin scheduled for a channel: daily, or weekly on `weekday`, at
    `local_time` in the IANA `zone` (the admin's Slack time zone when it was made)."""

    __tablename__ = "digest_schedules"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), index=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("freshbooks_connections.id"))
    channel_id: Mapped[str] = mapped_column(String(32))
    cadence: Mapped[str] = mapped_column(String(8))  # daily | weekly
    weekday: Mapped[int | None] = mapped_column(Integer)  # 0 = Monday; weekly only
    local_time: Mapped[str] = mapped_column(String(5))  # HH:MM
    zone: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # When the channel was told its digest is skipped (FreshBooks disconnected or revoked): told
    # once, until a digest goes out again.
    skip_notice_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class DigestRunState(enum.StrEnum):
    PENDING = "pending"
    IN_DOUBT = "in_doubt"  # the post may have happened: look in the channel before posting again
    DELIVERED = "delivered"
    SKIPPED = "skipped"  # FreshBooks disconnected or revoked: the channel was told instead
    FAILED = "failed"  # Slack refused it for good, or retries ran out


class DigestRun(Base):
    """One digest of one schedule for one period: the unique key is what makes it exactly once."""

    __tablename__ = "digest_runs"
    __table_args__ = (
        UniqueConstraint("schedule_id", "period_start"),
        Index("ix_digest_runs_due", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("digest_schedules.id", ondelete="CASCADE"))
    period_start: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)  # when it was meant to go out
    # Opaque identifier carried in Slack message metadata, used to reconcile an in-doubt post.
    delivery_key: Mapped[str] = mapped_column(String(36), unique=True)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)  # the last post attempt began
    slack_ts: Mapped[str | None] = mapped_column(String(32))
    last_error: Mapped[str | None] = mapped_column(String(64))
    # When the channel got the one "digest delayed" message for this run.
    delayed_notice_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


def encrypted_columns() -> list[tuple[type[Base], str]]:
    """Every (model, attribute) holding ciphertext, discovered from the column info flag."""
    found: list[tuple[type[Base], str]] = []
    for mapper in Base.registry.mappers:
        model = mapper.class_
        for attr in mapper.column_attrs:
            if any(col.info.get("encrypted") for col in attr.columns):
                found.append((model, attr.key))
    return sorted(found, key=lambda item: (item[0].__tablename__, item[1]))
