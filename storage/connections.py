"""Workspaces, FreshBooks connections and their callbacks: the one place that queries these tables."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from storage.crypto import Cipher
from storage.models import (
    ConnectionStatus,
    FreshBooksCallback,
    FreshBooksConnection,
    Workspace,
)


def webhook_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_webhook_token() -> str:
    """An unguessable URL token (256 bits), one per connection."""
    return secrets.token_urlsafe(32)


def ensure_workspace(
    session: Session, *, team_id: str, now: dt.datetime, enterprise_id: str | None = None
) -> Workspace:
    workspace = session.scalar(select(Workspace).where(Workspace.slack_team_id == team_id))
    if workspace is None:
        workspace = Workspace(slack_team_id=team_id, slack_enterprise_id=enterprise_id, installed_at=now)
        session.add(workspace)
        session.flush()
    return workspace


@dataclass(frozen=True, slots=True)
class NewConnection:
    connection: FreshBooksConnection
    webhook_token: str


def create_connection(
    session: Session,
    cipher: Cipher,
    *,
    workspace_id: int,
    account_id: str,
    business_id: int | None,
    business_name: str | None,
    access_token: str | None,
    refresh_token: str | None,
    token_expires_at: dt.datetime | None,
    now: dt.datetime,
    connected_by_user_id: str | None = None,
) -> NewConnection:
    token = new_webhook_token()
    connection = FreshBooksConnection(
        workspace_id=workspace_id,
        account_id=account_id,
        business_id=business_id,
        business_name_enc=cipher.encrypt(business_name) if business_name else None,
        webhook_token_hash=webhook_token_hash(token),
        webhook_token_enc=cipher.encrypt(token),
        status=ConnectionStatus.ACTIVE,
        access_token_enc=cipher.encrypt(access_token) if access_token else None,
        refresh_token_enc=cipher.encrypt(refresh_token) if refresh_token else None,
        token_expires_at=token_expires_at,
        connected_by_user_id=connected_by_user_id,
        created_at=now,
    )
    session.add(connection)
    session.flush()
    return NewConnection(connection=connection, webhook_token=token)


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """What the intake needs to know about the connection a webhook URL belongs to."""

    connection_id: int
    account_id: str
    verifiers_enc: tuple[str, ...]


def find_webhook_target(session: Session, token: str) -> WebhookTarget | None:
    """The live connection behind a webhook URL token, with its verified callbacks' verifiers."""
    row = session.execute(
        select(FreshBooksConnection.id, FreshBooksConnection.account_id).where(
            FreshBooksConnection.webhook_token_hash == webhook_token_hash(token),
            FreshBooksConnection.status != ConnectionStatus.DISCONNECTED,
        )
    ).first()
    if row is None:
        return None
    verifiers = session.scalars(
        select(FreshBooksCallback.verifier_enc).where(
            FreshBooksCallback.connection_id == row.id,
            FreshBooksCallback.verified.is_(True),
            FreshBooksCallback.verifier_enc.is_not(None),
        )
    ).all()
    return WebhookTarget(
        connection_id=row.id,
        account_id=row.account_id,
        verifiers_enc=tuple(v for v in verifiers if v is not None),
    )


def record_callback(
    session: Session, *, connection_id: int, callback_id: int, event: str, now: dt.datetime
) -> FreshBooksCallback:
    """Remember a callback FreshBooks registered for us (idempotent on the callback id)."""
    callback = session.scalar(
        select(FreshBooksCallback).where(
            FreshBooksCallback.connection_id == connection_id,
            FreshBooksCallback.callback_id == callback_id,
        )
    )
    if callback is None:
        callback = FreshBooksCallback(
            connection_id=connection_id,
            callback_id=callback_id,
            event=event,
            verified=False,
            registered_at=now,
        )
        session.add(callback)
        session.flush()
    return callback


def find_callback(session: Session, *, connection_id: int, callback_id: int) -> FreshBooksCallback | None:
    return session.scalar(
        select(FreshBooksCallback).where(
            FreshBooksCallback.connection_id == connection_id,
            FreshBooksCallback.callback_id == callback_id,
        )
    )


def account_id(session: Session, connection_id: int) -> str:
    return session.execute(
        select(FreshBooksConnection.account_id).where(FreshBooksConnection.id == connection_id)
    ).scalar_one()


def adopt_verifier(session: Session, *, callback_row_id: int, verifier_enc: str, now: dt.datetime) -> None:
    """Make a verifier FreshBooks accepted the HMAC key of its callback."""
    session.execute(
        update(FreshBooksCallback)
        .where(FreshBooksCallback.id == callback_row_id)
        .values(verified=True, verifier_enc=verifier_enc, verified_at=now, resend_requested_at=None)
    )


def webhook_token(session: Session, cipher: Cipher, connection_id: int) -> str:
    token_enc = session.execute(
        select(FreshBooksConnection.webhook_token_enc).where(FreshBooksConnection.id == connection_id)
    ).scalar_one()
    return cipher.decrypt(token_enc)


