"""The delivery engine: claims due deliveries, posts them, and records what happened.

Posts go out at most once per second per channel and within a workspace budget (storage.outbox
decides who may post), channels in parallel. Before each HTTP call the delivery is marked in
doubt, so a crash mid-post is reconciled (its metadata looked up in the channel) instead of
posted twice. Every Slack answer is classified by connector.pipeline.deliver.errors.

A delivery leaves the in-doubt state only on evidence: found in the channel (delivered), not
found (posted again), or refused by Slack (not posted). A failed search leaves it in doubt,
even when it must wait for a person (storage.outbox keeps sent_at for the replay).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import heapq
import http.client
import logging
import random
import threading
import urllib.error
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy.orm import Session

from connector.domain.clock import Clock
from connector.domain.events import ObjectKind
from connector.domain.process import worker_id
from connector.freshbooks.models import (
    Bill,
    FreshBooksObject,
    Invoice,
    Payment,
    parse_invoice,
    parse_stored,
)
from connector.pipeline.backoff import retry_delay
from connector.pipeline.deliver.errors import Outcome, Scope, classify, error_code, human_reason
from connector.pipeline.render.cards import render_card
from connector.pipeline.render.formatting import Message, RenderContext
from connector.pipeline.render.messages import render
from connector.pipeline.render.summary import Item, item_line, paginate, render_summary
from connector.slack.notify import Notifier
from connector.telemetry import metrics
from storage import alerts, audit, events, inbox, outbox
from storage.crypto import Cipher
from storage.db import Database
from storage.models import Delivery, DeliveryState, Event, FreshBooksConnection, Workspace
from storage.outbox import Claim
from storage.simulated import is_simulated_id

log = logging.getLogger(__name__)

LEASE = dt.timedelta(seconds=60)
IN_DOUBT_RECHECK = dt.timedelta(seconds=10)
# The search window around sent_at: Slack stamps ts with its own clock, after a possibly slow answer.
RECONCILE_MARGIN = dt.timedelta(minutes=2)
RECONCILE_PAGES = 5
BROADCAST = frozenset({"invoice.paid", "bill.paid"})
# What a failed HTTP exchange raises (slack_sdk keeps these; we attach no retry handler).
CONNECTION_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)


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
    simulated: bool = False  # about an object `fbslack simulate` made up: the message says so
    received_at: dt.datetime | None = None  # the webhook's, for webhook-to-post latency
    shared_card: bool = False  # card_ts is a burst summary's: reply there, never rewrite it

    def item(self) -> Item:
        return Item(event_name=self.event_name, obj=self.obj, simulated=self.simulated)


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


def _slack_error(exc: SlackApiError) -> tuple[str, float | None]:
    """The error code of a refused call, and Retry-After (seconds) when it was rate limited."""
    status = int(exc.response.status_code)
    data = exc.response.data
    code = error_code(status, str(data.get("error") or "") if isinstance(data, dict) else None)
    if status != 429:
        return code, None
    try:
        return code, max(0.0, float(exc.response.headers.get("Retry-After", "1")))
    except ValueError:
        return code, 1.0


def _slack_ts(moment: dt.datetime) -> str:
    return f"{moment.timestamp():.6f}"


def _delivery_key_of(message: dict[str, Any]) -> object:
    return ((message.get("metadata") or {}).get("event_payload") or {}).get("delivery_key")


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
        # When the channels this process just posted to may take their next post (min-heap).
        self._frees: list[dt.datetime] = []
        self._frees_lock = threading.Lock()

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

    def seconds_until_a_channel_frees(self) -> float | None:
        """How long until a channel this process posted to may take its next post (the delivery
        loop wakes then), or None if none is waiting. Another process's posts are not known here:
        the loop's own polling finds those."""
        now = self._clock()
        with self._frees_lock:
            while self._frees and self._frees[0] <= now:
                heapq.heappop(self._frees)
            return (self._frees[0] - now).total_seconds() if self._frees else None

    def resume_workspaces(self) -> int:
        """A reinstall or a new token: workspaces suspended for auth errors whose token works again
        resume, and what was parked for them is replayed. Returns how many resumed."""
        with self._db.read() as session:
            suspended = outbox.suspended_workspaces(session)
        resumed = 0
        for workspace_id, team_id in suspended:
            client = self._client_for_team(team_id)
            if client is None:
                continue
            try:
                client.auth_test()
            except (SlackApiError, OSError):
                continue  # still refused: stays suspended
            now = self._clock()
            with self._db.session() as session:
                outbox.lift_suspension(session, workspace_id=workspace_id)
                alerts.resolve(session, workspace_id=workspace_id, now=now)
                outbox.requeue_parked(session, workspace_id=workspace_id, channel_id=None, now=now)
            log.info("workspace %d resumed: its Slack token works again", workspace_id)
            resumed += 1
        return resumed

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
        posted_at: dt.datetime | None = None
        try:
            posted_at = self._attempt(claim)
        except Exception:
            # A bug here must not lose the delivery: it stays leased and comes back when the lease ends.
            log.exception("delivery attempt crashed", extra={"context": context})
        finally:
            with self._db.session() as session:
                outbox.release_channel(
                    session,
                    workspace_id=claim.workspace_id,
                    channel_id=claim.channel_id,
                    now=self._clock(),
                    posted_at=posted_at,
                )
            if posted_at is not None:
                with self._frees_lock:
                    heapq.heappush(self._frees, posted_at + outbox.CHANNEL_GAP)

    def _prepare(self, claim: Claim) -> Prepared:
        with self._db.read() as session:
            return self._prepare_in(session, claim)

    def _prepare_in(self, session: Session, claim: Claim) -> Prepared:
        event = session.get_one(Event, claim.event_id)
        connection = session.get_one(FreshBooksConnection, event.connection_id)
        team_id = session.get_one(Workspace, claim.workspace_id).slack_team_id
        kind = ObjectKind(event.object_kind)
        raw = self._cipher.decrypt_json(event.object_enc) if event.object_enc else None
        obj = parse_stored(kind, raw)
        target = thread_object(kind, obj, event.object_id)
        card = (
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
        if card and card.shared and isinstance(obj, Payment) and obj.invoice is None and target:
            # Its thread is a summary of many invoices: the reply must name the one it is about.
            raw_invoice = events.latest_object(
                session, self._cipher, connection_id=connection.id, kind=target[0], object_id=target[1]
            )
            if raw_invoice is not None:
                obj = dataclasses.replace(obj, invoice=parse_invoice(raw_invoice))
        return Prepared(
            team_id=team_id,
            connection_id=connection.id,
            account_id=connection.account_id,
            event_name=event.name,
            kind=kind,
            obj=obj,
            thread_object=target,
            card_ts=card.ts if card else None,
            simulated=is_simulated_id(event.object_id),
            received_at=inbox.received_at(session, event.inbox_id) if event.inbox_id else None,
            shared_card=bool(card and card.shared),
        )

    def _attempt(self, claim: Claim) -> dt.datetime | None:
        """One try; if a post was sent, returns when Slack's answer (or the failure) came back.

        Channel pacing counts from then, not from when the post was sent: Slack judges the gap by
        when posts arrive, and a post can spend any time on its way (a thread descheduled on a
        busy machine, a slow network), arriving closer to the next one than they were sent. It
        arrived before its answer came back, so a gap counted from the answer holds at Slack."""
        if claim.batch:
            return self._attempt_batch(claim)
        prepared = self._prepare(claim)
        client = self._client_for_team(prepared.team_id)
        if client is None:
            self._park(claim, "not_authed", Scope.WORKSPACE, prepared.team_id, not_posted=False)
            return None
        if claim.state == DeliveryState.IN_DOUBT and not self._reconcile(client, claim, prepared):
            return None
        if claim.batch_key is not None:
            # Left alone in its page of a summary (a replay, or the last of a page): it goes out
            # as its own message now, under its own key.
            with self._db.session() as session:
                outbox.unbatch(session, delivery_id=claim.delivery_id)
            claim = dataclasses.replace(claim, batch_key=None)
        message = render(
            prepared.event_name,
            prepared.obj,
            RenderContext(
                account_id=prepared.account_id, delivery_key=claim.delivery_key, simulated=prepared.simulated
            ),
        )
        with self._db.session() as session:
            marked = outbox.mark_sent(
                session,
                delivery_id=claim.delivery_id,
                owner=self._owner,
                now=self._clock(),
                thread_ts=prepared.card_ts,
            )
        if not marked:
            log.warning("lease lost before posting", extra={"context": {"delivery_id": claim.delivery_id}})
            return None  # another process owns it now (and reconciles it if it must)
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
            answered_at = self._clock()
            code, retry_after = _slack_error(exc)
            self._outcome(claim, prepared, client, code, retry_after=retry_after)
            return answered_at
        except CONNECTION_ERRORS as exc:
            answered_at = self._clock()
            self._outcome(claim, prepared, client, _connection_error_outcome(exc), retry_after=None)
            return answered_at
        answered_at = self._clock()
        self._delivered(claim, prepared, client, str(response["ts"]), message=message, reconciled=False)
        return answered_at

    # -- summaries ---------------------------------------------------------------------------------

    def _attempt_batch(self, claim: Claim) -> dt.datetime | None:
        """Deliveries that go out in one message: a new burst summary, or a page of one again (in
        doubt, or a reply in its thread listing what the summary could not)."""
        with self._db.read() as session:
            prepared = {member.delivery_id: self._prepare_in(session, member) for member in claim.batch}
        head = prepared[claim.delivery_id]
        client = self._client_for_team(head.team_id)
        if client is None:
            self._park(claim, "not_authed", Scope.WORKSPACE, head.team_id, not_posted=False)
            return None
        if claim.batch_key is None:
            return self._post_new_summary(claim, prepared, client)
        if claim.state == DeliveryState.IN_DOUBT:
            searched, ts = self._search_in_doubt(client, claim, head)
            if not searched:
                return None
            if ts is not None:
                self._delivered_page(claim, prepared, client, ts, thread_ts=claim.thread_ts, reconciled=True)
                return None
        items = [prepared[member.delivery_id].item() for member in claim.batch]
        message = render_summary(
            items,
            total=items,
            ctx=RenderContext(account_id=head.account_id, delivery_key=claim.post_key),
            continued=claim.thread_ts is not None,
        )
        return self._post_page(claim, prepared, client, message, thread_ts=claim.thread_ts, overflow=[])

    def _post_new_summary(
        self, claim: Claim, prepared: dict[int, Prepared], client: WebClient
    ) -> dt.datetime | None:
        """A burst: at least `collapse_at` new messages wait for the channel. They go out as one
        summary listing what fits; the rest are listed in its thread, a page per later turn."""
        top = [m for m in claim.batch if prepared[m.delivery_id].card_ts is None]
        threaded = [m.delivery_id for m in claim.batch if prepared[m.delivery_id].card_ts is not None]
        if claim.collapse_at is None or len(top) < claim.collapse_at:
            # Mostly replies in existing threads: not a burst of new messages. The head goes
            # alone, the others on their own turns.
            with self._db.session() as session:
                outbox.release(
                    session, delivery_ids=[m.delivery_id for m in claim.batch[1:]], owner=self._owner
                )
            return self._attempt(dataclasses.replace(claim, batch=()))
        if threaded:  # each replies in its own object's thread, on its own turn
            with self._db.session() as session:
                outbox.release(session, delivery_ids=threaded, owner=self._owner)
        account_id = prepared[top[0].delivery_id].account_id
        total = [prepared[m.delivery_id].item() for m in top]
        with_verb = len({item.event_name for item in total}) > 1
        ctx = RenderContext(account_id=account_id, delivery_key=top[0].delivery_key)
        pages = [
            [top[i] for i in page]
            for page in paginate([item_line(i, ctx, with_verb=with_verb) for i in total])
        ]
        first = pages[0]
        message = render_summary(
            [prepared[m.delivery_id].item() for m in first], total=total, ctx=ctx, continued=False
        )
        page_claim = dataclasses.replace(first[0], batch=tuple(first), batch_key=first[0].delivery_key)
        return self._post_page(page_claim, prepared, client, message, thread_ts=None, overflow=pages[1:])

    def _post_page(
        self,
        claim: Claim,
        prepared: dict[int, Prepared],
        client: WebClient,
        message: Message,
        *,
        thread_ts: str | None,
        overflow: list[list[Claim]],
    ) -> dt.datetime | None:
        """Post one message of a summary for `claim.members` (marked in doubt first, under the
        message's key, like any post). `overflow`: the pages its thread will list once it lands;
        if it does not, they are given back to go out on their own (never posted, so never twice)."""
        head = prepared[claim.delivery_id]
        ids = [member.delivery_id for member in claim.members]
        spill = [member.delivery_id for page in overflow for member in page]
        with self._db.session() as session:
            marked = outbox.mark_batch_sent(
                session,
                delivery_ids=ids,
                owner=self._owner,
                now=self._clock(),
                batch_key=claim.post_key,
                thread_ts=thread_ts,
            )
            if not marked and spill:
                outbox.release(session, delivery_ids=spill, owner=self._owner, fresh=True)
        if not marked:
            log.warning("lease lost before posting", extra={"context": {"delivery_id": claim.delivery_id}})
            return None
        try:
            response = client.chat_postMessage(
                channel=claim.channel_id,
                text=message.text,
                blocks=message.blocks,
                metadata=message.metadata,
                unfurl_links=message.unfurl_links,
                unfurl_media=message.unfurl_media,
                thread_ts=thread_ts,
            )
        except (SlackApiError, *CONNECTION_ERRORS) as exc:
            answered_at = self._clock()
            if isinstance(exc, SlackApiError):
                code, retry_after = _slack_error(exc)
            else:
                code, retry_after = _connection_error_outcome(exc), None
            self._outcome(claim, head, client, code, retry_after=retry_after)
            if spill:
                with self._db.session() as session:
                    outbox.release(session, delivery_ids=spill, owner=self._owner, fresh=True)
            return answered_at
        answered_at = self._clock()
        ts = str(response["ts"])
        self._delivered_page(claim, prepared, client, ts, thread_ts=thread_ts, reconciled=False)
        if overflow:
            with self._db.session() as session:
                outbox.open_pages(
                    session,
                    pages=[[member.delivery_id for member in page] for page in overflow],
                    keys=[page[0].delivery_key for page in overflow],
                    summary_ts=ts,
                    owner=self._owner,
                    now=self._clock(),
                )
        return answered_at

    def _delivered_page(
        self,
        claim: Claim,
        prepared: dict[int, Prepared],
        client: WebClient,
        ts: str,
        *,
        thread_ts: str | None,
        reconciled: bool,
    ) -> None:
        """Every delivery the message lists is delivered, recording its ts (and the summary's, as
        thread_ts, for a reply in its thread), audited one by one. Each invoice or bill first
        posted there takes the summary's thread as its own (shared: never rewritten as its card)."""
        now = self._clock()
        summary_ts = thread_ts or ts
        outcome = "reconciled" if reconciled else "delivered"
        with self._db.session() as session:
            for member in claim.members:
                ready = prepared[member.delivery_id]
                outbox.finish(
                    session,
                    delivery_id=member.delivery_id,
                    owner=self._owner,
                    state=DeliveryState.DELIVERED,
                    now=now,
                    slack_ts=ts,
                    thread_ts=thread_ts,
                )
                self._audit(session, member, outcome, now, ts=ts)
                if ready.thread_object and ready.kind == ready.thread_object[0]:
                    outbox.add_thread(
                        session,
                        workspace_id=member.workspace_id,
                        channel_id=member.channel_id,
                        kind=ready.thread_object[0],
                        object_id=ready.thread_object[1],
                        card_ts=summary_ts,
                        connection_id=ready.connection_id,
                        now=now,
                        shared=True,
                    )
        for member in claim.members:
            metrics.DELIVERIES.labels(outcome=outcome).inc()
            received = prepared[member.delivery_id].received_at
            if received is not None and not reconciled:
                metrics.WEBHOOK_TO_POST_SECONDS.observe(max(0.0, (now - received).total_seconds()))
        try:
            permalink = client.chat_getPermalink(channel=claim.channel_id, message_ts=ts)["permalink"]
        except SlackApiError:
            return
        with self._db.session() as session:
            for member in claim.members:
                outbox.set_permalink(session, delivery_id=member.delivery_id, permalink=str(permalink))

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
            self._audit(session, claim, "reconciled" if reconciled else "delivered", now, ts=ts)
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
                    shared=claim.batch_key is not None,  # a summary found by the in-doubt check
                )
        metrics.DELIVERIES.labels(outcome="reconciled" if reconciled else "delivered").inc()
        if prepared.received_at is not None and not reconciled:
            metrics.WEBHOOK_TO_POST_SECONDS.observe(max(0.0, (now - prepared.received_at).total_seconds()))
        if prepared.card_ts and not prepared.shared_card:
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
            current,
            RenderContext(
                account_id=prepared.account_id, delivery_key=claim.delivery_key, simulated=prepared.simulated
            ),
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

    def _outcome(
        self,
        claim: Claim,
        prepared: Prepared,
        client: WebClient,
        code: str,
        *,
        retry_after: float | None,
        searching: bool = False,
    ) -> None:
        """Act on Slack's answer `code` to the post, or (searching) to the search for an in-doubt
        one: the post may still have landed then, so the delivery stays in doubt whatever follows."""
        now = self._clock()
        context = {"delivery_id": claim.delivery_id, "channel": claim.channel_id, "error": code}
        classification = classify(code)
        metrics.DELIVERIES.labels(outcome=classification.outcome).inc()
        if not classification.known:
            log.error("unknown Slack error %r: parked for a person", code, extra={"context": context})
        again = DeliveryState.IN_DOUBT if searching else DeliveryState.PENDING
        if code == "not_in_channel" and self._join(client, claim.channel_id):
            self._finish(claim, again, now, next_attempt_at=now, error_code=code, attempts_back=True)
        elif retry_after is not None:
            self._rate_limited(claim, now, code, retry_after, again, pause_posting=not searching)
        elif classification.outcome is Outcome.RETRY:
            self._retry(claim, again, now, code, prepared.team_id)
        elif classification.outcome is Outcome.IN_DOUBT:
            self._retry(claim, DeliveryState.IN_DOUBT, now, code, prepared.team_id)
        elif classification.outcome is Outcome.NEEDS_PERSON:
            scope = classification.scope or Scope.CHANNEL
            self._park(claim, code, scope, prepared.team_id, not_posted=not searching)
        else:
            log.error("Slack refused our request as malformed (%s): a bug", code, extra={"context": context})
            self._finish(claim, DeliveryState.FAILED, now, error_code=code, not_posted=not searching)

    def _rate_limited(
        self,
        claim: Claim,
        now: dt.datetime,
        code: str,
        retry_after: float,
        state: DeliveryState,
        *,
        pause_posting: bool,
    ) -> None:
        """HTTP 429: wait as long as Slack says. Not a failed attempt. A 429 on chat.postMessage
        holds the workspace's posts; one on a history search holds only this delivery."""
        metrics.SLACK_RATE_LIMITED.inc()
        until = now + dt.timedelta(seconds=retry_after)
        if pause_posting:
            with self._db.session() as session:
                outbox.pause_workspace(session, workspace_id=claim.workspace_id, until=until)
        self._finish(claim, state, now, next_attempt_at=until, error_code=code, attempts_back=True)

    def _retry(self, claim: Claim, state: DeliveryState, now: dt.datetime, code: str, team_id: str) -> None:
        """Back off (an in-doubt recheck waits at least IN_DOUBT_RECHECK); park after about a day."""
        delay = retry_delay(claim.attempts, random.random())  # noqa: S311 - jitter
        not_posted = state is DeliveryState.PENDING
        if delay is None:
            reason = f"still failing after {claim.attempts} attempts ({code})"
            self._park(claim, code, Scope.CHANNEL, team_id, not_posted=not_posted, reason=reason)
            return
        if state is DeliveryState.IN_DOUBT:
            delay = max(delay, IN_DOUBT_RECHECK)
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
        not_posted: bool = False,
    ) -> None:
        with self._db.session() as session:
            for member in claim.members:  # a summary's deliveries share its fate
                outbox.finish(
                    session,
                    delivery_id=member.delivery_id,
                    owner=self._owner,
                    state=state,
                    now=now,
                    next_attempt_at=next_attempt_at,
                    error_code=error_code,
                    parked_reason=parked_reason,
                    # Pending again always means this attempt's post was refused (it will be posted anew).
                    not_posted=not_posted or state is DeliveryState.PENDING,
                )
                self._audit(session, member, state, now, error=error_code)
                if attempts_back:  # a rate limit or a fixed membership is not a failed attempt
                    delivery = session.get_one(Delivery, member.delivery_id)
                    delivery.attempts = max(0, delivery.attempts - 1)

    def _audit(
        self,
        session: Session,
        claim: Claim,
        outcome: str,
        now: dt.datetime,
        *,
        ts: str | None = None,
        error: str | None = None,
    ) -> None:
        """Every attempt goes into the audit trail (details encrypted), whatever became of it."""
        audit.record(
            session,
            self._cipher,
            kind="delivery_attempt",
            outcome=str(outcome),
            now=now,
            workspace_id=claim.workspace_id,
            subject_id=str(claim.delivery_id),
            detail={"attempt": claim.attempts, "channel": claim.channel_id, "ts": ts, "error": error},
        )

    def _park(
        self,
        claim: Claim,
        code: str,
        scope: Scope,
        team_id: str,
        *,
        not_posted: bool,
        reason: str | None = None,
    ) -> None:
        """Wait for a person: tell the installer once per cause; a workspace problem suspends it."""
        now = self._clock()
        self._finish(
            claim, DeliveryState.PARKED, now, error_code=code, parked_reason=code, not_posted=not_posted
        )
        cause = code if scope is Scope.WORKSPACE else f"{code}:{claim.channel_id}"
        with self._db.session() as session:
            if scope is Scope.WORKSPACE:
                session.get_one(Workspace, claim.workspace_id).suspended_reason = code
            first = alerts.open_alert(session, workspace_id=claim.workspace_id, cause=cause, now=now)
            installer = alerts.installer_of(session, claim.workspace_id)
        log.warning("delivery parked: %s", code, extra={"context": {"delivery_id": claim.delivery_id}})
        if first and installer and scope is not Scope.WORKSPACE:
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

    def _reconcile(self, client: WebClient, claim: Claim, prepared: Prepared) -> bool:
        """An in-doubt delivery: if its post landed, record it. True only when it is known not to
        have landed, so it must be posted now; a failed search leaves it in doubt for later."""
        searched, ts = self._search_in_doubt(client, claim, prepared)
        if not searched:
            return False
        if ts is None:
            return True
        # Recorded in the thread it was posted in, which is not always today's card (the card
        # may have been posted while this one was in doubt).
        posted_in = dataclasses.replace(prepared, card_ts=claim.thread_ts)
        self._delivered(claim, posted_in, client, ts, message=None, reconciled=True)
        return False

    def _search_in_doubt(
        self, client: WebClient, claim: Claim, prepared: Prepared
    ) -> tuple[bool, str | None]:
        """(searched, ts of the post found). A search Slack or the network failed is recorded as
        the claim's outcome, which leaves it in doubt for later, and gives (False, None)."""
        try:
            return True, self._find_posted(client, claim)
        except SlackApiError as exc:
            code, retry_after = _slack_error(exc)
        except CONNECTION_ERRORS as exc:
            code, retry_after = _connection_error_outcome(exc), None
        self._outcome(claim, prepared, client, code, retry_after=retry_after, searching=True)
        return False, None

    def _find_posted(self, client: WebClient, claim: Claim) -> str | None:
        return find_posted(
            client,
            channel_id=claim.channel_id,
            delivery_key=claim.post_key,
            sent_at=claim.sent_at or self._clock(),
            thread_ts=claim.thread_ts,
        )


