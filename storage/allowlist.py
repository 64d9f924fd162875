"""People an admin allowed to change the setup besides admins: the one place that queries allowed_users."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from storage.db import upsert_insert
from storage.models import AllowedUser


def is_allowed(session: Session, *, workspace_id: int, user_id: str) -> bool:
    return (
        session.scalar(
            select(AllowedUser.slack_user_id).where(
                AllowedUser.workspace_id == workspace_id, AllowedUser.slack_user_id == user_id
            )
        )
        is not None
    )


def count_allowed(session: Session, *, workspace_id: int) -> int:
    return (
        session.scalar(
            select(func.count()).select_from(AllowedUser).where(AllowedUser.workspace_id == workspace_id)
        )
        or 0
    )


def allowed_users(
    session: Session, *, workspace_id: int, offset: int = 0, limit: int | None = None
) -> list[str]:
    """Slack user ids, oldest addition first (a stable order for paging)."""
    statement = (
        select(AllowedUser.slack_user_id)
        .where(AllowedUser.workspace_id == workspace_id)
        .order_by(AllowedUser.added_at, AllowedUser.slack_user_id)
        .offset(offset)
        .limit(limit)
    )
    return list(session.scalars(statement))


def allow(
    session: Session, *, workspace_id: int, user_ids: Iterable[str], added_by: str, now: dt.datetime
) -> int:
    """Add users (already allowed ones are left as they were); returns how many were new."""
    added = 0
    for user_id in dict.fromkeys(user_ids):  # unique, in the order given
        statement = (
            upsert_insert(session, AllowedUser)
            .values(workspace_id=workspace_id, slack_user_id=user_id, added_by_user_id=added_by, added_at=now)
            .on_conflict_do_nothing()
            .returning(AllowedUser.slack_user_id)  # rowcount is not reliable for this on both drivers
        )
        added += session.scalar(statement) is not None
    return added


def disallow(session: Session, *, workspace_id: int, user_id: str) -> bool:
    result = session.execute(
        delete(AllowedUser).where(
            AllowedUser.workspace_id == workspace_id, AllowedUser.slack_user_id == user_id
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
