"""The outbox (deliveries), channel pacing and threads: the one place that queries these tables."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, case, func, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage.db import upsert_insert
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
    collapse_at: int | None = None,
    not_before: dt.datetime | None = None,
) -> bool:
    """Queue one post of an event to a channel; the unique (event, channel) makes repeats no-ops.
    `collapse_at`: it may go out in a summary when that many wait for the channel (None: never).
    `not_before`: held until then (the channel's quiet hours)."""
    statement = (
        upsert_insert(session, Delivery)
        .values(
            event_id=event_id,
            workspace_id=workspace_id,
            channel_id=channel_id,
            delivery_key=str(uuid.uuid4()),
            state=DeliveryState.PENDING,
            attempts=0,
            next_attempt_at=not_before or now,
            rule_ids=rule_ids,
            created_at=now,
            collapse_at=collapse_at,
        )
        .on_conflict_do_nothing()
        # Not rowcount: through SQLAlchemy and psycopg an INSERT reports -1 (truthy) even when the
        # conflict inserted nothing. RETURNING says for sure, on both databases.
        .returning(Delivery.id)
    )
    return session.scalar(statement) is not None


# -- claiming, with per-channel and per-workspace pacing ------------------------------------------

CHANNEL_GAP = dt.timedelta(milliseconds=1050)  # Slack: 1 message/second/channel; a hair more for jitter
WORKSPACE_RATE_PER_SECOND = 4.0  # 240/minute, below Slack's "several hundred per minute"
WORKSPACE_BURST = 20.0
# At most this many deliveries in one summary (its message and the replies in its thread).
MAX_BATCH = 500
# A burst still arriving (its newest delivery younger than this) is gathered a moment longer, so
# that it goes out as one summary rather than one per second of arrivals; never longer than
# BURST_MAX_HOLD after its oldest was queued. Fewer than `collapse_at` waiting are never held.
BURST_SETTLE = dt.timedelta(seconds=1)
BURST_MAX_HOLD = dt.timedelta(seconds=5)


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
    thread_ts: str | None  # the thread the previous attempt posted in (where to search for it)
    collapse_at: int | None = None  # may go out in a summary of at least this many (None: alone)
    batch_key: str | None = None  # listed in the summary (or summary reply) with this metadata key
    # A summary's deliveries, this one first, all leased together; empty for a post of its own.
    batch: tuple[Claim, ...] = ()

    @property
    def members(self) -> tuple[Claim, ...]:
        """The deliveries one post carries: the batch, or this one alone."""
        return self.batch or (self,)

    @property
    def post_key(self) -> str:
        """The metadata key of the message that carries this delivery."""
        return self.batch_key or self.delivery_key


def _due(now: dt.datetime) -> tuple[ColumnElement[bool], ...]:
    return (
        Delivery.state.in_((DeliveryState.PENDING, DeliveryState.IN_DOUBT)),
        Delivery.next_attempt_at <= now,
        or_(Delivery.lease_expires_at.is_(None), Delivery.lease_expires_at < now),
    )


def _channel_heads(session: Session, now: dt.datetime, limit: int) -> list[Delivery]:
    """The oldest due delivery of each channel that may post now, locked (SKIP LOCKED on PostgreSQL).

    One row per channel, so a channel with a thousand queued posts takes one place in the list,
    not a thousand, and never keeps a quiet channel out of it.
    """
    oldest = (
        select(func.min(Delivery.id)).where(*_due(now)).group_by(Delivery.workspace_id, Delivery.channel_id)
    )
    channel_free = or_(
        ChannelPacing.channel_id.is_(None),
        and_(
            ChannelPacing.next_post_at <= now,
            or_(ChannelPacing.busy_until.is_(None), ChannelPacing.busy_until < now),
        ),
    )
    return list(
        session.scalars(
            select(Delivery)
            .join(Workspace, Workspace.id == Delivery.workspace_id)
            .outerjoin(
                ChannelPacing,
                and_(
                    ChannelPacing.workspace_id == Delivery.workspace_id,
                    ChannelPacing.channel_id == Delivery.channel_id,
                ),
            )
            .outerjoin(WorkspacePacing, WorkspacePacing.workspace_id == Delivery.workspace_id)
            .where(
                Delivery.id.in_(oldest),
                *_due(now),  # again: PostgreSQL rechecks these on a row another claimer just changed
                Workspace.suspended_reason.is_(None),
                or_(WorkspacePacing.paused_until.is_(None), WorkspacePacing.paused_until <= now),
                channel_free,
            )
            .order_by(Delivery.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=Delivery)
        )
    )


def _take_channel(
    session: Session, workspace_id: int, channel_id: str, now: dt.datetime, busy: dt.timedelta
) -> bool:
    """Mark the channel busy (one post at a time) and paced (next post not before now + gap)."""
    session.execute(
        upsert_insert(session, ChannelPacing)
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


def take_channel(
    session: Session, *, workspace_id: int, channel_id: str, now: dt.datetime, busy: dt.timedelta
) -> bool:
    """A post from outside the outbox (a digest) takes the channel's turn like a delivery: one post
    at a time, a second apart, across processes. Give it back with release_channel."""
    return _take_channel(session, workspace_id, channel_id, now, busy)


def _lock_budget(session: Session, workspace_id: int, now: dt.datetime) -> WorkspacePacing:
    """The workspace's bucket, locked for this transaction (created full on first use)."""
    row = session.get(WorkspacePacing, workspace_id, with_for_update=True)
    if row is not None:
        return row
    try:
        with session.begin_nested():
            row = WorkspacePacing(workspace_id=workspace_id, tokens=WORKSPACE_BURST, refilled_at=now)
            session.add(row)
        return row
    except IntegrityError:  # another process created it first
        return session.get_one(WorkspacePacing, workspace_id, with_for_update=True)


def _can_spend(budget: WorkspacePacing, now: dt.datetime) -> bool:
    """Refill the bucket up to now; whether a post may go (not paused by a 429, a token left)."""
    if budget.paused_until is not None and budget.paused_until > now:
        return False
    if now > budget.refilled_at:
        elapsed = (now - budget.refilled_at).total_seconds()
        budget.tokens = min(WORKSPACE_BURST, float(budget.tokens) + elapsed * WORKSPACE_RATE_PER_SECOND)
        budget.refilled_at = now
    return budget.tokens >= 1


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
    heads = _channel_heads(session, now, limit * 4)
    # Buckets are locked before any channel row, in workspace order, so two claimers never wait
    # for each other in opposite orders (a deadlock on PostgreSQL).
    budgets = {ws: _lock_budget(session, ws, now) for ws in sorted({d.workspace_id for d in heads})}
    claims: list[Claim] = []
    for delivery in heads:
        budget = budgets[delivery.workspace_id]
        if not _can_spend(budget, now):
            continue
        if _gathering(session, delivery, now):
            continue
        if not _take_channel(session, delivery.workspace_id, delivery.channel_id, now, lease):
            continue  # another process took the channel a moment ago
        budget.tokens -= 1
        claims.append(
            _with_batch(session, _lease(delivery, owner=owner, now=now, lease=lease), delivery, now)
        )
        if len(claims) >= limit:
            break
    return claims


def _collapsible(head: Delivery, now: dt.datetime) -> tuple[ColumnElement[bool], ...]:
    """Fresh deliveries due for the head's channel that may go out in one summary with it."""
    return (
        Delivery.workspace_id == head.workspace_id,
        Delivery.channel_id == head.channel_id,
        *_due(now),
        Delivery.state == DeliveryState.PENDING,
        Delivery.batch_key.is_(None),
        Delivery.collapse_at.is_not(None),
    )


def _gathering(session: Session, head: Delivery, now: dt.datetime) -> bool:
    """Whether the channel's burst is still arriving and may wait a moment (see BURST_SETTLE)."""
    if head.batch_key is not None or head.collapse_at is None or head.state != DeliveryState.PENDING:
        return False
    if head.created_at <= now - BURST_MAX_HOLD:
        return False
    count, newest = session.execute(
        select(func.count(Delivery.id), func.max(Delivery.created_at)).where(*_collapsible(head, now))
    ).one()
    return bool(count >= head.collapse_at and newest is not None and newest > now - BURST_SETTLE)


def _with_batch(session: Session, claim: Claim, head: Delivery, now: dt.datetime) -> Claim:
    """The head of a channel, with the deliveries that go out in the same message, leased too.

    A delivery already listed in a summary (batch_key) comes with the rest of its page, whatever
    their next attempt says (they were finished together). A fresh one that may collapse comes
    with every other fresh collapsible delivery due for the channel when there are at least
    `collapse_at` of them (the head's): the engine turns them into one summary.
    """
    lease = head.lease_expires_at
    owner = head.lease_owner
    assert lease is not None and owner is not None
    same_channel = (Delivery.workspace_id == head.workspace_id, Delivery.channel_id == head.channel_id)
    free = or_(Delivery.lease_expires_at.is_(None), Delivery.lease_expires_at < now)
    if head.batch_key is not None:
        rows = session.scalars(
            select(Delivery)
            .where(
                *same_channel,
                Delivery.batch_key == head.batch_key,
                Delivery.id != head.id,
                Delivery.state.in_((DeliveryState.PENDING, DeliveryState.IN_DOUBT)),
                free,
            )
            .order_by(Delivery.id)
            .with_for_update(skip_locked=True)
        ).all()
    elif head.collapse_at is not None and head.state == DeliveryState.PENDING:
        rows = session.scalars(
            select(Delivery)
            .where(*_collapsible(head, now), Delivery.id != head.id)
            .order_by(Delivery.id)
            .limit(MAX_BATCH - 1)
            .with_for_update(skip_locked=True)
        ).all()
        if 1 + len(rows) < head.collapse_at:
            return claim
    else:
        return claim
    if not rows:
        return claim
    others = [_lease(row, owner=owner, now=now, lease=lease - now) for row in rows]
    return dataclasses.replace(claim, batch=(claim, *others))


def _lease(delivery: Delivery, *, owner: str, now: dt.datetime, lease: dt.timedelta) -> Claim:
    delivery.lease_owner = owner
    delivery.lease_expires_at = now + lease
    delivery.attempts += 1
    return Claim(
        delivery_id=delivery.id,
        event_id=delivery.event_id,
        workspace_id=delivery.workspace_id,
        channel_id=delivery.channel_id,
        delivery_key=delivery.delivery_key,
        state=delivery.state,
        attempts=delivery.attempts,
        sent_at=delivery.sent_at,
        thread_ts=delivery.thread_ts,
        collapse_at=delivery.collapse_at,
        batch_key=delivery.batch_key,
    )


def release_channel(
    session: Session,
    *,
    workspace_id: int,
    channel_id: str,
    now: dt.datetime,
    posted_at: dt.datetime | None = None,
) -> None:
    """The channel may take its next post. Pacing counts from when the post went out (not from the
    claim, which came earlier by a variable amount), so two posts never reach Slack < 1 s apart."""
    values: dict[str, object] = {"busy_until": None}
    if posted_at is not None:
        earliest = posted_at + CHANNEL_GAP
        values["next_post_at"] = case(
            (ChannelPacing.next_post_at < earliest, earliest), else_=ChannelPacing.next_post_at
        )
    session.execute(
        update(ChannelPacing)
        .where(ChannelPacing.workspace_id == workspace_id, ChannelPacing.channel_id == channel_id)
        .values(**values)
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


def mark_sent(
    session: Session, *, delivery_id: int, owner: str, now: dt.datetime, thread_ts: str | None
) -> bool:
    """Written before the HTTP call: if we crash mid-post, the row is in doubt, not pending.

    False when our lease ran out: then another process may be posting it, and we must not.
    """
    result = session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.lease_owner == owner, Delivery.lease_expires_at > now)
        .values(state=DeliveryState.IN_DOUBT, sent_at=now, thread_ts=thread_ts)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def mark_batch_sent(
    session: Session,
    *,
    delivery_ids: Sequence[int],
    owner: str,
    now: dt.datetime,
    batch_key: str,
    thread_ts: str | None,
) -> bool:
    """mark_sent for the deliveries one summary message lists, tagged with its metadata key.

    False when the lease of any of them ran out (they are then in doubt or another's)."""
    result = session.execute(
        update(Delivery)
        .where(Delivery.id.in_(delivery_ids), Delivery.lease_owner == owner, Delivery.lease_expires_at > now)
        .values(state=DeliveryState.IN_DOUBT, sent_at=now, thread_ts=thread_ts, batch_key=batch_key)
    )
    return int(result.rowcount) == len(delivery_ids)  # type: ignore[attr-defined]


def release(session: Session, *, delivery_ids: Sequence[int], owner: str, fresh: bool = False) -> None:
    """Give leased deliveries back untried (the claim is not counted as an attempt): they go out
    on their own turn. `fresh`: no longer tied to a summary either (it was never posted)."""
    values: dict[str, object] = {
        "lease_owner": None,
        "lease_expires_at": None,
        "attempts": case((Delivery.attempts > 0, Delivery.attempts - 1), else_=0),
    }
    if fresh:
        values.update(state=DeliveryState.PENDING, batch_key=None, sent_at=None, thread_ts=None)
    session.execute(
        update(Delivery).where(Delivery.id.in_(delivery_ids), Delivery.lease_owner == owner).values(**values)
    )


def open_pages(
    session: Session,
    *,
    pages: Sequence[Sequence[int]],
    keys: Sequence[str],
    summary_ts: str,
    owner: str,
    now: dt.datetime,
) -> None:
    """The summary landed: what it could not list goes out as replies in its thread, one page
    (one message, metadata key `keys[i]`) at a time, paced like any post."""
    for page, key in zip(pages, keys, strict=True):
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_(page), Delivery.lease_owner == owner)
            .values(
                state=DeliveryState.PENDING,
                batch_key=key,
                thread_ts=summary_ts,
                lease_owner=None,
                lease_expires_at=None,
                next_attempt_at=now,
                attempts=0,
            )
        )


