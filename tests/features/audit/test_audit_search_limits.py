"""The audit search is stopped by the database past its time limit, on both databases."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text

from storage import search
from storage.crypto import Cipher
from storage.db import Database
from storage.models import Event
from tests.support.live import FakeClock, add_connection


def _events(db: Database, cipher: Cipher, clock: FakeClock, count: int) -> int:
    connection_id = add_connection(db, cipher, "ACC1")
    with db.session() as session:
        for n in range(count):
            session.add(
                Event(
                    connection_id=connection_id,
                    object_kind="invoice",
                    source="webhook",
                    name="invoice.create",
                    object_id=str(n),
                    object_updated=f"u{n}",
                    notable=True,
                    created_at=clock() - dt.timedelta(minutes=n),
                )
            )
    with db.read() as session:
        workspace_id = session.execute(text("SELECT workspace_id FROM freshbooks_connections")).scalar_one()
    return int(workspace_id)


def test_a_search_within_its_time_answers(db: Database, cipher: Cipher, clock: FakeClock) -> None:
    workspace_id = _events(db, cipher, clock, 30)
    with db.read() as session:
        rows = search.search(session, search.SearchFilter(workspace_id=workspace_id), limit=10, time_limit=30)
    assert len(rows) == 10


def test_a_search_past_its_time_is_stopped(db: Database, cipher: Cipher, clock: FakeClock) -> None:
    workspace_id = _events(db, cipher, clock, 300)
    # No event has this name: the search walks all 300 (a word carried by none is answered at once,
    # from the index, without looking at any event).
    spec = search.SearchFilter(workspace_id=workspace_id, event_names=("invoice.nothing",))
    if db.dialect == "postgresql":
        # A statement waiting on a lock counts against statement_timeout like one working.
        with db.engine.connect() as blocker:
            blocker.exec_driver_sql("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
            with db.read() as session, pytest.raises(search.SearchTooSlow):
                search.search(session, spec, limit=10, time_limit=0.2)
            blocker.rollback()
    else:
        with db.read() as session, pytest.raises(search.SearchTooSlow):
            search.search(session, spec, limit=10, time_limit=0.0)
    # The connection is fine afterwards: the limit was for that statement (or transaction) only.
    with db.read() as session:
        assert len(search.search(session, search.SearchFilter(workspace_id=workspace_id), limit=5)) == 5
