"""Enrich: fetch the object a webhook names, understand the change, record the events once.

FreshBooks webhooks carry IDs only, may arrive twice and out of order. The object is fetched
fresh and each event keyed on (connection, event name, object id, object's `updated`), so a
repeated delivery of the same change maps onto the event already recorded. The last known state
of each object is kept, to tell a material change from noise and to derive the events FreshBooks
never sends (invoice.paid, invoice.partially_paid, bill.paid).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from connector.domain.clock import Clock
from connector.domain.events import SUPPORTED_EVENTS, ObjectKind
from connector.freshbooks.client import ErrorKind, FreshBooksClient, FreshBooksError
from connector.freshbooks.models import (
    FreshBooksObject,
    Invoice,
    ObjectParseError,
    Payment,
    VisState,
    parse_object,
    parse_stored,
)
from connector.freshbooks.tokens import NoToken, TokenSource
from connector.pipeline.enrich.derive import derive, is_newer, is_notable
from connector.pipeline.stages import PermanentFailure, Processed, RetryLater
from connector.telemetry import metrics
from storage import connections, events, objects, simulated
from storage.crypto import Cipher
from storage.db import Database
from storage.inbox import InboxItem
from storage.models import InboxState

log = logging.getLogger(__name__)

# Marks an object FreshBooks no longer returns (a delete may answer 404 instead of vis_state 1).
GONE = "gone"


def change_marker(obj: Mapping[str, Any] | None) -> str:
    """The value that tells two versions of an object apart: its `updated` timestamp. Pure."""
    if obj is None:
        return GONE
    for key in ("updated", "updated_at"):
        value = obj.get(key)
        if value:
            return str(value)[:40]
    # No timestamp at all: fall back to the visible state so a repeat still matches itself.
    return f"vis{obj.get('vis_state', '')}"


class Enricher:
    """The pipeline handler for inbox rows, and the recorder the reconciliation poll reuses."""

    def __init__(
        self,
        *,
        db: Database,
        cipher: Cipher,
        client: FreshBooksClient,
        tokens: TokenSource,
        clock: Clock,
    ) -> None:
        self._db = db
        self._cipher = cipher
        self._client = client
        self._tokens = tokens
        self._clock = clock
        self._accounts: dict[int, str] = {}

    def __call__(self, item: InboxItem) -> Processed:
        kind = SUPPORTED_EVENTS.get(item.event_name)
        if kind is None:
            return Processed(InboxState.IGNORED)
        raw = self.fetch(item.connection_id, kind, item.object_id)
        if raw is None and not item.event_name.endswith(".delete"):
            # Gone before we could look: the delete webhook that follows reports it.
            log.info(
                "object already gone", extra={"context": {"inbox_id": item.id, "event": item.event_name}}
            )
            return Processed(InboxState.IGNORED, note="object no longer exists at FreshBooks")
        return self.record(
            connection_id=item.connection_id,
            event_name=item.event_name,
            kind=kind,
            object_id=item.object_id,
            raw=raw,
            source="simulated" if simulated.is_simulated_id(item.object_id) else "webhook",
            inbox_id=item.id,
        )

    def _account_id(self, connection_id: int) -> str:
        account_id = self._accounts.get(connection_id)  # never changes for a connection
        if account_id is None:
            with self._db.read() as session:
                account_id = connections.account_id(session, connection_id)
            self._accounts[connection_id] = account_id
        return account_id

    def fetch(self, connection_id: int, kind: ObjectKind, object_id: str) -> dict[str, Any] | None:
        """The object as FreshBooks has it now; None if it no longer exists."""
        if simulated.is_simulated_id(object_id):
            # `fbslack simulate` stored the object itself; FreshBooks has never heard of this id.
            with self._db.read() as session:
                return simulated.get_object(
                    session, self._cipher, connection_id=connection_id, kind=kind, object_id=object_id
                )
        account_id = self._account_id(connection_id)
        try:
            return self._tokens.call(
                connection_id,
                lambda token: self._client.get_object(
                    token=token, account_id=account_id, kind=kind, object_id=object_id
                ),
            )
        except NoToken as exc:
            raise RetryLater(str(exc)) from None
        except FreshBooksError as error:
            if error.kind is ErrorKind.NOT_FOUND:
                return None
            if error.transient or error.kind is ErrorKind.AUTH:
                not_before = (
                    self._clock() + dt.timedelta(seconds=error.retry_after)
                    if error.retry_after is not None
                    else None
                )
                raise RetryLater(f"FreshBooks {error.kind}", not_before=not_before) from None
            raise PermanentFailure(f"FreshBooks {error.kind}: {error.message}") from None

    def record(
        self,
        *,
        connection_id: int,
        event_name: str,
        kind: ObjectKind,
        object_id: str,
        raw: dict[str, Any] | None,
        source: str,
        inbox_id: int | None,
    ) -> Processed:
        """Record the event (and any derived ones) for this version of the object, once."""
        try:
            current = parse_object(kind, raw) if raw is not None else None
        except ObjectParseError as exc:
            raise PermanentFailure(str(exc)) from None
        with self._db.read() as session:
            known_raw = objects.get_state(
                session, self._cipher, connection_id=connection_id, kind=kind, object_id=object_id
            )
            invoice_raw = None
            if isinstance(current, Payment) and current.invoice is not None:
                invoice_raw = objects.get_state(
                    session,
                    self._cipher,
                    connection_id=connection_id,
                    kind=ObjectKind.INVOICE,
                    object_id=str(current.invoice.id),
                )
        previous = parse_stored(kind, known_raw)
        known_invoice = parse_stored(ObjectKind.INVOICE, invoice_raw)
        previous_invoice = known_invoice if isinstance(known_invoice, Invoice) else None
        # A 404 on delete: report what we last knew of it, marked deleted.
        payload = (
            raw if raw is not None else ({**known_raw, "vis_state": VisState.DELETED} if known_raw else None)
        )
        marker = change_marker(raw)
        derived = derive(
            event_name,
            current,
            previous,
            previous_invoice
            if previous_invoice is None or hasattr(previous_invoice, "outstanding")
            else None,
        )
        now = self._clock()
        with self._db.session() as session:
            if source == "webhook" and events.change_recorded(
                session,
                connection_id=connection_id,
                object_kind=kind,
                object_id=object_id,
                object_updated=marker,
                sources=("poll",),
            ):
                # The reconciliation poll already reported this version.
                return Processed(InboxState.DUPLICATE, note="already reported by the reconciliation poll")
            event_id, created = events.record_event(
                session,
                self._cipher,
                connection_id=connection_id,
                inbox_id=inbox_id,
                object_kind=kind,
                name=event_name,
                object_id=object_id,
                object_updated=marker,
                obj=payload,
                now=now,
                source=source,
                notable=is_notable(event_name, previous, current),
            )
            recorded = [(kind, event_name, source)] if created else []
            for fact in derived:
                fact_raw = raw if fact.object is current else (raw or {}).get("invoice")
                _, fact_created = events.record_event(
                    session,
                    self._cipher,
                    connection_id=connection_id,
                    inbox_id=None,
                    object_kind=fact.kind,
                    name=fact.name,
                    object_id=str(fact.object.id),
                    object_updated=fact.object.updated_raw or marker,
                    obj=fact_raw,
                    now=now,
                    source="derived",
                )
                if fact_created:
                    recorded.append((fact.kind, fact.name, "derived"))
            self._remember(
                session,
                connection_id=connection_id,
                kind=kind,
                object_id=object_id,
                raw=raw,
                current=current,
                previous=previous,
                now=now,
            )
            if isinstance(current, Payment) and current.invoice is not None and raw is not None:
                self._remember(
                    session,
                    connection_id=connection_id,
                    kind=ObjectKind.INVOICE,
                    object_id=str(current.invoice.id),
                    raw=raw.get("invoice"),
                    current=current.invoice,
                    previous=previous_invoice,
                    now=now,
                )
        for recorded_kind, recorded_name, recorded_source in recorded:  # counted once committed
            metrics.EVENTS.labels(kind=recorded_kind, event=recorded_name, source=recorded_source).inc()
        return Processed(InboxState.DONE if created else InboxState.DUPLICATE, event_id)

    def _remember(
        self,
        session: Session,
        *,
        connection_id: int,
        kind: ObjectKind,
        object_id: str,
        raw: dict[str, Any] | None,
        current: FreshBooksObject | None,
        previous: FreshBooksObject | None,
        now: dt.datetime,
    ) -> None:
        if raw is None or current is None or not is_newer(current, previous):
            return
        objects.put_state(
            session,
            self._cipher,
            connection_id=connection_id,
            kind=kind,
            object_id=object_id,
            updated=change_marker(raw),
            raw=raw,
            now=now,
        )