def unbatch(session: Session, *, delivery_id: int) -> None:
    """A lone delivery left in a page of its own (a replay) goes out as its own message."""
    session.execute(update(Delivery).where(Delivery.id == delivery_id).values(batch_key=None))


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
    not_posted: bool = False,
) -> bool:
    """Record the attempt's outcome and end the lease (only if still ours).

    `not_posted`: Slack refused the post, so it did not land. sent_at is then cleared: it stays
    set only while a post may have landed, which is how a replayed parked delivery knows whether
    to look in the channel before posting (requeue_parked).
    """
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
    if not_posted:
        values["sent_at"] = None
    result = session.execute(
        update(Delivery).where(Delivery.id == delivery_id, Delivery.lease_owner == owner).values(**values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def set_permalink(session: Session, *, delivery_id: int, permalink: str) -> None:
    session.execute(update(Delivery).where(Delivery.id == delivery_id).values(permalink=permalink[:300]))


@dataclass(frozen=True, slots=True)
class Card:
    ts: str
    shared: bool  # a burst summary listing several objects, not this object's own card


def find_thread(
    session: Session, *, workspace_id: int, channel_id: str, kind: str, object_id: str
) -> Card | None:
    row = session.execute(
        select(SlackThread.card_ts, SlackThread.shared).where(
            SlackThread.workspace_id == workspace_id,
            SlackThread.channel_id == channel_id,
            SlackThread.object_kind == kind,
            SlackThread.object_id == object_id,
        )
    ).first()
    return None if row is None else Card(ts=row.card_ts, shared=bool(row.shared))


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
    shared: bool = False,
) -> None:
    session.execute(
        upsert_insert(session, SlackThread)
        .values(
            workspace_id=workspace_id,
            channel_id=channel_id,
            object_kind=kind,
            object_id=object_id,
            card_ts=card_ts,
            connection_id=connection_id,
            created_at=now,
            shared=shared,
        )
        .on_conflict_do_nothing()
    )


def requeue_parked(session: Session, *, workspace_id: int, channel_id: str | None, now: dt.datetime) -> int:
    """A person fixed something: parked deliveries of the channel (or workspace) go again now.

    One that may have been posted before it was parked (sent_at set) is looked for first.
    """
    condition = [Delivery.workspace_id == workspace_id, Delivery.state == DeliveryState.PARKED]
    if channel_id is not None:
        condition.append(Delivery.channel_id == channel_id)
    result = session.execute(
        update(Delivery)
        .where(*condition)
        .values(
            state=_replay_state(),
            next_attempt_at=now,
            parked_reason=None,
            attempts=0,
            # Never posted: free to join a new summary. Maybe posted: look for the one it was in.
            batch_key=case((Delivery.sent_at.is_(None), None), else_=Delivery.batch_key),
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def _replay_state() -> ColumnElement[str]:
    """Pending, or in doubt when the last attempt may have landed (sent_at is kept only then)."""
    return case((Delivery.sent_at.is_(None), DeliveryState.PENDING.value), else_=DeliveryState.IN_DOUBT.value)


def has_due(session: Session, *, now: dt.datetime) -> bool:
    """Whether something could be posted now or in a moment (pacing); a suspended workspace's
    deliveries wait for a person, so they do not keep the loop busy."""
    return (
        session.scalar(
            select(Delivery.id)
            .join(Workspace, Workspace.id == Delivery.workspace_id)
            .where(*_due(now), Workspace.suspended_reason.is_(None))
            .limit(1)
        )
        is not None
    )


def suspended_workspaces(session: Session) -> list[tuple[int, str]]:
    rows = session.execute(
        select(Workspace.id, Workspace.slack_team_id).where(Workspace.suspended_reason.is_not(None))
    ).all()
    return [(row.id, row.slack_team_id) for row in rows]


def lift_suspension(session: Session, *, workspace_id: int) -> None:
    session.execute(update(Workspace).where(Workspace.id == workspace_id).values(suspended_reason=None))


def suspend_workspace(session: Session, *, workspace_id: int, reason: str) -> int:
    """Slack told us the app was uninstalled or its tokens revoked: stop posting there and park
    what was waiting (not leased right now), so it shows as waiting for a person and is replayed on
    resume. Returns how many deliveries were parked."""
    session.execute(
        update(Workspace).where(Workspace.id == workspace_id).values(suspended_reason=reason[:64])
    )
    result = session.execute(
        update(Delivery)
        .where(
            Delivery.workspace_id == workspace_id,
            Delivery.state.in_((DeliveryState.PENDING, DeliveryState.IN_DOUBT)),
            Delivery.lease_owner.is_(None),
        )
        .values(state=DeliveryState.PARKED, parked_reason=reason[:64])
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


# -- replay by a person (/freshbooks replay, fbslack replay) ------------------------------------

REPLAYABLE = (DeliveryState.FAILED, DeliveryState.PARKED)


@dataclass(frozen=True, slots=True)
class DeliveryRef:
    id: int
    event_id: int
    channel_id: str
    state: str
    slack_ts: str | None
    permalink: str | None


def _find_ref(session: Session, workspace_id: int, *conditions: ColumnElement[bool]) -> DeliveryRef | None:
    row = session.execute(
        select(
            Delivery.id,
            Delivery.event_id,
            Delivery.channel_id,
            Delivery.state,
            Delivery.slack_ts,
            Delivery.permalink,
        ).where(Delivery.workspace_id == workspace_id, *conditions)
    ).first()
    return None if row is None else DeliveryRef(*row)


def delivery_ref(session: Session, *, workspace_id: int, delivery_id: int) -> DeliveryRef | None:
    return _find_ref(session, workspace_id, Delivery.id == delivery_id)


def delivery_for_event(
    session: Session, *, workspace_id: int, event_id: int, channel_id: str
) -> DeliveryRef | None:
    return _find_ref(session, workspace_id, Delivery.event_id == event_id, Delivery.channel_id == channel_id)


def requeue_for_replay(
    session: Session, *, workspace_id: int, delivery_id: int, allow_delivered: bool, now: dt.datetime
) -> bool:
    """Send one delivery again. A delivered one only with `allow_delivered` (a person confirmed it):
    it gets a new metadata key so the earlier message is never mistaken for the new post.
    Never touches a delivery that is queued or being posted right now."""
    values: dict[str, object] = {
        "state": _replay_state(),
        "next_attempt_at": now,
        "parked_reason": None,
        "attempts": 0,
        "collapse_at": None,  # a replay posts it alone, never in a summary
        "batch_key": case((Delivery.sent_at.is_(None), None), else_=Delivery.batch_key),
    }
    result = session.execute(
        update(Delivery)
        .where(
            Delivery.id == delivery_id,
            Delivery.workspace_id == workspace_id,
            Delivery.state.in_(REPLAYABLE),
        )
        .values(**values)
    )
    if result.rowcount:  # type: ignore[attr-defined]
        return True
    if not allow_delivered:
        return False
    again = session.execute(
        update(Delivery)
        .where(
            Delivery.id == delivery_id,
            Delivery.workspace_id == workspace_id,
            Delivery.state == DeliveryState.DELIVERED,
        )
        .values(
            **{**values, "state": DeliveryState.PENDING, "batch_key": None},
            delivery_key=str(uuid.uuid4()),
            sent_at=None,
            slack_ts=None,
            permalink=None,
            delivered_at=None,
        )
    )
    return bool(again.rowcount)  # type: ignore[attr-defined]


def _failed_since(
    workspace_id: int, since: dt.datetime | None, up_to_id: int | None
) -> list[ColumnElement[bool]]:
    conditions = [Delivery.workspace_id == workspace_id, Delivery.state.in_(REPLAYABLE)]
    if since is not None:
        conditions.append(Delivery.created_at >= since)
    if up_to_id is not None:
        conditions.append(Delivery.id <= up_to_id)
    return conditions


def count_failed(session: Session, *, workspace_id: int, since: dt.datetime | None) -> tuple[int, int | None]:
    """How many failed or parked deliveries there are, and the newest id (what a confirmation covers)."""
    row = session.execute(
        select(func.count(Delivery.id), func.max(Delivery.id)).where(
            *_failed_since(workspace_id, since, None)
        )
    ).one()
    return int(row[0]), row[1]


def failed_ids(
    session: Session,
    *,
    workspace_id: int,
    since: dt.datetime | None,
    up_to_id: int,
    after_id: int,
    limit: int,
) -> list[int]:
    """One page (by id) of the failed or parked deliveries a confirmed bulk replay covers."""
    return list(
        session.scalars(
            select(Delivery.id)
            .where(*_failed_since(workspace_id, since, up_to_id), Delivery.id > after_id)
            .order_by(Delivery.id)
            .limit(limit)
        )
    )


def backlog(session: Session) -> dict[DeliveryState, tuple[int, dt.datetime | None]]:
    """Deliveries not finished (pending, in doubt, parked): how many and the oldest created_at of
    each state, for /metrics. Only those states are read (ix_deliveries_due), never the delivered."""
    waiting = (DeliveryState.PENDING, DeliveryState.IN_DOUBT, DeliveryState.PARKED)
    rows = session.execute(
        select(Delivery.state, func.count(), func.min(Delivery.created_at))
        .where(Delivery.state.in_(waiting))
        .group_by(Delivery.state)
    ).all()
    found = {DeliveryState(state): (int(count), oldest) for state, count, oldest in rows}
    return {state: found.get(state, (0, None)) for state in waiting}


def delivered_event_ids(
    session: Session, *, workspace_id: int, channel_id: str, event_ids: Collection[int]
) -> set[int]:
    """Which of `event_ids` were posted to `channel_id` (a rule preview's "already posted there")."""
    found: set[int] = set()
    ids = sorted(event_ids)
    for start in range(0, len(ids), 500):  # bounded IN lists on both databases
        found.update(
            session.scalars(
                select(Delivery.event_id).where(
                    Delivery.workspace_id == workspace_id,
                    Delivery.channel_id == channel_id,
                    Delivery.state == DeliveryState.DELIVERED,
                    Delivery.event_id.in_(ids[start : start + 500]),
                )
            )
        )
    return found


def park_channel(session: Session, *, workspace_id: int, channel_id: str, reason: str) -> int:
    """Slack told us the channel was archived: what waits for it (and is not being posted right
    now) is parked until it is unarchived, instead of failing one attempt at a time."""
    result = session.execute(
        update(Delivery)
        .where(
            Delivery.workspace_id == workspace_id,
            Delivery.channel_id == channel_id,
            Delivery.state.in_((DeliveryState.PENDING, DeliveryState.IN_DOUBT)),
            Delivery.lease_owner.is_(None),
        )
        .values(state=DeliveryState.PARKED, parked_reason=reason[:64])
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


# A loose index scan of ix_deliveries_channel (workspace_id, channel_id, state): one index probe per
# distinct channel, on both databases, instead of reading a million rows for a handful of channels.
_CHANNELS_OF_WORKSPACE = text(
    """
    WITH RECURSIVE seen(channel_id) AS (
        SELECT MIN(channel_id) FROM deliveries WHERE workspace_id = :workspace
        UNION ALL
        SELECT (SELECT MIN(d.channel_id) FROM deliveries d
                WHERE d.workspace_id = :workspace AND d.channel_id > seen.channel_id)
        FROM seen WHERE seen.channel_id IS NOT NULL
    )
    SELECT channel_id FROM seen WHERE channel_id IS NOT NULL
    """
)


def channels_of_workspace(session: Session, *, workspace_id: int) -> set[str]:
    """Every channel the workspace has a delivery for (what the App Home may list)."""
    return set(session.scalars(_CHANNELS_OF_WORKSPACE, {"workspace": workspace_id}))
