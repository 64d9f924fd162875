"""OAuth states for connecting FreshBooks: the one place that queries oauth_states."""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from storage.crypto import Cipher
from storage.models import OAuthState


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_state(
    session: Session, *, workspace_id: int, slack_user_id: str, now: dt.datetime, ttl: dt.timedelta
) -> str:
    """A new single-use state for the authorize URL; only its hash is stored."""
    state = secrets.token_urlsafe(32)
    session.add(
        OAuthState(
            state_hash=_hash(state),
            workspace_id=workspace_id,
            slack_user_id=slack_user_id,
            created_at=now,
            expires_at=now + ttl,
        )
    )
    return state


class StateProblem(enum.StrEnum):
    UNKNOWN = "unknown"
    USED = "used"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class ClaimedState:
    id: int
    workspace_id: int
    slack_user_id: str


def _live_state(session: Session, state: str, *, now: dt.datetime) -> OAuthState | StateProblem:
    row = session.scalar(select(OAuthState).where(OAuthState.state_hash == _hash(state)))
    if row is None:
        return StateProblem.UNKNOWN
    if row.used_at is not None:
        return StateProblem.USED
    if row.expires_at <= now:
        return StateProblem.EXPIRED
    return row


def peek_state(session: Session, state: str, *, now: dt.datetime) -> ClaimedState | StateProblem:
    """What claim_state would find, without using the state (the confirmation page reads it)."""
    row = _live_state(session, state, now=now)
    if isinstance(row, StateProblem):
        return row
    return ClaimedState(id=row.id, workspace_id=row.workspace_id, slack_user_id=row.slack_user_id)


def claim_state(session: Session, state: str, *, now: dt.datetime) -> ClaimedState | StateProblem:
    """Use a state once: compare-and-swap on used_at, so two callbacks racing cannot both win."""
    row = _live_state(session, state, now=now)
    if isinstance(row, StateProblem):
        return row
    claimed = session.execute(
        update(OAuthState).where(OAuthState.id == row.id, OAuthState.used_at.is_(None)).values(used_at=now)
    )
    if not claimed.rowcount:  # type: ignore[attr-defined]
        return StateProblem.USED
    return ClaimedState(id=row.id, workspace_id=row.workspace_id, slack_user_id=row.slack_user_id)


def park_grant(
    session: Session,
    cipher: Cipher,
    *,
    state_id: int,
    grant: dict[str, Any],
    now: dt.datetime,
    ttl: dt.timedelta,
) -> str:
    """Keep an exchanged grant (encrypted) until the user picks a business; return the choice token."""
    choice = secrets.token_urlsafe(32)
    session.execute(
        update(OAuthState)
        .where(OAuthState.id == state_id)
        .values(choice_hash=_hash(choice), grant_enc=cipher.encrypt_json(grant), choice_expires_at=now + ttl)
    )
    return choice


@dataclass(frozen=True, slots=True)
class ParkedGrant:
    workspace_id: int
    slack_user_id: str
    grant: dict[str, Any]


def claim_grant(
    session: Session, cipher: Cipher, choice: str, *, now: dt.datetime
) -> ParkedGrant | StateProblem:
    """Take a parked grant once; the tokens are wiped from the state row as they are taken."""
    row = session.scalar(select(OAuthState).where(OAuthState.choice_hash == _hash(choice)))
    if row is None:
        return StateProblem.UNKNOWN
    if row.grant_enc is None:
        return StateProblem.USED
    if row.choice_expires_at is None or row.choice_expires_at <= now:
        return StateProblem.EXPIRED
    grant_enc = row.grant_enc
    taken = session.execute(
        update(OAuthState)
        .where(OAuthState.id == row.id, OAuthState.grant_enc == grant_enc)
        .values(grant_enc=None)
    )
    if not taken.rowcount:  # type: ignore[attr-defined]
        return StateProblem.USED
    return ParkedGrant(
        workspace_id=row.workspace_id, slack_user_id=row.slack_user_id, grant=cipher.decrypt_json(grant_enc)
    )
