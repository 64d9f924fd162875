"""Replay: send deliveries again, to their channel or another one. Shared by `/freshbooks replay`,
the App Home and `fbslack replay`.

The outbox stays unique per (event, channel), so a replay re-queues the existing row (or creates the
one row for a new channel); nothing here can make an event appear twice in a channel unless a
person explicitly confirmed re-posting something Slack already has. Every replay is audited with
who asked for it.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from connector.domain.clock import Clock
from connector.features.audit.search import AuditSyntaxError, parse_audit_query
from connector.features.rules.syntax import RouteSyntaxError, id_problem, tokenize
from storage import audit, connections, outbox
from storage.crypto import Cipher
from storage.db import Database
from storage.models import DeliveryState

REPLAY_USAGE = (
    "Usage: `/freshbooks replay DELIVERY-ID [to #channel]` or "
    "`/freshbooks replay failed [to #channel] [since DATE]`\n"
    "DELIVERY-ID is the `D123` that `/freshbooks audit` shows. `failed` covers failed and parked "
    "deliveries; DATE is `2026-11-01` (UTC) or `7d` (days ago). A bulk replay shows the count and asks "
    "before doing anything."
)


class ReplaySyntaxError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ReplayOne:
    delivery_id: int
    to_channel: str | None = None


@dataclass(frozen=True, slots=True)
class ReplayFailed:
    to_channel: str | None = None
    since: dt.date | None = None


ReplayCommand = ReplayOne | ReplayFailed

_ID = re.compile(r"[#Dd]?([0-9]{1,18})")
_CHANNEL = re.compile(r"<#([CG][A-Z0-9]+)(?:\|[^<>]*)?>")


def _problem(text: str) -> ReplaySyntaxError:
    return ReplaySyntaxError(f"{text}\n\n{REPLAY_USAGE}")


def parse_replay_command(text: str, *, today: dt.date) -> ReplayCommand:
    """The words after `replay`. Pure; errors name the offending word and show the usage."""
    try:
        words = [token.text for token in tokenize(text)]
    except RouteSyntaxError:
        raise _problem("A quote is missing its closing quote.") from None
    if not words:
        raise _problem("Say what to replay.")
    first, rest = words[0], words[1:]
    to_channel: str | None = None
    since: dt.date | None = None
    while rest:
        option = rest.pop(0).lower()
        if option == "to" and rest:
            found = _CHANNEL.fullmatch(rest.pop(0))
            if not found:
                raise _problem("After `to`, pick the channel with `#` so Slack links it.")
            to_channel = found.group(1)
        elif option.startswith("since:") or (option == "since" and rest):
            value = option.removeprefix("since:") if option != "since" else rest.pop(0)
            try:
                since = parse_audit_query(f"since:{value}", today=today).since
            except AuditSyntaxError:
                raise _problem(f"`{value[:20]}` is not a date: write `2026-11-01` or `7d`.") from None
        else:
            raise _problem(f"`{option[:40]}` is not understood here.")
    if first.lower() in ("failed", "parked"):
        return ReplayFailed(to_channel=to_channel, since=since)
    found_id = _ID.fullmatch(first)
    if not found_id:
        digits = first[1:] if first[:1] in ("#", "D", "d") else first
        if digits.isdigit():  # digits other than 0-9 ('²', '٣'), or too many for an id
            raise _problem(id_problem(digits, "a delivery id"))
        raise _problem(f"`{first[:40]}` is not a delivery id (like `D123`) or `failed`.")
    if since is not None:
        raise _problem("`since` goes with `replay failed`, not with one delivery.")
    return ReplayOne(delivery_id=int(found_id.group(1)), to_channel=to_channel)


class Outcome(enum.StrEnum):
    REQUEUED = "requeued"
    CREATED = "created"  # a new delivery of the event to another channel
    NEEDS_CONFIRMATION = "needs_confirmation"  # already delivered there: a person must confirm
    ALREADY_QUEUED = "already_queued"
    NOT_FOUND = "not_found"


@dataclass(frozen=True, slots=True)
class ReplayAnswer:
    outcome: Outcome
    delivery_id: int | None = None
    channel_id: str | None = None
    permalink: str | None = None


@dataclass(frozen=True, slots=True)
class BulkPlan:
    count: int
    up_to_id: int  # the confirmation covers exactly the deliveries counted, not newer ones
    since: dt.date | None
    to_channel: str | None


@dataclass(frozen=True, slots=True)
class BulkResult:
    requeued: int
    skipped: int  # already delivered (or queued) in the target channel


def _start_of(day: dt.date | None) -> dt.datetime | None:
    return None if day is None else dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


class ReplayService:
    def __init__(
        self,
        *,
        db: Database,
        cipher: Cipher,
        clock: Clock,
        on_requeued: Callable[[], None],
        batch_size: int = 200,
    ) -> None:
        self._db = db
        self._cipher = cipher
        self._clock = clock
        self._on_requeued = on_requeued
        self._batch = batch_size

    def replay_one(
        self, *, team_id: str, delivery_id: int, to_channel: str | None, confirmed: bool, actor: str
    ) -> ReplayAnswer:
        with self._db.session() as session:
            workspace_id = connections.workspace_of_team(session, team_id)
            if workspace_id is None:
                return ReplayAnswer(Outcome.NOT_FOUND)
            answer = self._one(
                session, workspace_id, delivery_id, to_channel=to_channel, confirmed=confirmed, actor=actor
            )
        if answer.outcome in (Outcome.REQUEUED, Outcome.CREATED):
            self._on_requeued()
        return answer

    def _one(
        self,
        session: Session,
        workspace_id: int,
        delivery_id: int,
        *,
        to_channel: str | None,
        confirmed: bool,
        actor: str,
    ) -> ReplayAnswer:
        now = self._clock()
        source = outbox.delivery_ref(session, workspace_id=workspace_id, delivery_id=delivery_id)
        if source is None:
            return ReplayAnswer(Outcome.NOT_FOUND)
        target = source
        if to_channel is not None and to_channel != source.channel_id:
            existing = outbox.delivery_for_event(
                session, workspace_id=workspace_id, event_id=source.event_id, channel_id=to_channel
            )
            if existing is None:
                outbox.add_delivery(
                    session,
                    event_id=source.event_id,
                    workspace_id=workspace_id,
                    channel_id=to_channel,
                    rule_ids=[],
                    now=now,
                )
                created = outbox.delivery_for_event(
                    session, workspace_id=workspace_id, event_id=source.event_id, channel_id=to_channel
                )
                assert created is not None
                self._audit(
                    session,
                    workspace_id=workspace_id,
                    delivery_id=created.id,
                    source=source,
                    channel_id=to_channel,
                    actor=actor,
                    outcome="created",
                )
                return ReplayAnswer(Outcome.CREATED, created.id, to_channel)
            target = existing
        if target.state in (DeliveryState.PENDING, DeliveryState.IN_DOUBT):
            return ReplayAnswer(Outcome.ALREADY_QUEUED, target.id, target.channel_id)
        if target.state == DeliveryState.DELIVERED and not confirmed:
            return ReplayAnswer(Outcome.NEEDS_CONFIRMATION, target.id, target.channel_id, target.permalink)
        if not outbox.requeue_for_replay(
            session, workspace_id=workspace_id, delivery_id=target.id, allow_delivered=confirmed, now=now
        ):
            return ReplayAnswer(Outcome.ALREADY_QUEUED, target.id, target.channel_id)
        self._audit(
            session,
            workspace_id=workspace_id,
            delivery_id=target.id,
            source=target,
            channel_id=target.channel_id,
            actor=actor,
            outcome="requeued",
        )
        return ReplayAnswer(Outcome.REQUEUED, target.id, target.channel_id)

    def _audit(
        self,
        session: Session,
        *,
        workspace_id: int,
        delivery_id: int,
        source: outbox.DeliveryRef,
        channel_id: str,
        actor: str,
        outcome: str,
    ) -> None:
        audit.record(
            session,
            self._cipher,
            kind="replay",
            outcome=outcome,
            now=self._clock(),
            workspace_id=workspace_id,
            subject_id=str(delivery_id),
            actor=actor[:64],
            detail={
                "from_delivery": source.id,
                "previous_state": source.state,
                "previous_ts": source.slack_ts,
                "channel": channel_id,
            },
        )

    def plan_failed(self, *, team_id: str, since: dt.date | None, to_channel: str | None) -> BulkPlan:
        with self._db.read() as session:
            workspace_id = connections.workspace_of_team(session, team_id)
            if workspace_id is None:
                return BulkPlan(0, 0, since, to_channel)
            count, newest = outbox.count_failed(session, workspace_id=workspace_id, since=_start_of(since))
        return BulkPlan(count, newest or 0, since, to_channel)

    def replay_failed(
        self, *, team_id: str, plan: BulkPlan, actor: str, progress: Callable[[int, int], None] | None = None
    ) -> BulkResult:
        """Re-queue what `plan` counted (ids up to plan.up_to_id still failed or parked), in batches."""
        requeued = skipped = 0
        after = 0
        while True:
            with self._db.session() as session:
                workspace_id = connections.workspace_of_team(session, team_id)
                if workspace_id is None:
                    break
                ids = outbox.failed_ids(
                    session,
                    workspace_id=workspace_id,
                    since=_start_of(plan.since),
                    up_to_id=plan.up_to_id,
                    after_id=after,
                    limit=self._batch,
                )
                for delivery_id in ids:
                    answer = self._one(
                        session,
                        workspace_id,
                        delivery_id,
                        to_channel=plan.to_channel,
                        confirmed=False,
                        actor=actor,
                    )
                    if answer.outcome in (Outcome.REQUEUED, Outcome.CREATED):
                        requeued += 1
                    else:
                        skipped += 1
            if not ids:
                break
            after = ids[-1]
            if progress is not None:
                progress(requeued + skipped, plan.count)
            self._on_requeued()
        return BulkResult(requeued, skipped)


def describe(answer: ReplayAnswer, asked_id: int, channel: Callable[[str], str]) -> str:
    """What happened, in one sentence without its full stop; `channel` formats a channel id
    (`<#C123>` in Slack, the bare id in a terminal). Shared by the slash command and the CLI."""
    where = channel(answer.channel_id) if answer.channel_id else "its channel"
    match answer.outcome:
        case Outcome.REQUEUED:
            return f"D{answer.delivery_id} is queued again for {where}"
        case Outcome.CREATED:
            return f"Queued the event of D{asked_id} for {where} (as D{answer.delivery_id})"
        case Outcome.ALREADY_QUEUED:
            return f"D{answer.delivery_id} is already waiting to go out to {where}; nothing to do"
        case Outcome.NEEDS_CONFIRMATION:
            return f"D{answer.delivery_id} was already delivered to {where}"
        case _:
            return f"There is no delivery D{asked_id} in this workspace"
