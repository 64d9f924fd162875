"""The delivery engine: claims due deliveries, posts them, and records what happened.

Posts go out at most once per second per channel and within a workspace budget (storage.outbox
decides who may post), channels in parallel. Before each HTTP call the delivery is marked in
doubt, so a crash mid-post is reconciled (its metadata looked up in the channel) instead of
posted twice. Every Slack answer is classified by connector.deliver.errors.
"""

from __future__ import annotations

import datetime as dt
import http.client
import logging
import random
import urllib.error
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from connector import metrics
from connector.backoff import retry_delay
from connector.clock import Clock
from connector.deliver.errors import Outcome, Scope, classify, http_status_code, human_reason
from connector.events import ObjectKind
from connector.freshbooks.models import (
    Bill,
    FreshBooksObject,
    Invoice,
    ObjectParseError,
    Payment,
    parse_object,
)
from connector.notify import Notifier
from connector.process import worker_id
from connector.render import Message, RenderContext, render, render_card
from storage import alerts, outbox
from storage.crypto import Cipher
from storage.db import Database
from storage.models import Delivery, DeliveryState, Event, FreshBooksConnection, Workspace
from storage.outbox import Claim

log = logging.getLogger(__name__)

LEASE = dt.timedelta(seconds=60)
IN_DOUBT_RECHECK = dt.timedelta(seconds=10)
BROADCAST = frozenset({"invoice.paid", "bill.paid"})


@dataclass(frozen=True, slots=True)
class Prepared:
    """Everything needed to post one delivery, read in one short transaction."""

    team_id: str
    connection_id: int
    account_id: str
    event_name: str
    kind: ObjectKind
    obj: FreshBooksObject | None
    thread_object: tuple[ObjectKind, str] | None  # the invoice or bill whose thread this belongs in
    card_ts: str | None


def thread_object(
    kind: ObjectKind, obj: FreshBooksObject | None, object_id: str
) -> tuple[ObjectKind, str] | None:
    """Which card an event belongs under: invoices and bills have cards; payments join their invoice's."""
    if kind in (ObjectKind.INVOICE, ObjectKind.BILL):
        return kind, object_id
    if isinstance(obj, Payment) and obj.invoice_id is not None:
        return ObjectKind.INVOICE, str(obj.invoice_id)
    return None


def _connection_error_outcome(exc: BaseException) -> str:
    """A refused connection never reached Slack (retry); anything after sending is in doubt."""
    reason = getattr(exc, "reason", None)
    if isinstance(exc, ConnectionRefusedError) or isinstance(reason, ConnectionRefusedError):
        return "http_503"
    return "timeout" if isinstance(exc, TimeoutError) else "connection_dropped"


