"""The outbox (deliveries), channel pacing and threads: the one place that queries these tables."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage.models import (
    ChannelPacing,
    Delivery,
    DeliveryState,
    Event,
    SlackThread,
    Workspace,
    WorkspacePacing,
)


def unrouted_events(session: Session, *, limit: int) -> list[Event]:
    """Recorded events not yet turned into deliveries, locked for this router (SKIP LOCKED on PostgreSQL)."""
    return list(
        session.scalars(
            select(Event)
            .where(Event.routed_at.is_(None))
            .order_by(Event.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )


def add_delivery(
    session: Session,
    *,
    event_id: int,
    workspace_id: int,
    channel_id: str,
    rule_ids: list[int],
    now: dt.datetime,
) -> bool:
    """Queue one post of an event to a channel; the unique (event, channel) makes repeats no-ops."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = (
        insert(Delivery)
        .values(
            event_id=event_id,
            workspace_id=workspace_id,
            channel_id=channel_id,
            delivery_key=str(uuid.uuid4()),
            state=DeliveryState.PENDING,
            attempts=0,
            next_attempt_at=now,
            rule_ids=rule_ids,
            created_at=now,
        )
        .on_conflict_do_nothing()
    )
    return bool(session.execute(statement).rowcount)  # type: ignore[attr-defined]


# -- claiming, with per-channel and per-workspace pacing ------------------------------------------

CHANNEL_GAP = dt.timedelta(milliseconds=1050)  # Slack: 1 message/second/channel; a hair more for jitter
WORKSPACE_RATE_PER_SECOND = 3.0  # 180/minute, well below Slack's "several hundred per minute"
WORKSPACE_BURST = 20.0


@dataclass(frozen=True, slots=True)
class Claim:
    delivery_id: int
    event_id: int
    workspace_id: int
    channel_id: str
    delivery_key: str
    state: str
    attempts: int
    sent_at: dt.datetime | None  # of the previous attempt (bounds an in-doubt history search)


def _take_channel(
    session: Session, workspace_id: int, channel_id: str, now: dt.datetime, busy: dt.timedelta
) -> bool:
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    session.execute(
        insert(ChannelPacing)
        .values(workspace_id=workspace_id, channel_id=channel_id, next_post_at=now, busy_until=None)
        .on_conflict_do_nothing()
    )
    taken = session.execute(
        update(ChannelPacing)
        .where(
            ChannelPacing.workspace_id == workspace_id,
            ChannelPacing.channel_id == channel_id,
            ChannelPacing.next_post_at <= now,
            or_(ChannelPacing.busy_until.is_(None), ChannelPacing.busy_until < now),
        )
        .values(busy_until=now + busy, next_post_at=now + CHANNEL_GAP)
    )
    return bool(taken.rowcount)  # type: ignore[attr-defined]


def _take_budget(session: Session, workspace_id: int, now: dt.datetime) -> bool:
    row = session.get(WorkspacePacing, workspace_id, with_for_update=True)
    if row is None:
        try:
            with session.begin_nested():
                session.add(
                    WorkspacePacing(workspace_id=workspace_id, tokens=WORKSPACE_BURST - 1, refilled_at=now)
                )
            return True
        except IntegrityError:
            row = session.get_one(WorkspacePacing, workspace_id, with_for_update=True)
    if row.paused_until is not None and row.paused_until > now:
        return False
    elapsed = max(0.0, (now - row.refilled_at).total_seconds())
    tokens = min(WORKSPACE_BURST, float(row.tokens) + elapsed * WORKSPACE_RATE_PER_SECOND)
    if tokens < 1:
        return False
    row.tokens = tokens - 1
    row.refilled_at = now
    return True


def claim_due(
    session: Session,
    *,
    owner: str,
    now: dt.datetime,
    lease: dt.timedelta,
    limit: int,
) -> list[Claim]:
    """Lease due deliveries, at most one per channel, only where the channel and workspace may post now.

    The channel lease (busy_until) keeps posts to one channel strictly one at a time and in order
    across processes, so a thread's card is always posted before its replies.
    """
    candidates = session.scalars(
        select(Delivery)
        .join(Workspace, Workspace.id == Delivery.workspace_id)
        .where(
            Delivery.state.in_((DeliveryState.PENDING, DeliveryState.IN_DOUBT)),
            Delivery.next_attempt_at <= now,
            or_(Delivery.lease_expires_at.is_(None), Delivery.lease_expires_at < now),
            Workspace.suspended_reason.is_(None),
        )
        .order_by(Delivery.id)
        .limit(limit * 20)
        .with_for_update(skip_locked=True, of=Delivery)
    ).all()
    claims: list[Claim] = []
    tried: set[tuple[int, str]] = set()
    for delivery in candidates:
        channel = (delivery.workspace_id, delivery.channel_id)
        if channel in tried:
            continue  # the oldest due delivery of a channel goes first
        tried.add(channel)
        if not _take_channel(session, delivery.workspace_id, delivery.channel_id, now, lease):
            continue
        if not _take_budget(session, delivery.workspace_id, now):
            release_channel(
                session, workspace_id=delivery.workspace_id, channel_id=delivery.channel_id, now=now
            )
            continue
        claims.append(
            Claim(
                delivery_id=delivery.id,
                event_id=delivery.event_id,
                workspace_id=delivery.workspace_id,
                channel_id=delivery.channel_id,
                delivery_key=delivery.delivery_key,
                state=delivery.state,
                attempts=delivery.attempts + 1,
                sent_at=delivery.sent_at,
            )
        )
        delivery.lease_owner = owner
        delivery.lease_expires_at = now + lease
        delivery.attempts += 1
        if len(claims) >= limit:
            break
    return claims


