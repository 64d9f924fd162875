"""Retention: deleting audit history older than the configured age, in small batches.

Only what is finished is deleted: deliveries still pending, in doubt or parked (waiting for a
person) are never purged, nor the events they need, however old. Each call deletes one batch per
table in its own short transaction, so a purge never holds locks the pipeline waits on for long.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import ColumnElement, delete, exists, select
from sqlalchemy.orm import Session

from storage import leases
from storage.inbox import REPEAT_WINDOW
from storage.models import (
    AuditEntry,
    CallbackVerification,
    Delivery,
    DeliveryState,
    DigestRun,
    DigestRunState,
    Event,
    InboxState,
    OAuthState,
    SearchTerm,
    SimulatedObject,
    WebhookDigest,
    WebhookInbox,
)

FINISHED_DELIVERIES = (DeliveryState.DELIVERED, DeliveryState.FAILED)
FINISHED_INBOX = (InboxState.DONE, InboxState.DUPLICATE, InboxState.IGNORED, InboxState.FAILED)


@dataclass(slots=True)
class Purged:
    audit_entries: int = 0
    inbox_rows: int = 0
    deliveries: int = 0
    events: int = 0
    other: int = 0

    @property
    def total(self) -> int:
        return self.audit_entries + self.inbox_rows + self.deliveries + self.events + self.other

    def add(self, other: Purged) -> None:
        self.audit_entries += other.audit_entries
        self.inbox_rows += other.inbox_rows
        self.deliveries += other.deliveries
        self.events += other.events
        self.other += other.other


Purgeable = type[AuditEntry | WebhookInbox | Delivery | Event]


def _purge_batch(
    session: Session, model: Purgeable, *conditions: ColumnElement[bool], batch: int
) -> list[int]:
    """Delete up to `batch` rows of `model` matching `conditions`; return their ids."""
    ids = list(session.scalars(select(model.id).where(*conditions).limit(batch)))
    if ids:
        session.execute(delete(model).where(model.id.in_(ids)))
    return ids


def purge_audit(session: Session, *, cutoff: dt.datetime, batch: int) -> int:
    return len(_purge_batch(session, AuditEntry, AuditEntry.at < cutoff, batch=batch))


def purge_inbox(session: Session, *, cutoff: dt.datetime, batch: int) -> int:
    finished = (WebhookInbox.received_at < cutoff, WebhookInbox.state.in_(FINISHED_INBOX))
    return len(_purge_batch(session, WebhookInbox, *finished, batch=batch))


def purge_deliveries(session: Session, *, cutoff: dt.datetime, batch: int) -> int:
    finished = (Delivery.created_at < cutoff, Delivery.state.in_(FINISHED_DELIVERIES))
    return len(_purge_batch(session, Delivery, *finished, batch=batch))


def purge_events(session: Session, *, cutoff: dt.datetime, batch: int) -> int:
    """Old events nothing refers to any more (no delivery left, no inbox row pointing at them)."""
    # Their search terms first: SQLite enforces ON DELETE CASCADE only with foreign keys on.
    unreferenced = (
        Event.created_at < cutoff,
        Event.routed_at.is_not(None),
        ~exists().where(Delivery.event_id == Event.id),
        ~exists().where(WebhookInbox.event_id == Event.id),
    )
    ids = list(session.scalars(select(Event.id).where(*unreferenced).limit(batch)))
    if ids:
        session.execute(delete(SearchTerm).where(SearchTerm.event_id.in_(ids)))
        session.execute(delete(Event).where(Event.id.in_(ids)))
    return len(ids)


DIGEST_RUN_KEEP = dt.timedelta(days=14)


def purge_leftovers(session: Session, *, now: dt.datetime, cutoff: dt.datetime) -> int:
    """Short-lived rows: used or expired OAuth states, handled verifications, old simulations,
    digests of webhook bodies older than the repeat window, leases that ended a day ago, finished
    digest runs older than the cutoff (and two weeks)."""
    removed = leases.purge_expired(session, now=now)
    for statement in (
        delete(OAuthState).where(OAuthState.expires_at < now - dt.timedelta(days=1)),
        delete(CallbackVerification).where(
            CallbackVerification.processed_at.is_not(None), CallbackVerification.received_at < cutoff
        ),
        delete(SimulatedObject).where(SimulatedObject.created_at < now - dt.timedelta(days=7)),
        delete(WebhookDigest).where(WebhookDigest.received_at < now - REPEAT_WINDOW),
        # Finished digest runs; never one the scheduler could still take for its schedule's latest
        # period (at most a week old), or it would create that run again and post it twice.
        delete(DigestRun).where(
            DigestRun.state.in_((DigestRunState.DELIVERED, DigestRunState.SKIPPED, DigestRunState.FAILED)),
            DigestRun.created_at < min(cutoff, now - DIGEST_RUN_KEEP),
        ),
    ):
        removed += int(session.execute(statement).rowcount)  # type: ignore[attr-defined]
    return removed