class DeliveryEngine:
    def __init__(
        self,
        *,
        db: Database,
        cipher: Cipher,
        client_for_team: Callable[[str], WebClient | None],
        notifier: Notifier,
        clock: Clock,
        senders: int = 8,
    ) -> None:
        self._db = db
        self._cipher = cipher
        self._client_for_team = client_for_team
        self._notifier = notifier
        self._clock = clock
        self._owner = worker_id()
        self._pool = ThreadPoolExecutor(max_workers=senders, thread_name_prefix="fbslack-send")
        self._senders = senders

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def step(self) -> int:
        """One loop step: post what may go now. Non-zero also when posts are due but held back by
        pacing, so the loop comes back in a moment instead of idling."""
        posted = self.run_once()
        if posted:
            return posted
        with self._db.read() as session:
            return 1 if outbox.has_due(session, now=self._clock()) else 0

    def run_once(self) -> int:
        """Claim what may be posted now (one per channel), post in parallel; returns how many."""
        with self._db.session() as session:
            claims = outbox.claim_due(
                session, owner=self._owner, now=self._clock(), lease=LEASE, limit=self._senders * 4
            )
        if claims:
            list(self._pool.map(self._deliver, claims))
        return len(claims)

    # -- one delivery ------------------------------------------------------------------------------

    def _deliver(self, claim: Claim) -> None:
        context = {"delivery_id": claim.delivery_id, "event_id": claim.event_id, "channel": claim.channel_id}
        try:
            self._attempt(claim)
        except Exception:
            # A bug here must not lose the delivery: it stays leased and comes back when the lease ends.
            log.exception("delivery attempt crashed", extra={"context": context})
        finally:
            with self._db.session() as session:
                outbox.release_channel(
                    session, workspace_id=claim.workspace_id, channel_id=claim.channel_id, now=self._clock()
                )

    def _prepare(self, claim: Claim) -> Prepared:
        with self._db.read() as session:
            event = session.get_one(Event, claim.event_id)
            connection = session.get_one(FreshBooksConnection, event.connection_id)
            team_id = session.get_one(Workspace, claim.workspace_id).slack_team_id
            kind = ObjectKind(event.object_kind)
            raw = self._cipher.decrypt_json(event.object_enc) if event.object_enc else None
            try:
                obj = parse_object(kind, raw) if raw is not None else None
            except ObjectParseError:
                obj = None
            target = thread_object(kind, obj, event.object_id)
            card_ts = (
                outbox.find_thread(
                    session,
                    workspace_id=claim.workspace_id,
                    channel_id=claim.channel_id,
                    kind=target[0],
                    object_id=target[1],
                )
                if target
                else None
            )
            return Prepared(
                team_id=team_id,
                connection_id=connection.id,
                account_id=connection.account_id,
                event_name=event.name,
                kind=kind,
                obj=obj,
                thread_object=target,
                card_ts=card_ts,
            )

    def _attempt(self, claim: Claim) -> None:
        prepared = self._prepare(claim)
        client = self._client_for_team(prepared.team_id)
        if client is None:
            self._park(claim, "not_authed", Scope.WORKSPACE, prepared.team_id)
            return
        if claim.state == DeliveryState.IN_DOUBT:
            found = self._find_posted(client, claim, prepared)
            if found is None:
                return  # could not look (history rate-limited): handled, try later
            if isinstance(found, str):
                self._delivered(claim, prepared, client, found, message=None, reconciled=True)
                return
        message = render(
            prepared.event_name,
            prepared.obj,
            RenderContext(account_id=prepared.account_id, delivery_key=claim.delivery_key),
        )
        with self._db.session() as session:
            outbox.mark_sent(session, delivery_id=claim.delivery_id, owner=self._owner, now=self._clock())
        try:
            response = client.chat_postMessage(
                channel=claim.channel_id,
                text=message.text,
                blocks=message.blocks,
                metadata=message.metadata,
                unfurl_links=message.unfurl_links,
                unfurl_media=message.unfurl_media,
                thread_ts=prepared.card_ts,
                reply_broadcast=bool(prepared.card_ts and prepared.event_name in BROADCAST),
            )
        except SlackApiError as exc:
            self._failed(claim, prepared, client, exc)
            return
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as exc:
            self._outcome(claim, prepared, client, _connection_error_outcome(exc), retry_after=None)
            return
        self._delivered(claim, prepared, client, str(response["ts"]), message=message, reconciled=False)

    # -- outcomes ----------------------------------------------------------------------------------

    def _delivered(
        self,
        claim: Claim,
        prepared: Prepared,
        client: WebClient,
        ts: str,
        *,
        message: Message | None,
        reconciled: bool,
    ) -> None:
        now = self._clock()
        with self._db.session() as session:
            outbox.finish(
                session,
                delivery_id=claim.delivery_id,
                owner=self._owner,
                state=DeliveryState.DELIVERED,
                now=now,
                slack_ts=ts,
                thread_ts=prepared.card_ts,
                message_enc=self._cipher.encrypt_json({"text": message.text, "blocks": message.blocks})
                if message
                else None,
            )
            if (
                prepared.card_ts is None
                and prepared.thread_object
                and prepared.kind == prepared.thread_object[0]
            ):
                # The first message about an invoice or bill in this channel becomes its card.
                outbox.add_thread(
                    session,
                    workspace_id=claim.workspace_id,
                    channel_id=claim.channel_id,
                    kind=prepared.thread_object[0],
                    object_id=prepared.thread_object[1],
                    card_ts=ts,
                    connection_id=prepared.connection_id,
                    now=now,
                )
        metrics.DELIVERIES.labels(outcome="reconciled" if reconciled else "delivered").inc()
        if prepared.card_ts:
            self._refresh_card(claim, prepared, client)
        try:
            permalink = client.chat_getPermalink(channel=claim.channel_id, message_ts=ts)["permalink"]
        except SlackApiError:
            return  # a nicety for the audit trail, not worth a retry
        with self._db.session() as session:
            outbox.set_permalink(session, delivery_id=claim.delivery_id, permalink=str(permalink))

    def _refresh_card(self, claim: Claim, prepared: Prepared, client: WebClient) -> None:
        """Show the current status and balance on the thread's card."""
        current: Invoice | Bill | None = None
        if isinstance(prepared.obj, Invoice | Bill):
            current = prepared.obj
        elif isinstance(prepared.obj, Payment) and prepared.obj.invoice is not None:
            current = prepared.obj.invoice
        if current is None or prepared.card_ts is None:
            return
        card = render_card(
            current, RenderContext(account_id=prepared.account_id, delivery_key=claim.delivery_key)
        )
        try:
            # No metadata argument: the card keeps the metadata of the delivery that created it.
            client.chat_update(
                channel=claim.channel_id, ts=prepared.card_ts, text=card.text, blocks=card.blocks
            )
        except SlackApiError as exc:
            log.warning(
                "card update failed: %s",
                exc.response.get("error"),
                extra={"context": {"delivery_id": claim.delivery_id}},
            )

    def _failed(self, claim: Claim, prepared: Prepared, client: WebClient, exc: SlackApiError) -> None:
        status = exc.response.status_code
        code = str(exc.response.get("error") or "") if isinstance(exc.response.data, dict) else ""
        code = code or http_status_code(status) or f"http_{status}"
        retry_after = None
        if status == 429:
            try:
                retry_after = float(exc.response.headers.get("Retry-After", "1"))
            except ValueError:
                retry_after = 1.0
        self._outcome(claim, prepared, client, code, retry_after=retry_after)

    def _outcome(
        self, claim: Claim, prepared: Prepared, client: WebClient, code: str, *, retry_after: float | None
    ) -> None:
        now = self._clock()
        context = {"delivery_id": claim.delivery_id, "channel": claim.channel_id, "error": code}
        classification = classify(code)
        metrics.DELIVERIES.labels(outcome=classification.outcome).inc()
        if not classification.known:
            log.error("unknown Slack error %r: parked for a person", code, extra={"context": context})
        if code == "not_in_channel" and self._join(client, claim.channel_id):
            self._finish(
                claim, DeliveryState.PENDING, now, next_attempt_at=now, error_code=code, attempts_back=True
            )
            return
        if classification.outcome is Outcome.RETRY:
            if retry_after is not None:
                metrics.SLACK_RATE_LIMITED.inc()
                until = now + dt.timedelta(seconds=retry_after)
                with self._db.session() as session:
                    outbox.pause_workspace(session, workspace_id=claim.workspace_id, until=until)
                self._finish(
                    claim,
                    DeliveryState.PENDING,
                    now,
                    next_attempt_at=until,
                    error_code=code,
                    attempts_back=True,
                )
                return
            self._retry(claim, DeliveryState.PENDING, now, code)
        elif classification.outcome is Outcome.IN_DOUBT:
            self._finish(
                claim, DeliveryState.IN_DOUBT, now, next_attempt_at=now + IN_DOUBT_RECHECK, error_code=code
            )
        elif classification.outcome is Outcome.NEEDS_PERSON:
            self._park(claim, code, classification.scope or Scope.CHANNEL, prepared.team_id)
        else:
            log.error("Slack refused our message as malformed (%s): a bug", code, extra={"context": context})
            self._finish(claim, DeliveryState.FAILED, now, error_code=code)

    def _retry(self, claim: Claim, state: DeliveryState, now: dt.datetime, code: str) -> None:
        delay = retry_delay(claim.attempts, random.random())  # noqa: S311 - jitter
        if delay is None:
            self._park(
                claim, code, None, None, reason=f"still failing after {claim.attempts} attempts ({code})"
            )
            return
        self._finish(claim, state, now, next_attempt_at=now + delay, error_code=code)

    def _finish(
        self,
        claim: Claim,
        state: DeliveryState,
        now: dt.datetime,
        *,
        next_attempt_at: dt.datetime | None = None,
        error_code: str | None = None,
        attempts_back: bool = False,
        parked_reason: str | None = None,
    ) -> None:
        with self._db.session() as session:
            outbox.finish(
                session,
                delivery_id=claim.delivery_id,
                owner=self._owner,
                state=state,
                now=now,
                next_attempt_at=next_attempt_at,
                error_code=error_code,
                parked_reason=parked_reason,
            )
            if attempts_back:  # a rate limit or a fixed membership is not a failed attempt
                delivery = session.get_one(Delivery, claim.delivery_id)
                delivery.attempts = max(0, delivery.attempts - 1)

    def _park(
        self, claim: Claim, code: str, scope: Scope | None, team_id: str | None, *, reason: str | None = None
    ) -> None:
        now = self._clock()
        self._finish(claim, DeliveryState.PARKED, now, error_code=code, parked_reason=code)
        cause = code if scope is Scope.WORKSPACE else f"{code}:{claim.channel_id}"
        with self._db.session() as session:
            if scope is Scope.WORKSPACE:
                session.get_one(Workspace, claim.workspace_id).suspended_reason = code
            first = alerts.open_alert(session, workspace_id=claim.workspace_id, cause=cause, now=now)
            installer = alerts.installer_of(session, claim.workspace_id)
        log.warning("delivery parked: %s", code, extra={"context": {"delivery_id": claim.delivery_id}})
        if first and installer and team_id and scope is not Scope.WORKSPACE:
            # Told once per cause. A workspace-wide auth failure cannot be told through Slack at all.
            where = f"<#{claim.channel_id}>"
            self._notifier.tell_user(
                team_id=team_id,
                user_id=installer,
                text=f":warning: FreshBooks messages for {where} are on hold: "
                f"{reason or human_reason(code)}. They will be sent as soon as this is fixed.",
            )

    def _join(self, client: WebClient, channel_id: str) -> bool:
        """not_in_channel on a public channel: join it (channels:join) and post again at once."""
        try:
            client.conversations_join(channel=channel_id)
        except SlackApiError as exc:
            log.info("cannot join channel: %s", exc.response.get("error"))
            return False
        return True

    # -- reconciliation ----------------------------------------------------------------------------

    def _find_posted(
        self, client: WebClient, claim: Claim, prepared: Prepared
    ) -> str | Literal[False] | None:
        """Look for our delivery key in the channel (or thread). ts if found, False if not, None if
        we could not look now."""
        sent = claim.sent_at or self._clock()
        oldest = f"{(sent - dt.timedelta(seconds=5)).timestamp():.6f}"
        try:
            if prepared.card_ts:
                answer = client.conversations_replies(
                    channel=claim.channel_id,
                    ts=prepared.card_ts,
                    oldest=oldest,
                    include_all_metadata=True,
                    limit=200,
                )
            else:
                answer = client.conversations_history(
                    channel=claim.channel_id,
                    oldest=oldest,
                    inclusive=True,
                    include_all_metadata=True,
                    limit=200,
                )
        except SlackApiError as exc:
            code = str(exc.response.get("error") or http_status_code(exc.response.status_code) or "")
            self._outcome(claim, prepared, client, code or "http_500", retry_after=None)
            return None
        for message in answer.get("messages") or []:
            payload = (message.get("metadata") or {}).get("event_payload") or {}
            if payload.get("delivery_key") == claim.delivery_key:
                return str(message["ts"])
        return False
