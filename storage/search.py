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
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import (
    ARRAY,
    BigInteger,
    ColumnElement,
    CompoundSelect,
    Executable,
    Select,
    any_,
    exists,
    func,
    intersect,
    literal,
    select,
    text,
)
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


Run = Callable[[Executable], Sequence[Any]]


@contextlib.contextmanager
def _time_limit(session: Session, seconds: float | None) -> Iterator[Run]:
    """Run the search's statements, stopped after `seconds` in all, on the database's side: a
    search made of words every event carries may scan the whole trail, and nobody waits for it.
    PostgreSQL cancels at statement_timeout (for this transaction only, set before each statement
    to what is left); SQLite's progress handler interrupts."""

    def run(query: Executable) -> Sequence[Any]:
        return session.execute(query).all()

    if seconds is None:
        yield run
        return
    deadline = time.monotonic() + seconds
    if session.get_bind().dialect.name == "postgresql":

        def run_in_time(query: Executable) -> Sequence[Any]:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms < 1:
                raise SearchTooSlow
            session.execute(text(f"SET LOCAL statement_timeout = {left_ms}"))
            return run(query)

        try:
            yield run_in_time
        except OperationalError as exc:
            if isinstance(exc.orig, psycopg.errors.QueryCanceled):
                raise SearchTooSlow from None
            raise
        return
    raw = session.connection().connection.driver_connection
    raw.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)  # type: ignore[union-attr]
    try:
        yield run
    except OperationalError as exc:
        if "interrupted" in str(exc.orig):
            raise SearchTooSlow from None
        raise
    finally:
        raw.set_progress_handler(None, 0)  # type: ignore[union-attr]


# A word whose terms at most this many rows carry is "rare": its events are read (one index range)
# and the search looks at those events only. Reading them costs about as much as one probe each.
RARE_ROWS = 2000
# When every word is common, the newest this many events meeting the other conditions are looked
# at first: a search whose words many events carry finds its page among them (probing each event
# for each word, by index).
FIRST_WINDOW = 2000
# Otherwise the words are ranked by how many of the newest SAMPLE_IDS event ids carry them, and
# the least common ones intersected in the index until at most CANDIDATES events are left.
SAMPLE_IDS = 20_000
CANDIDATES = 5000


def search(
    session: Session, spec: SearchFilter, *, limit: int, time_limit: float | None = None
) -> list[SearchRow]:
    """Newest first. Events no rule sent anywhere appear (without a delivery) unless the query
    names a status or a channel. Every condition is scoped to the workspace. Raises SearchTooSlow
    past `time_limit` seconds."""
    # The connection ids as literals, not a subquery: with one connection (the usual case) the
    # planner then walks ix_events_connection_created backwards and stops after `limit` rows.
    connection_ids = list(
        session.scalars(
            select(FreshBooksConnection.id).where(FreshBooksConnection.workspace_id == spec.workspace_id)
        )
    )
    if not connection_ids:
        return []
    with _time_limit(session, time_limit) as run:
        dialect = session.get_bind().dialect.name
        return [_row(row) for row in _search(run, spec, connection_ids, limit, dialect=dialect)]


