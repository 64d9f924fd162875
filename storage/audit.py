"""The audit trail: append-only; details are encrypted. The one place that writes audit_log."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.crypto import Cipher
from storage.models import AuditEntry


def record(
    session: Session,
    cipher: Cipher,
    *,
    kind: str,
    outcome: str,
    now: dt.datetime,
    workspace_id: int | None = None,
    connection_id: int | None = None,
    subject_id: str | None = None,
    actor: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    session.add(
        AuditEntry(
            at=now,
            workspace_id=workspace_id,
            connection_id=connection_id,
            kind=kind,
            subject_id=subject_id,
            outcome=outcome,
            actor=actor,
            detail_enc=cipher.encrypt_json(detail) if detail else None,
        )
    )


def entries_for(session: Session, *, workspace_id: int, subject_id: str, limit: int = 50) -> list[AuditEntry]:
    """The trail of one subject (a delivery id), oldest first, within one workspace."""
    rows = session.scalars(
        select(AuditEntry)
        .where(AuditEntry.subject_id == subject_id, AuditEntry.workspace_id == workspace_id)
        .order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
        .limit(limit)
    )
    return list(reversed(list(rows)))


def entries_of_kind(
    session: Session,
    *,
    workspace_id: int,
    kind: str,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int = 50,
) -> list[AuditEntry]:
    """One kind of entry (e.g. `digest`) of one workspace, newest first, in [since, until)."""
    query = select(AuditEntry).where(AuditEntry.workspace_id == workspace_id, AuditEntry.kind == kind)
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    if until is not None:
        query = query.where(AuditEntry.at < until)
    return list(session.scalars(query.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit)))