@dataclass(frozen=True, slots=True)
class TokenSnapshot:
    access_token: str | None
    refresh_token: str | None
    expires_at: dt.datetime | None
    version: int
    status: str
    issued_at: dt.datetime | None = None

    def __repr__(self) -> str:
        return f"TokenSnapshot(version={self.version}, status={self.status!r}, expires_at={self.expires_at})"


def token_snapshot(session: Session, cipher: Cipher, connection_id: int) -> TokenSnapshot:
    row = session.execute(
        select(
            FreshBooksConnection.access_token_enc,
            FreshBooksConnection.refresh_token_enc,
            FreshBooksConnection.token_expires_at,
            FreshBooksConnection.token_version,
            FreshBooksConnection.status,
            FreshBooksConnection.token_issued_at,
        ).where(FreshBooksConnection.id == connection_id)
    ).one()
    return TokenSnapshot(
        access_token=cipher.decrypt(row.access_token_enc) if row.access_token_enc else None,
        refresh_token=cipher.decrypt(row.refresh_token_enc) if row.refresh_token_enc else None,
        expires_at=row.token_expires_at,
        version=row.token_version,
        status=row.status,
        issued_at=row.token_issued_at,
    )


def acquire_refresh_lease(
    session: Session, *, connection_id: int, owner: str, now: dt.datetime, until: dt.datetime
) -> bool:
    """Compare-and-swap: take the refresh lease if nobody holds a live one."""
    result = session.execute(
        update(FreshBooksConnection)
        .where(
            FreshBooksConnection.id == connection_id,
            (FreshBooksConnection.refresh_lease_until.is_(None))
            | (FreshBooksConnection.refresh_lease_until < now),
        )
        .values(refresh_lease_owner=owner, refresh_lease_until=until)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def release_refresh_lease(session: Session, *, connection_id: int, owner: str) -> None:
    session.execute(
        update(FreshBooksConnection)
        .where(FreshBooksConnection.id == connection_id, FreshBooksConnection.refresh_lease_owner == owner)
        .values(refresh_lease_owner=None, refresh_lease_until=None)
    )


def store_tokens(
    session: Session,
    cipher: Cipher,
    *,
    connection_id: int,
    expected_version: int,
    access_token: str,
    refresh_token: str,
    expires_at: dt.datetime,
    issued_at: dt.datetime,
) -> bool:
    """Save a refreshed pair if nobody else has since (compare-and-swap on token_version)."""
    result = session.execute(
        update(FreshBooksConnection)
        .where(
            FreshBooksConnection.id == connection_id,
            FreshBooksConnection.token_version == expected_version,
        )
        .values(
            access_token_enc=cipher.encrypt(access_token),
            refresh_token_enc=cipher.encrypt(refresh_token),
            token_expires_at=expires_at,
            token_issued_at=issued_at,
            token_version=expected_version + 1,
            refresh_lease_owner=None,
            refresh_lease_until=None,
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def mark_needs_reconnect(
    session: Session, *, connection_id: int, reason: str, expected_version: int | None = None
) -> bool:
    """Flag a connection whose grant FreshBooks refused; True if this call changed its status.

    With `expected_version`, only if the refused refresh token is still the stored one: a pair
    stored since (token_version moved on) means the grant is alive, whatever that token got."""
    conditions = [
        FreshBooksConnection.id == connection_id,
        FreshBooksConnection.status == ConnectionStatus.ACTIVE,
    ]
    if expected_version is not None:
        conditions.append(FreshBooksConnection.token_version == expected_version)
    result = session.execute(
        update(FreshBooksConnection)
        .where(*conditions)
        .values(
            status=ConnectionStatus.NEEDS_RECONNECT,
            status_reason=reason[:200],
            refresh_lease_owner=None,
            refresh_lease_until=None,
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def callbacks_of(session: Session, connection_id: int) -> list[FreshBooksCallback]:
    return list(
        session.scalars(
            select(FreshBooksCallback)
            .where(FreshBooksCallback.connection_id == connection_id)
            .order_by(FreshBooksCallback.id)
        )
    )


def forget_callbacks(session: Session, *, connection_id: int, callback_ids: set[int]) -> None:
    """Drop callbacks FreshBooks no longer has: their verifiers must stop being accepted."""
    if not callback_ids:
        return
    for callback in callbacks_of(session, connection_id):
        if callback.callback_id in callback_ids:
            session.delete(callback)


def request_resend(session: Session, *, connection_id: int, callback_id: int, now: dt.datetime) -> None:
    session.execute(
        update(FreshBooksCallback)
        .where(
            FreshBooksCallback.connection_id == connection_id,
            FreshBooksCallback.callback_id == callback_id,
        )
        .values(resend_requested_at=now)
    )


def upsert_connection(
    session: Session,
    cipher: Cipher,
    *,
    workspace_id: int,
    account_id: str,
    business_id: int,
    business_name: str,
    identity_id: int,
    access_token: str,
    refresh_token: str,
    token_expires_at: dt.datetime,
    connected_by_user_id: str,
    now: dt.datetime,
) -> tuple[FreshBooksConnection, bool]:
    """Create the connection, or bring an existing one back to life on reconnect (same webhook URL)."""
    existing = session.scalar(
        select(FreshBooksConnection).where(
            FreshBooksConnection.workspace_id == workspace_id, FreshBooksConnection.account_id == account_id
        )
    )
    if existing is None:
        new = create_connection(
            session,
            cipher,
            workspace_id=workspace_id,
            account_id=account_id,
            business_id=business_id,
            business_name=business_name,
            access_token=access_token,
            refresh_token=refresh_token,
            token_expires_at=token_expires_at,
            now=now,
            connected_by_user_id=connected_by_user_id,
        )
        new.connection.identity_id = identity_id
        return new.connection, True
    existing.business_id = business_id
    existing.business_name_enc = cipher.encrypt(business_name)
    existing.identity_id = identity_id
    existing.access_token_enc = cipher.encrypt(access_token)
    existing.refresh_token_enc = cipher.encrypt(refresh_token)
    existing.token_expires_at = token_expires_at
    existing.token_issued_at = None  # the new grant's, not known here: the default margin until refreshed
    existing.token_version += 1
    existing.refresh_lease_owner = None
    existing.refresh_lease_until = None
    existing.status = ConnectionStatus.ACTIVE
    existing.status_reason = None
    existing.disconnected_at = None
    existing.connected_by_user_id = connected_by_user_id
    session.flush()
    return existing, False


def connections_of_team(session: Session, team_id: str) -> list[FreshBooksConnection]:
    return list(
        session.scalars(
            select(FreshBooksConnection)
            .join(Workspace, Workspace.id == FreshBooksConnection.workspace_id)
            .where(
                Workspace.slack_team_id == team_id,
                FreshBooksConnection.status != ConnectionStatus.DISCONNECTED,
            )
            .order_by(FreshBooksConnection.id)
        )
    )


def active_connection_ids(session: Session) -> list[int]:
    return list(
        session.scalars(
            select(FreshBooksConnection.id).where(FreshBooksConnection.status == ConnectionStatus.ACTIVE)
        )
    )


def team_of(session: Session, connection_id: int) -> tuple[str, str | None]:
    """(Slack team id, user who connected it) for telling people about a connection."""
    row = session.execute(
        select(Workspace.slack_team_id, FreshBooksConnection.connected_by_user_id)
        .join(Workspace, Workspace.id == FreshBooksConnection.workspace_id)
        .where(FreshBooksConnection.id == connection_id)
    ).one()
    return row.slack_team_id, row.connected_by_user_id


def mark_disconnected(session: Session, *, connection_id: int, now: dt.datetime) -> None:
    """Wipe the tokens and forget the callbacks; the inbox, events and audit trail stay."""
    session.execute(
        update(FreshBooksConnection)
        .where(FreshBooksConnection.id == connection_id)
        .values(
            status=ConnectionStatus.DISCONNECTED,
            status_reason="disconnected from Slack",
            access_token_enc=None,
            refresh_token_enc=None,
            token_expires_at=None,
            refresh_lease_owner=None,
            refresh_lease_until=None,
            disconnected_at=now,
        )
    )
    for callback in callbacks_of(session, connection_id):
        session.delete(callback)


def flag_callbacks_alert(session: Session, *, connection_id: int, at: dt.datetime | None) -> bool:
    """Set (or clear, with None) the 'admin was told' mark; True only for the call that changed it."""
    condition = (
        FreshBooksConnection.callbacks_alerted_at.is_(None)
        if at is not None
        else FreshBooksConnection.callbacks_alerted_at.is_not(None)
    )
    result = session.execute(
        update(FreshBooksConnection)
        .where(FreshBooksConnection.id == connection_id, condition)
        .values(callbacks_alerted_at=at)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def team_of_workspace(session: Session, workspace_id: int) -> str | None:
    return session.scalar(select(Workspace.slack_team_id).where(Workspace.id == workspace_id))


def workspace_of_team(session: Session, team_id: str) -> int | None:
    return session.scalar(select(Workspace.id).where(Workspace.slack_team_id == team_id))


def team_ids(session: Session) -> list[str]:
    """Every installed workspace's Slack team id (the CLI asks which one when there are several)."""
    return list(session.scalars(select(Workspace.slack_team_id).order_by(Workspace.id)))


def webhook_progress(session: Session) -> list[tuple[ConnectionStatus, frozenset[str]]]:
    """Every connection not disconnected: its status and the events whose callback FreshBooks has
    verified (the setup page's last step; it shows neither ids nor names)."""
    rows = session.execute(
        select(FreshBooksConnection.id, FreshBooksConnection.status).where(
            FreshBooksConnection.status != ConnectionStatus.DISCONNECTED
        )
    ).all()
    verified: dict[int, set[str]] = {row.id: set() for row in rows}
    for connection_id, event in session.execute(
        select(FreshBooksCallback.connection_id, FreshBooksCallback.event).where(
            FreshBooksCallback.connection_id.in_(verified),
            FreshBooksCallback.verified.is_(True),
            FreshBooksCallback.verifier_enc.is_not(None),
        )
    ):
        verified[connection_id].add(event)
    return [(ConnectionStatus(row.status), frozenset(verified[row.id])) for row in rows]
