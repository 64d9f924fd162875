"""RETENTION_DAYS: old finished history is purged in batches; nothing still waiting is ever lost."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from connector.features.limits import SampleLimit
from connector.features.retention import RetentionPurge
from storage import audit, connections, inbox
from storage.crypto import Cipher
from storage.db import Database
from storage.models import (
    AuditEntry,
    Delivery,
    DeliveryState,
    Event,
    InboxState,
    JobLease,
    SearchTerm,
    WebhookInbox,
)
from tests.support.live import FakeClock

# Run again by .ci/run from a leap day just before midnight US/Eastern (tests/support/live.py).
pytestmark = pytest.mark.date_sensitive


def _seed(db: Database, cipher: Cipher, clock: FakeClock) -> dict[str, int]:
    """Per age (old: 100 days, new: today) an event with a delivery in each final or waiting state."""
    ids: dict[str, int] = {}
    with db.session() as session:
        workspace = connections.ensure_workspace(session, team_id="T1", now=clock())
        connection = connections.create_connection(
            session,
            cipher,
            workspace_id=workspace.id,
            account_id="ACM123",
            business_id=1,
            business_name="Acme",
            access_token="a",
            refresh_token="r",
            token_expires_at=None,
            now=clock(),
        ).connection
        for age, days in (("old", 100), ("new", 0)):
            at = clock() - dt.timedelta(days=days)
            for n, state in enumerate((DeliveryState.DELIVERED, DeliveryState.FAILED, DeliveryState.PARKED)):
                event = Event(
                    connection_id=connection.id,
                    source="webhook",
                    object_kind="invoice",
                    name="invoice.create",
                    object_id=f"{age}{n}",
                    object_updated="u",
                    object_enc=cipher.encrypt_json({"id": n}),
                    created_at=at,
                    routed_at=at,
                )
                session.add(event)
                session.flush()
                session.add(
                    SearchTerm(workspace_id=workspace.id, event_id=event.id, term=f"{age}{n}".ljust(32, "0"))
                )
                delivery = Delivery(
                    event_id=event.id,
                    workspace_id=workspace.id,
                    channel_id="C1",
                    delivery_key=f"{age}-{n}",
                    state=state,
                    created_at=at,
                    next_attempt_at=at,
                )
                session.add(delivery)
                session.flush()
                ids[f"{age}-{state}"] = delivery.id
                audit.record(session, cipher, kind="delivery_attempt", outcome=str(state), now=at,
                             workspace_id=workspace.id, subject_id=str(delivery.id))  # fmt: skip
            inbox.add_webhook(
                session,
                cipher,
                connection_id=connection.id,
                event_name="invoice.create",
                object_id=f"{age}-done",
                raw_body=b"name=invoice.create",
                state=InboxState.DONE,
                now=at,
            )
            inbox.add_webhook(
                session,
                cipher,
                connection_id=connection.id,
                event_name="invoice.create",
                object_id=f"{age}-pending",
                raw_body=b"name=invoice.create",
                state=InboxState.PENDING,
                now=at,
            )
    return ids


def _count(db: Database, model: type[AuditEntry | Delivery | Event | WebhookInbox | SearchTerm]) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_purge_removes_old_finished_history_only(db: Database, cipher: Cipher, clock: FakeClock) -> None:
    ids = _seed(db, cipher, clock)
    purge = RetentionPurge(db=db, clock=clock, retention_days=30, batch_size=1)
    removed = purge.run()
    assert (removed.audit_entries, removed.deliveries, removed.events, removed.inbox_rows) == (3, 2, 2, 1)
    with db.read() as session:
        left = {d.id: d.state for d in session.scalars(select(Delivery))}
        pending_inbox = list(session.scalars(select(WebhookInbox.object_id).order_by(WebhookInbox.id)))
    # The old parked delivery waits for a person: it and its event stay, however old.
    assert set(left) == {ids["old-parked"], ids["new-delivered"], ids["new-failed"], ids["new-parked"]}
    assert _count(db, Event) == 4 and _count(db, SearchTerm) == 4
    assert pending_inbox == ["old-pending", "new-done", "new-pending"]
    assert _count(db, AuditEntry) == 3


def test_purge_runs_once_per_interval_across_processes(
    db: Database, cipher: Cipher, clock: FakeClock
) -> None:
    _seed(db, cipher, clock)
    first = RetentionPurge(db=db, clock=clock, retention_days=30)
    second = RetentionPurge(db=db, clock=clock, retention_days=30)
    with db.session() as session:  # becomes old half an hour from now
        audit.record(session, cipher, kind="x", outcome="y", now=clock() - dt.timedelta(days=30, minutes=-30))
    assert first.run().total > 0
    clock.advance(hours=1)
    assert second.run().total == 0  # the first process holds this interval's lease
    assert _count(db, AuditEntry) == 4
    clock.advance(hours=6)
    assert second.run().audit_entries == 1  # the next interval: whoever takes the lease purges


def test_zero_days_keeps_everything(db: Database, cipher: Cipher, clock: FakeClock) -> None:
    _seed(db, cipher, clock)
    before = _count(db, AuditEntry), _count(db, Delivery), _count(db, Event)
    clock.advance(days=1000)
    assert RetentionPurge(db=db, clock=clock, retention_days=0).run().total == 0
    assert (_count(db, AuditEntry), _count(db, Delivery), _count(db, Event)) == before


def test_purge_deletes_leases_that_ended_a_day_ago_and_keeps_the_others(
    db: Database, cipher: Cipher, clock: FakeClock
) -> None:
    limit = SampleLimit(db=db, clock=clock)
    for user in ("U1", "U2"):
        assert limit.take(team_id="T1", user_id=user) is None
    clock.advance(days=2)
    assert limit.take(team_id="T1", user_id="U3") is None  # held now
    assert RetentionPurge(db=db, clock=clock, retention_days=30).run().other == 2
    with db.read() as session:
        names = sorted(session.scalars(select(JobLease.name)))
    assert names == ["retention-purge", "sample:T1:U3"]
    # A person whose row was purged is limited exactly as before: once, then a wait.
    assert limit.take(team_id="T1", user_id="U1") is None
    assert limit.take(team_id="T1", user_id="U1") is not None