def release_channel(session: Session, *, workspace_id: int, channel_id: str, now: dt.datetime) -> None:
    session.execute(
        update(ChannelPacing)
        .where(ChannelPacing.workspace_id == workspace_id, ChannelPacing.channel_id == channel_id)
        .values(busy_until=None)
    )


def pause_workspace(session: Session, *, workspace_id: int, until: dt.datetime) -> None:
    """Slack answered 429: no post for this workspace until `until` (Retry-After)."""
    row = session.get(WorkspacePacing, workspace_id, with_for_update=True)
    if row is None:
        session.add(
            WorkspacePacing(workspace_id=workspace_id, tokens=0, refilled_at=until, paused_until=until)
        )
    elif row.paused_until is None or row.paused_until < until:
        row.paused_until = until


def mark_sent(session: Session, *, delivery_id: int, owner: str, now: dt.datetime) -> None:
    """Written before the HTTP call: if we crash mid-post, the row is in doubt, not pending."""
    session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.lease_owner == owner)
        .values(state=DeliveryState.IN_DOUBT, sent_at=now)
    )


def finish(
    session: Session,
    *,
    delivery_id: int,
    owner: str,
    state: DeliveryState,
    now: dt.datetime,
    next_attempt_at: dt.datetime | None = None,
    error_code: str | None = None,
    parked_reason: str | None = None,
    slack_ts: str | None = None,
    thread_ts: str | None = None,
    message_enc: str | None = None,
) -> bool:
    values: dict[str, object] = {
        "state": state,
        "lease_owner": None,
        "lease_expires_at": None,
        "last_error_code": error_code,
        "parked_reason": parked_reason,
    }
    if next_attempt_at is not None:
        values["next_attempt_at"] = next_attempt_at
    if slack_ts is not None:
        values.update(slack_ts=slack_ts, thread_ts=thread_ts, delivered_at=now)
    if message_enc is not None:
        values["message_enc"] = message_enc
    result = session.execute(
        update(Delivery).where(Delivery.id == delivery_id, Delivery.lease_owner == owner).values(**values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def set_permalink(session: Session, *, delivery_id: int, permalink: str) -> None:
    session.execute(update(Delivery).where(Delivery.id == delivery_id).values(permalink=permalink[:300]))


def find_thread(
    session: Session, *, workspace_id: int, channel_id: str, kind: str, object_id: str
) -> str | None:
    return session.scalar(
        select(SlackThread.card_ts).where(
            SlackThread.workspace_id == workspace_id,
            SlackThread.channel_id == channel_id,
            SlackThread.object_kind == kind,
            SlackThread.object_id == object_id,
        )
    )


def add_thread(
    session: Session,
    *,
    workspace_id: int,
    channel_id: str,
    kind: str,
    object_id: str,
    card_ts: str,
    connection_id: int,
    now: dt.datetime,
) -> None:
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    session.execute(
        insert(SlackThread)
        .values(
            workspace_id=workspace_id,
            channel_id=channel_id,
            object_kind=kind,
            object_id=object_id,
            card_ts=card_ts,
            connection_id=connection_id,
            created_at=now,
        )
        .on_conflict_do_nothing()
    )


def requeue_parked(session: Session, *, workspace_id: int, channel_id: str | None, now: dt.datetime) -> int:
    """A person fixed something: parked deliveries of the channel (or workspace) go again now."""
    condition = [Delivery.workspace_id == workspace_id, Delivery.state == DeliveryState.PARKED]
    if channel_id is not None:
        condition.append(Delivery.channel_id == channel_id)
    result = session.execute(
        update(Delivery)
        .where(*condition)
        .values(state=DeliveryState.PENDING, next_attempt_at=now, parked_reason=None, attempts=0)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def has_due(session: Session, *, now: dt.datetime) -> bool:
    return (
        session.scalar(
            select(Delivery.id)
            .where(
                Delivery.state.in_((DeliveryState.PENDING, DeliveryState.IN_DOUBT)),
                Delivery.next_attempt_at <= now,
            )
            .limit(1)
        )
        is not None
    )
