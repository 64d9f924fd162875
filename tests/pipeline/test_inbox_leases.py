"""A leased inbox row is finished only by its owner: a worker that lost the lease changes nothing."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from storage import inbox
from storage.crypto import Cipher
from storage.db import Database
from storage.models import InboxState, WebhookInbox
from tests.support.live import FakeClock, add_connection

# Run again by .ci/run from a leap day just before midnight US/Eastern (tests/support/live.py).
pytestmark = pytest.mark.date_sensitive


def _pending_row(db: Database, cipher: Cipher, clock: FakeClock) -> int:
    connection_id = add_connection(db, cipher, "ACC1")
    row = inbox.prepare_webhook(
        cipher,
        connection_id=connection_id,
        event_name="invoice.create",
        object_id="7",
        raw_body=b"name=invoice.create&object_id=7",
        state=InboxState.PENDING,
        now=clock(),
    )
    inbox_id = inbox.store_webhooks(db, [row])[0]
    assert isinstance(inbox_id, int)
    return inbox_id


def _claim(db: Database, cipher: Cipher, clock: FakeClock, owner: str) -> list[int]:
    with db.session() as session:
        items = inbox.claim_due(session, cipher, owner=owner, now=clock(), lease_seconds=60, limit=10)
    return [item.id for item in items]


def _row(db: Database, inbox_id: int) -> WebhookInbox:
    with db.read() as session:
        return session.scalars(select(WebhookInbox).where(WebhookInbox.id == inbox_id)).one()


def test_only_the_lease_owner_completes_a_row(db: Database, cipher: Cipher, clock: FakeClock) -> None:
    inbox_id = _pending_row(db, cipher, clock)
    assert _claim(db, cipher, clock, "worker-a") == [inbox_id]
    with db.session() as session:
        assert not inbox.complete(
            session, item_id=inbox_id, owner="worker-b", state=InboxState.DONE, now=clock(), event_id=None
        )
    assert _row(db, inbox_id).state == InboxState.PENDING

    clock.advance(seconds=5)
    with db.session() as session:
        assert inbox.complete(
            session, item_id=inbox_id, owner="worker-a", state=InboxState.IGNORED, now=clock(), error="why"
        )
    row = _row(db, inbox_id)
    assert (row.state, row.last_error, row.lease_owner, row.lease_expires_at) == (
        InboxState.IGNORED,
        "why",
        None,
        None,
    )
    assert row.processed_at == clock()
    with db.session() as session:  # finished: the lease is gone, a late retry changes nothing
        assert not inbox.retry_later(
            session, item_id=inbox_id, owner="worker-a", available_at=clock(), error="late"
        )
    assert _row(db, inbox_id).last_error == "why"


def test_a_retry_releases_the_lease_until_the_row_is_due(
    db: Database, cipher: Cipher, clock: FakeClock
) -> None:
    inbox_id = _pending_row(db, cipher, clock)
    assert _claim(db, cipher, clock, "worker-a") == [inbox_id]
    later = clock() + dt.timedelta(minutes=2)
    with db.session() as session:
        for owner, error, moved in (("worker-b", "x", False), ("worker-a", "e" * 600, True)):
            assert (
                inbox.retry_later(session, item_id=inbox_id, owner=owner, available_at=later, error=error)
                is moved
            )
    row = _row(db, inbox_id)
    assert (row.state, row.available_at, row.lease_owner) == (InboxState.PENDING, later, None)
    assert row.last_error == "e" * 500, "the error is cut to the column's size"
    assert _claim(db, cipher, clock, "worker-b") == [], "not due yet"
    clock.advance(minutes=2)
    assert _claim(db, cipher, clock, "worker-b") == [inbox_id]
