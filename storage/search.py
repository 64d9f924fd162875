"""Keyed blind indexes and the audit search query: the one place that queries search_terms.

Invoice and bill numbers and client or vendor names are stored only encrypted. To find them by
exact match we also store, per event, a truncated HMAC-SHA256 of each normalised search term under
a key the app generates once and keeps encrypted in app_secrets (so `fbslack keys rotate` covers it,
and a database dump alone cannot confirm a guessed name). Equal terms give equal digests: that is
what makes the search work, and it is all a dump reveals (how often a term repeats).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import ColumnElement, Select, func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from storage.crypto import Cipher
from storage.db import Database, upsert_insert
from storage.models import (
    AppSecret,
    Delivery,
    DeliveryState,
    Event,
    FreshBooksConnection,
    SearchTerm,
)

KEY_NAME = "blind_index_key"
TERM_BYTES = 16  # 128 bits of HMAC: collisions are not a practical concern


class BlindIndex:
    """Turns (field, normalised value) into a search term. Loads or creates its key lazily, once."""

    def __init__(self, db: Database, cipher: Cipher, *, clock: Callable[[], dt.datetime]) -> None:
        self._db = db
        self._cipher = cipher
        self._clock = clock
        self._key: bytes | None = None
        self._lock = threading.Lock()

    def ensure_key(self) -> None:
        """Load (or create) the key now: call it outside any open session (SQLite has one writer)."""
        self._load_key()

    def _load_key(self) -> bytes:
        with self._lock:
            if self._key is None:
                self._key = self._read_or_create()
            return self._key

    def _read_or_create(self) -> bytes:
        with self._db.session() as session:
            fresh = base64.b64encode(os.urandom(32)).decode("ascii")
            # Whoever inserts first wins; everyone then reads the same key.
            session.execute(
                upsert_insert(session, AppSecret)
                .values(name=KEY_NAME, value_enc=self._cipher.encrypt(fresh), created_at=self._clock())
                .on_conflict_do_nothing()
            )
            stored = session.scalar(select(AppSecret.value_enc).where(AppSecret.name == KEY_NAME))
        assert stored is not None
        return base64.b64decode(self._cipher.decrypt(stored))

    def term(self, field: str, value: str) -> str:
        digest = hmac.new(self._load_key(), f"{field}\x00{value}".encode(), hashlib.sha256).digest()
        return digest[:TERM_BYTES].hex()

    def terms(self, pairs: Iterable[tuple[str, str]]) -> list[str]:
        return sorted({self.term(field, value) for field, value in pairs})


def add_terms(session: Session, *, workspace_id: int, event_id: int, terms: Sequence[str]) -> None:
    """Index one event (idempotent: the router may route an event again after a crash)."""
    for term in terms:
        session.execute(
            upsert_insert(session, SearchTerm)
            .values(workspace_id=workspace_id, event_id=event_id, term=term)
            .on_conflict_do_nothing()
        )


# -- the search ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SearchFilter:
    """A parsed audit query with its free words already turned into blind-index alternatives."""

    workspace_id: int
    # Each inner tuple is one word the user typed: the event must carry at least one of its terms.
    term_groups: tuple[tuple[str, ...], ...] = ()
    event_names: tuple[str, ...] = ()  # empty: any
    states: tuple[str, ...] = ()  # delivery states; empty: any (including events routed nowhere)
    channel_id: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None  # exclusive


@dataclass(frozen=True, slots=True)
class SearchRow:
    event_id: int
    event_name: str
    object_kind: str
    object_enc: str | None
    notable: bool
    received_at: dt.datetime
    delivery_id: int | None
    channel_id: str | None
    state: str | None
    attempts: int
    last_error_code: str | None
    parked_reason: str | None
    permalink: str | None
    delivered_at: dt.datetime | None


class SearchTooSlow(Exception):
    """The search ran past its time limit and was stopped by the database."""


@contextlib.contextmanager
def _time_limit(session: Session, seconds: float | None) -> Iterator[None]:
    """Stop the statements run inside after `seconds`, on the database's side: a search made of
    words every event carries scans the whole trail, and nobody waits for it. PostgreSQL cancels
    at statement_timeout (for this transaction only); SQLite's progress handler interrupts."""
    if seconds is None:
        yield
        return
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"SET LOCAL statement_timeout = {max(1, int(seconds * 1000))}"))
        try:
            yield
        except OperationalError as exc:
            if isinstance(exc.orig, psycopg.errors.QueryCanceled):
                raise SearchTooSlow from None
            raise
        return
    raw = session.connection().connection.driver_connection
    deadline = time.monotonic() + seconds
    raw.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)  # type: ignore[union-attr]
    try:
        yield
    except OperationalError as exc:
        if "interrupted" in str(exc.orig):
            raise SearchTooSlow from None
        raise
    finally:
        raw.set_progress_handler(None, 0)  # type: ignore[union-attr]