def _search(
    run: Run, spec: SearchFilter, connection_ids: list[int], limit: int, *, dialect: str
) -> Sequence[Any]:
    """The words decide the plan; the other conditions are the same in each.

    One `IN (events carrying the word)` per word (what this did before) let the database build
    every word's whole list of events: with three or four words that every event or a fifth of
    them carry, and no event carrying them all, that took over 1.5 s on PostgreSQL. Instead:
    - rare words (RARE_ROWS) drive: their events are read and intersected here, and only those
      events are looked at, each probed for the common words in the lookup index;
    - with only common words, the newest FIRST_WINDOW events that meet the other conditions are
      probed first: enough when the words go together often (the usual case: a client's name),
      or when the other conditions leave fewer events than that (a day, a status);
    - otherwise the least common words' lists are intersected in the index (never reading an
      event) until few candidates are left, which are probed for the other words. Only when
      more than CANDIDATES events carry every word are the events walked newest first.
    """
    conditions = _conditions(spec, connection_ids)
    if not spec.term_groups:
        return run(_query(spec, conditions, limit))
    rare: set[int] | None = None
    common: list[tuple[str, ...]] = []
    for group in spec.term_groups:
        events = [row[0] for row in run(_events_of(spec.workspace_id, group).limit(RARE_ROWS + 1))]
        if len(events) > RARE_ROWS:
            common.append(group)
        else:
            rare = set(events) if rare is None else rare & set(events)
    if rare is not None:
        return _among(
            run,
            spec,
            dialect=dialect,
            connection_ids=connection_ids,
            candidates=rare,
            others=common,
            limit=limit,
        )
    # The newest events meeting the other conditions: if `limit` of them carry every word, those
    # are the answer; if there are fewer than FIRST_WINDOW, they are all there is to look at.
    window = [row[0] for row in run(_query(spec, conditions, FIRST_WINDOW, columns=select(Event.id)))]
    rows = _among(
        run,
        spec,
        dialect=dialect,
        connection_ids=connection_ids,
        candidates=set(window),
        others=common,
        limit=limit,
    )
    if len(rows) >= limit or len(window) < FIRST_WINDOW:
        return rows
    common = _least_common_first(run, spec.workspace_id, common, newest=max(window))
    for taken in range(1, len(common) + 1):
        lists = [_events_of(spec.workspace_id, _present(run, spec.workspace_id, g)) for g in common[:taken]]
        found = {row[0] for row in run(_intersection(lists, dialect=dialect).limit(CANDIDATES + 1))}
        if len(found) <= CANDIDATES:
            return _among(
                run,
                spec,
                dialect=dialect,
                connection_ids=connection_ids,
                candidates=found,
                others=common[taken:],
                limit=limit,
            )
    return run(_query(spec, conditions + _carrying(spec, common), limit))


def _among(
    run: Run,
    spec: SearchFilter,
    *,
    dialect: str,
    connection_ids: list[int],
    candidates: set[int],
    others: Sequence[tuple[str, ...]],
    limit: int,
) -> Sequence[Any]:
    """The newest of `candidates` (a few thousand at most) that carry the `others` words too."""
    if not candidates:
        return []
    conditions = _conditions(spec, connection_ids, driven=True)
    drive = [_one_of(candidates, dialect=dialect)]
    return run(_query(spec, conditions + drive + _carrying(spec, others), limit, driven=True))


def _one_of(ids: set[int], *, dialect: str) -> ColumnElement[bool]:
    """`Event.id` is one of `ids`, sent as one parameter: thousands of bound values would cost
    more to build and plan (100 ms and more for 2,000) than the search itself."""
    listed = sorted(ids)
    if dialect == "postgresql":
        return Event.id == any_(literal(listed, ARRAY(BigInteger)))
    each = func.json_each(literal(json.dumps(listed))).table_valued("value")
    return Event.id.in_(select(each.c.value))


def _intersection(lists: list[Select[Any]], *, dialect: str) -> Select[Any] | CompoundSelect[Any]:
    """The events on every one of `lists` (each of one word's terms that are present), in event
    order. Each list is then one range of the lookup index, already in that order (a word's
    terms are usually down to one once absent ones are dropped), so the database merges them.
    PostgreSQL merge-joins (60-100 ms for two lists of 200,000 rows, where INTERSECT hashes
    them in 0.4-0.5 s); SQLite has no merge join, but merges an ordered INTERSECT (0.1 s, where
    unordered it loads one list into a temporary index in 0.4 s, and probing takes 1.7 s)."""
    if len(lists) == 1:
        return lists[0]
    if dialect == "postgresql":
        first, *others = (found.subquery() for found in lists)
        query = select(first.c.event_id)
        for other in others:
            query = query.join(other, other.c.event_id == first.c.event_id)
        return query
    both = intersect(*lists)
    return both.order_by(both.selected_columns[0])


