"""Finding what webhooks did not say: the reconciliation poll and the daily overdue scan.

FreshBooks does not promise delivery (reference §5): a webhook can be late, lost, or its callback
disabled. The poll lists what changed since the last poll and feeds any change no webhook
announced through the same recorder, so it is reported once. The overdue scan derives the one
event FreshBooks never sends at all: an invoice past its due date with money still owed.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import update

from connector.domain.clock import Clock
from connector.domain.events import ObjectKind
from connector.domain.process import worker_id
from connector.freshbooks.client import FreshBooksClient, FreshBooksError
from connector.freshbooks.models import (
    EASTERN,
    Bill,
    Invoice,
    ObjectParseError,
    VisState,
    parse_invoice,
    parse_object,
)
from connector.freshbooks.tokens import NoToken, TokenSource
from connector.pipeline.enrich.derive import is_overdue
from connector.pipeline.enrich.enrich import Enricher, change_marker
from connector.pipeline.stages import PermanentFailure, RetryLater
from connector.telemetry import metrics
from storage import connections, events, leases, objects
from storage.crypto import Cipher
from storage.db import Database
from storage.models import FreshBooksConnection

log = logging.getLogger(__name__)

# Defaults of RECONCILE_POLL_SECONDS and OVERDUE_SCAN_SECONDS (connector.domain.settings).
POLL_INTERVAL = dt.timedelta(minutes=10)
SCAN_INTERVAL = dt.timedelta(hours=24)
# Listing from a little before the last poll covers clock skew and objects committed late.
POLL_OVERLAP = dt.timedelta(minutes=30)
POLLED_KINDS = (ObjectKind.INVOICE, ObjectKind.PAYMENT, ObjectKind.BILL, ObjectKind.EXPENSE)


def lease_for(interval: dt.timedelta) -> dt.timedelta:
    """How long a periodic job's lease lasts: a little under its interval, so that a tick that
    comes a moment early (scheduler jitter, another host's timer) still finds it free. Pure."""
    return interval - min(interval / 20, dt.timedelta(minutes=5))


def poll_cutoff(*, watermark: dt.datetime | None, connected_at: dt.datetime) -> dt.datetime:
    """From when a poll reports changes: a little before the last poll began (changes committed
    late, clock skew; repeats are recognised when recorded), never before the connection was made,
    since what happened before it is not news. The first poll starts at the connect time. Pure."""
    if watermark is None:
        return connected_at
    return max(connected_at, watermark - POLL_OVERLAP)


@dataclass(frozen=True, slots=True)
class PolledChange:
    existed: bool  # created before the cutoff: a change to it is an update, even if new to us


def polled_change(kind: ObjectKind, raw: Mapping[str, object], cutoff: dt.datetime) -> PolledChange | None:
    """A listed object as a change to report, or None if it was last updated before `cutoff`. Pure.

    An object we cannot read is passed on, so that the recorder says what is wrong with it; one
    without an `updated` time is too (its version marker still keeps it from being reported twice).
    """
    try:
        obj = parse_object(kind, raw)
    except ObjectParseError:
        return PolledChange(existed=False)
    if obj.updated is not None and obj.updated < cutoff:
        return None
    # Invoices and bills say when they were created; payments and expenses do not.
    created = obj.created_at if isinstance(obj, Invoice | Bill) else None
    return PolledChange(existed=created is not None and created < cutoff)


def polled_event_name(kind: ObjectKind, raw: dict[str, object], known: bool) -> str:
    """Name a change found by polling. Pure."""
    if raw.get("vis_state") == VisState.DELETED:
        return f"{kind}.delete"
    return f"{kind}.update" if known else f"{kind}.create"


class Reconciler:
    def __init__(
        self,
        *,
        db: Database,
        cipher: Cipher,
        client: FreshBooksClient,
        tokens: TokenSource,
        enricher: Enricher,
        clock: Clock,
        poll_interval: dt.timedelta = POLL_INTERVAL,
        scan_interval: dt.timedelta = SCAN_INTERVAL,
    ) -> None:
        self._db = db
        self._cipher = cipher
        self._client = client
        self._tokens = tokens
        self._enricher = enricher
        self._clock = clock
        self._poll_lease = lease_for(poll_interval)
        self._scan_lease = lease_for(scan_interval)
        self._owner = worker_id()

    def _due(self, name: str, ttl: dt.timedelta) -> list[int]:
        """Active connections, if this process holds the job's lease for this interval."""
        with self._db.session() as session:
            if not leases.try_acquire(session, name=name, owner=self._owner, now=self._clock(), ttl=ttl):
                return []
            return connections.active_connection_ids(session)

    # -- the reconciliation poll ----------------------------------------------------------------

    def run_poll(self) -> int:
        """Poll every active connection, once per interval across processes; returns changes found."""
        found = 0
        for connection_id in self._due("reconcile-poll", self._poll_lease):
            try:
                found += self.poll(connection_id)
            except (FreshBooksError, NoToken, RetryLater) as exc:
                log.warning(
                    "reconciliation poll failed: %s", exc, extra={"context": {"connection_id": connection_id}}
                )
        return found

    def poll(self, connection_id: int) -> int:
        """Record each change made since the last poll (the first: since the connection was made)
        that no webhook reported; returns how many."""
        started = self._clock()
        with self._db.session() as session:
            connection = session.get_one(FreshBooksConnection, connection_id)
            watermark, account_id = connection.poll_watermark, connection.account_id
            connected_at = connection.created_at
        cutoff = poll_cutoff(watermark=watermark, connected_at=connected_at)
        day = cutoff.astimezone(EASTERN).date()

        def listed(kind: ObjectKind) -> list[dict[str, object]]:
            return self._tokens.call(
                connection_id,
                lambda token: self._client.list_updated_since(
                    token=token, account_id=account_id, kind=kind, day=day
                ),
            )

        found = 0
        for kind in POLLED_KINDS:
            for raw in listed(kind):
                # The list is by day: whatever changed earlier that day is not ours to report.
                change = polled_change(kind, raw, cutoff)
                if change is not None:
                    found += self._feed(connection_id, kind, raw, created_before_cutoff=change.existed)
        self._advance(connection_id, started)
        if found:
            log.info(
                "reconciliation poll found %d unannounced changes",
                found,
                extra={"context": {"connection_id": connection_id}},
            )
        return found

    def _feed(
        self, connection_id: int, kind: ObjectKind, raw: dict[str, object], *, created_before_cutoff: bool
    ) -> int:
        object_id = str(raw.get("id", ""))
        if not object_id:
            return 0
        marker = change_marker(raw)
        with self._db.session() as session:
            if events.change_recorded(
                session,
                connection_id=connection_id,
                object_kind=kind,
                object_id=object_id,
                object_updated=marker,
            ):
                return 0  # a webhook (or an earlier poll) already reported this version
            known = created_before_cutoff or (
                objects.get_state(
                    session, self._cipher, connection_id=connection_id, kind=kind, object_id=object_id
                )
                is not None
            )
        try:
            self._enricher.record(
                connection_id=connection_id,
                event_name=polled_event_name(kind, raw, known),
                kind=kind,
                object_id=object_id,
                raw=dict(raw),
                source="poll",
                inbox_id=None,
            )
        except PermanentFailure as exc:
            log.error(
                "polled object unreadable: %s", exc, extra={"context": {"connection_id": connection_id}}
            )
            return 0
        return 1

    def _advance(self, connection_id: int, to: dt.datetime) -> None:
        with self._db.session() as session:
            session.execute(
                update(FreshBooksConnection)
                .where(FreshBooksConnection.id == connection_id)
                .values(poll_watermark=to)
            )

    # -- the overdue scan -------------------------------------------------------------------------

    def run_overdue_scan(self) -> int:
        """Once per scan interval across processes: report invoices that went past due; returns how many."""
        found = 0
        for connection_id in self._due("overdue-scan", self._scan_lease):
            try:
                found += self.scan_overdue(connection_id)
            except (FreshBooksError, NoToken, RetryLater) as exc:
                log.warning(
                    "overdue scan failed: %s", exc, extra={"context": {"connection_id": connection_id}}
                )
        return found

    def scan_overdue(self, connection_id: int) -> int:
        """Invoices we know of that look overdue are fetched fresh and, if still open, reported once
        per due date (a new due date makes a new event)."""
        today = self._clock().astimezone(EASTERN).date()
        with self._db.session() as session:
            known = objects.states_of_kind(
                session, self._cipher, connection_id=connection_id, kind=ObjectKind.INVOICE
            )
        found = 0
        for raw in known:
            try:
                invoice = parse_invoice(raw)
            except ObjectParseError:
                continue
            if not is_overdue(invoice, today):
                continue
            fresh_raw = self._enricher.fetch(connection_id, ObjectKind.INVOICE, str(invoice.id))
            if fresh_raw is None:
                continue
            fresh = parse_invoice(fresh_raw)
            if is_overdue(fresh, today) and self._record_overdue(connection_id, fresh, fresh_raw):
                found += 1
        return found

    def _record_overdue(self, connection_id: int, invoice: Invoice, raw: dict[str, object]) -> bool:
        assert invoice.due_date is not None
        with self._db.session() as session:
            _, created = events.record_event(
                session,
                self._cipher,
                connection_id=connection_id,
                inbox_id=None,
                object_kind=ObjectKind.INVOICE,
                name="invoice.overdue",
                object_id=str(invoice.id),
                object_updated=f"due:{invoice.due_date.isoformat()}",
                obj=dict(raw),
                now=self._clock(),
                source="derived",
            )
        if created:
            metrics.EVENTS.labels(kind=ObjectKind.INVOICE, event="invoice.overdue", source="derived").inc()
        return created
