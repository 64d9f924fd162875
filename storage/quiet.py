"""Quiet hours per channel: the one place that queries quiet_hours."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from connector.domain.quiet import QuietHours
from storage.db import upsert_insert
from storage.models import ChannelQuietHours, Delivery, DeliveryState


def _to_value(row: ChannelQuietHours) -> QuietHours:
    return QuietHours(
        channel_id=row.channel_id,
        start_minute=row.start_minute,
        end_minute=row.end_minute,
        weekends=row.weekends,
        zone=row.zone,
    )


def set_quiet(
    session: Session, *, workspace_id: int, hours: QuietHours, user_id: str, now: dt.datetime
) -> None:
    """Set (or replace) a channel's quiet hours."""
    session.execute(
        delete(ChannelQuietHours).where(
            ChannelQuietHours.workspace_id == workspace_id, ChannelQuietHours.channel_id == hours.channel_id
        )
    )
    session.execute(
        upsert_insert(session, ChannelQuietHours)
        .values(
            workspace_id=workspace_id,
            channel_id=hours.channel_id,
            start_minute=hours.start_minute,
            end_minute=hours.end_minute,
            weekends=hours.weekends,
            zone=hours.zone,
            set_by_user_id=user_id,
            created_at=now,
        )
        .on_conflict_do_nothing()
    )


def clear_quiet(session: Session, *, workspace_id: int, channel_id: str, now: dt.datetime) -> bool:
    """No more quiet hours in the channel: what they were holding goes out now (as one summary)."""
    result = session.execute(
        delete(ChannelQuietHours).where(
            ChannelQuietHours.workspace_id == workspace_id, ChannelQuietHours.channel_id == channel_id
        )
    )
    session.execute(
        update(Delivery)
        .where(
            Delivery.workspace_id == workspace_id,
            Delivery.channel_id == channel_id,
            Delivery.state == DeliveryState.PENDING,
            Delivery.attempts == 0,
            Delivery.next_attempt_at > now,
        )
        .values(next_attempt_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def quiet_of_channel(session: Session, *, workspace_id: int, channel_id: str) -> QuietHours | None:
    row = session.get(ChannelQuietHours, (workspace_id, channel_id))
    return None if row is None else _to_value(row)


def quiet_of_workspace(session: Session, *, workspace_id: int) -> list[QuietHours]:
    rows = session.scalars(
        select(ChannelQuietHours)
        .where(ChannelQuietHours.workspace_id == workspace_id)
        .order_by(ChannelQuietHours.channel_id)
    )
    return [_to_value(row) for row in rows]