def search(
    session: Session, spec: SearchFilter, *, limit: int, time_limit: float | None = None
) -> list[SearchRow]:
    """Newest first. Events no rule sent anywhere appear (without a delivery) unless the query
    names a status or a channel. Every condition is scoped to the workspace. Raises SearchTooSlow
    past `time_limit` seconds."""
    needs_delivery = bool(spec.states) or spec.channel_id is not None
    # Deliveries of an event are in its connection's workspace, which the event filter pins down.
    # (Repeating workspace_id in the join lets SQLite's planner pick the workspace index: a scan.)
    join_on = Delivery.event_id == Event.id
    # The connection ids as literals, not a subquery: with one connection (the usual case) the
    # planner then walks ix_events_connection_created backwards and stops after `limit` rows.
    connection_ids = list(
        session.scalars(
            select(FreshBooksConnection.id).where(FreshBooksConnection.workspace_id == spec.workspace_id)
        )
    )
    if not connection_ids:
        return []
    conditions: list[ColumnElement[bool]] = [Event.connection_id.in_(connection_ids)]
    for group in spec.term_groups:
        # IN (subquery), not a correlated EXISTS: a selective word is looked up once in
        # ix_search_terms_lookup and its events fetched by id, instead of probing every event.
        conditions.append(
            Event.id.in_(
                select(SearchTerm.event_id).where(
                    SearchTerm.workspace_id == spec.workspace_id, SearchTerm.term.in_(group)
                )
            )
        )
    if spec.event_names:
        conditions.append(Event.name.in_(spec.event_names))
    if spec.since is not None:
        conditions.append(Event.created_at >= spec.since)
    if spec.until is not None:
        conditions.append(Event.created_at < spec.until)
    if spec.states:
        state: ColumnElement[str] = Delivery.__table__.c.state
        if DeliveryState.DELIVERED in spec.states:
            # Nearly every delivery is delivered: walking the newest events first finds matches at
            # once, while the state index would fetch and sort them all. The expression keeps the
            # planner off that index. Rare states (parked, failed, pending) do use it: few rows.
            state = func.coalesce(Delivery.state, "")
        conditions.append(state.in_(spec.states))
    if spec.channel_id is not None:
        conditions.append(Delivery.channel_id == spec.channel_id)
    query = (
        _columns()
        .join(Delivery, join_on, isouter=not needs_delivery)
        .where(*conditions)
        # Newest first by the order of an index (connection, created_at, id): the scan can stop early.
        .order_by(Event.created_at.desc(), Event.id.desc())
        .limit(limit)
    )
    with _time_limit(session, time_limit):
        return [_row(row) for row in session.execute(query)]


def delivery_row(session: Session, *, workspace_id: int, delivery_id: int) -> SearchRow | None:
    row = session.execute(
        _columns()
        .join(Delivery, Delivery.event_id == Event.id)
        .where(Delivery.id == delivery_id, Delivery.workspace_id == workspace_id)
    ).first()
    return None if row is None else _row(row)


def _columns() -> Select[*tuple[Any, ...]]:
    return select(
        Event.id,
        Event.name,
        Event.object_kind,
        Event.object_enc,
        Event.notable,
        Event.created_at,
        Delivery.id.label("delivery_id"),
        Delivery.channel_id,
        Delivery.state,
        Delivery.attempts,
        Delivery.last_error_code,
        Delivery.parked_reason,
        Delivery.permalink,
        Delivery.delivered_at,
    ).select_from(Event)


def _row(row: Any) -> SearchRow:
    return SearchRow(
        event_id=row.id,
        event_name=row.name,
        object_kind=row.object_kind,
        object_enc=row.object_enc,
        notable=row.notable,
        received_at=row.created_at,
        delivery_id=row.delivery_id,
        channel_id=row.channel_id,
        state=row.state,
        attempts=row.attempts or 0,
        last_error_code=row.last_error_code,
        parked_reason=row.parked_reason,
        permalink=row.permalink,
        delivered_at=row.delivered_at,
    )


STATUS_STATES: dict[str, tuple[str, ...]] = {
    "delivered": (DeliveryState.DELIVERED,),
    "failed": (DeliveryState.FAILED,),
    "parked": (DeliveryState.PARKED,),
    # In doubt is still on its way, as far as a person is concerned.
    "pending": (DeliveryState.PENDING, DeliveryState.IN_DOUBT),
}