def _present(run: Run, workspace_id: int, group: tuple[str, ...]) -> tuple[str, ...]:
    """The terms of `group` that some event carries (one index seek each): a typed word is looked
    up as a number and as a name, and usually only one of them exists."""
    present = tuple(
        term
        for term in group
        if run(
            select(SearchTerm.event_id)
            .where(SearchTerm.workspace_id == workspace_id, SearchTerm.term == term)
            .limit(1)
        )
    )
    return present or group


def _least_common_first(
    run: Run, workspace_id: int, groups: list[tuple[str, ...]], *, newest: int
) -> list[tuple[str, ...]]:
    """`groups` ranked by how many of the SAMPLE_IDS event ids up to `newest` carry them: a
    sample from one index range per term, bounded however many events carry the word. (Ids
    follow time closely enough to rank by; the ranking only decides the speed.)"""

    def sampled(group: tuple[str, ...]) -> int:
        recent = _events_of(workspace_id, group).where(SearchTerm.event_id > newest - SAMPLE_IDS)
        return int(run(select(func.count()).select_from(recent.subquery()))[0][0])

    return sorted(groups, key=sampled)


def _events_of(workspace_id: int, group: tuple[str, ...]) -> Select[Any]:
    """The events carrying one of `group`'s terms: one range of ix_search_terms_lookup per term."""
    return select(SearchTerm.event_id).where(
        SearchTerm.workspace_id == workspace_id, SearchTerm.term.in_(group)
    )


def _carrying(spec: SearchFilter, groups: Sequence[tuple[str, ...]]) -> list[ColumnElement[bool]]:
    """Per word, a probe of the lookup index (workspace, term, event) for the event at hand."""
    return [
        exists().where(
            SearchTerm.workspace_id == spec.workspace_id,
            SearchTerm.term.in_(group),
            SearchTerm.event_id == Event.id,
        )
        for group in groups
    ]


def _conditions(
    spec: SearchFilter, connection_ids: list[int], *, driven: bool = False
) -> list[ColumnElement[bool]]:
    """Every condition but the words. `driven` (see _query): the connection as an expression, or
    SQLite without statistics walks its index rather than fetch the candidates by id."""
    connection: ColumnElement[int] = Event.__table__.c.connection_id
    if driven:
        connection = func.coalesce(Event.connection_id, 0)
    conditions: list[ColumnElement[bool]] = [connection.in_(connection_ids)]
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
    return conditions


def _query(
    spec: SearchFilter,
    conditions: list[ColumnElement[bool]],
    limit: int,
    *,
    columns: Select[Any] | None = None,
    driven: bool = False,
) -> Select[Any]:
    """`driven`: the conditions name the candidate events (a few thousand at most), which are
    fetched by id and sorted. Newest first is then an expression no index gives: without
    statistics (the app never runs ANALYZE) SQLite would otherwise walk the whole
    (connection, created_at, id) index to skip the sort, checking each event against the list."""
    needs_delivery = bool(spec.states) or spec.channel_id is not None
    # Deliveries of an event are in its connection's workspace, which the event filter pins down.
    # (Repeating workspace_id in the join lets SQLite's planner pick the workspace index: a scan.)
    query = columns.select_from(Event) if columns is not None else _columns()
    # Otherwise newest first by the order of an index (connection, created_at, id): the scan can
    # stop early.
    newest: list[ColumnElement[Any]] = [Event.__table__.c.created_at, Event.__table__.c.id]
    if driven:
        newest = [func.coalesce(Event.created_at, Event.created_at), func.coalesce(Event.id, Event.id)]
    return (
        query.join(Delivery, Delivery.event_id == Event.id, isouter=not needs_delivery)
        .where(*conditions)
        .order_by(*(column.desc() for column in newest))
        .limit(limit)
    )


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
