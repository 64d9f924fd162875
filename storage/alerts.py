"""Problems a person must fix, told once per cause: the one place that queries alerts."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage.models import Alert, FreshBooksConnection


def open_alert(session: Session, *, workspace_id: int, cause: str, now: dt.datetime) -> bool:
    """Record that `cause` is happening; True only the first time (until it is resolved)."""
    reopened = session.execute(
        update(Alert)
        .where(Alert.workspace_id == workspace_id, Alert.cause == cause, Alert.resolved_at.is_not(None))
        .values(resolved_at=None, opened_at=now, notified_at=now)
    )
    if reopened.rowcount:  # type: ignore[attr-defined]
        return True
    try:
        with session.begin_nested():
            session.add(Alert(workspace_id=workspace_id, cause=cause, opened_at=now, notified_at=now))
    except IntegrityError:
        return False  # already open: the person was told
    return True


def resolve(session: Session, *, workspace_id: int, now: dt.datetime, channel_id: str | None = None) -> int:
    """Close the alerts about one channel (causes `code:channel`), or the workspace-wide ones
    (causes without a channel) when no channel is given: the next breakage is told again."""
    condition = [Alert.workspace_id == workspace_id, Alert.resolved_at.is_(None)]
    if channel_id is not None:
        condition.append(Alert.cause.endswith(f":{channel_id}"))
    else:
        condition.append(Alert.cause.not_like("%:%"))
    result = session.execute(update(Alert).where(*condition).values(resolved_at=now))
    return int(result.rowcount)  # type: ignore[attr-defined]


def installer_of(session: Session, workspace_id: int) -> str | None:
    """Who to tell: the admin who connected FreshBooks most recently."""
    return session.scalar(
        select(FreshBooksConnection.connected_by_user_id)
        .where(FreshBooksConnection.workspace_id == workspace_id)
        .order_by(FreshBooksConnection.id.desc())
        .limit(1)
    )


def open_alerts(session: Session, workspace_id: int) -> list[Alert]:
    return list(
        session.scalars(
            select(Alert)
            .where(Alert.workspace_id == workspace_id, Alert.resolved_at.is_(None))
            .order_by(Alert.id)
        )
    )