# -- shared with the other sender of Slack posts (connector.features.digest) ----------------------


def find_posted(
    client: WebClient, *, channel_id: str, delivery_key: str, sent_at: dt.datetime, thread_ts: str | None
) -> str | None:
    """The ts of the message carrying `delivery_key` in its metadata, searched in the channel (or
    the thread the attempt posted in) around `sent_at`; None if it is not there. Raises what the
    search raises (SlackApiError, a connection error): then nobody knows yet."""
    window: dict[str, Any] = {
        "channel": channel_id,
        "oldest": _slack_ts(sent_at - RECONCILE_MARGIN),
        "latest": _slack_ts(sent_at + LEASE + RECONCILE_MARGIN),
        "inclusive": True,
        "include_all_metadata": True,
        "limit": 200,
    }
    cursor: str | None = None
    for _ in range(RECONCILE_PAGES):
        if thread_ts:
            answer = client.conversations_replies(ts=thread_ts, cursor=cursor, **window)
        else:
            answer = client.conversations_history(cursor=cursor, **window)
        for message in answer.get("messages") or []:
            if _delivery_key_of(message) == delivery_key:
                return str(message["ts"])
        cursor = (answer.get("response_metadata") or {}).get("next_cursor") or None
        if cursor is None:
            return None
    log.warning("in-doubt search gave up after %d pages", RECONCILE_PAGES)
    return None


def failed_call(exc: SlackApiError | BaseException) -> tuple[str, float | None]:
    """The error code to classify (errors.classify) for a failed Slack call, and Retry-After in
    seconds when it was rate limited: a refused connection is `http_503` (never reached Slack),
    any other connection failure `timeout` or `connection_dropped` (it may have landed)."""
    if isinstance(exc, SlackApiError):
        return _slack_error(exc)
    return _connection_error_outcome(exc), None
