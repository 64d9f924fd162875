"""The webhook inbox and pending callback verifications: the one place that queries these tables."""

from __future__ import annotations

import datetime as dt
import enum
import functools
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Dialect, Table, and_, bindparam, delete, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from storage.crypto import Cipher
from storage.db import Database
from storage.models import (
    CallbackVerification,
    ConnectionStatus,
    FreshBooksConnection,
    InboxState,
    VerificationState,
    WebhookDigest,
    WebhookInbox,
)

_INBOX = cast(Table, WebhookInbox.__table__)
_CONNECTIONS = cast(Table, FreshBooksConnection.__table__)
# One statement for a whole batch: on PostgreSQL SQLAlchemy sends it as a single multi-row INSERT
# whose RETURNING ids it sorts back into the order of the parameter sets (its "insertmanyvalues"
# with sort_by_parameter_order); on SQLite, which has no such form, it runs one INSERT per row,
# which costs no round trip there.
_ADD_WEBHOOKS = insert(_INBOX).returning(_INBOX.c.id, sort_by_parameter_order=True)
# Built once too (an expanding IN): building a statement costs more than running this one.
_LIVE_CONNECTIONS = select(_CONNECTIONS.c.id).where(
    _CONNECTIONS.c.id.in_(bindparam("ids", expanding=True)),
    _CONNECTIONS.c.status != str(ConnectionStatus.DISCONNECTED),
)


# The same body bytes for the same connection within this window are one webhook: FreshBooks
# retries, or someone replays a captured request (the body carries no timestamp or nonce).
REPEAT_WINDOW = dt.timedelta(hours=24)


class NotStored(enum.Enum):
    """Why an authentic webhook got no inbox row."""

    DISCONNECTED = "disconnected"  # since the intake's cached lookup
    REPEATED = "repeated"  # its body reached this connection within REPEAT_WINDOW


def _claim_digest(dialect_insert: Any) -> Any:
    """Insert a body's digest, or take over one older than the window; no row if it is newer."""
    digests = cast(Table, WebhookDigest.__table__)
    statement = dialect_insert(digests)
    return statement.on_conflict_do_update(
        index_elements=[digests.c.connection_id, digests.c.digest],
        set_={"received_at": statement.excluded.received_at},
        where=digests.c.received_at <= bindparam("repeat_before", type_=digests.c.received_at.type),
    )


_CLAIM_DIGEST = {"sqlite": _claim_digest(sqlite_insert), "postgresql": _claim_digest(pg_insert)}


@dataclass(frozen=True, slots=True)
class NewWebhook:
    """One authentic webhook, encrypted and ready to insert (built outside any transaction).

    `digest` is a keyed hash of the raw body (never the body): with it, the same body for the
    same connection within REPEAT_WINDOW is not stored again. None stores it whatever came before.
    """

    params: dict[str, object]
    digest: str | None = None


def prepare_webhook(
    cipher: Cipher,
    *,
    connection_id: int,
    event_name: str,
    object_id: str,
    raw_body: bytes,
    state: InboxState,
    now: dt.datetime,
    digest: str | None = None,
) -> NewWebhook:
    """Encrypt the body and bind the row's values: the CPU work, done before any lock is taken."""
    return NewWebhook(
        {
            "connection_id": connection_id,
            "event_name": event_name,
            "object_id": object_id,
            "body_enc": cipher.encrypt(raw_body),
            "received_at": now,
            "available_at": now,
            "state": str(state),
            "attempts": 0,
            "processed_at": None if state is InboxState.PENDING else now,
        },
        digest,
    )


# PostgreSQL: the whole batch in ONE statement, run in autocommit mode, where a single statement
# is atomic on its own. That is one round trip instead of five (BEGIN, the liveness SELECT, the
# INSERT, COMMIT), and the statement text is the same for any batch size (arrays, not a VALUES
# list), so it is parsed and planned once per connection.
#
# `live` re-checks that each row's connection is still live, as of this statement. `fresh` claims
# each body's digest (one per connection and digest: two identical bodies in one batch are one
# webhook), in a fixed order so two batches never wait on each other's digests crosswise; a
# digest held since less than the repeat window yields no row, and its webhook no inbox row. A
# concurrent statement claiming the same digest waits for this one to commit, then finds it.
#
# The answer is one row per input row (`ord`: is its connection live, was it kept), then the new
# inbox ids. The SELECT feeds the inbox INSERT in `ord` order, so the serial ids are drawn in that
# order (the guarantee SQLAlchemy's insertmanyvalues relies on for `sort_by_parameter_order`):
# sorted ids pair up with the kept rows, in order.
_PG_ADD_WEBHOOKS = text(
    """
    WITH v AS (
        SELECT * FROM unnest(CAST(:connection_id AS integer[]), CAST(:event_name AS text[]),
                             CAST(:object_id AS text[]), CAST(:body_enc AS text[]),
                             CAST(:received_at AS timestamptz[]), CAST(:available_at AS timestamptz[]),
                             CAST(:state AS text[]), CAST(:attempts AS integer[]),
                             CAST(:processed_at AS timestamptz[]), CAST(:digest AS text[]))
             WITH ORDINALITY AS v(connection_id, event_name, object_id, body_enc, received_at,
                                  available_at, state, attempts, processed_at, digest, ord)
    ), live AS (
        SELECT v.* FROM v
        JOIN freshbooks_connections AS c ON c.id = v.connection_id AND c.status <> :disconnected
    ), firsts AS (
        SELECT DISTINCT ON (connection_id, digest) * FROM live
        WHERE digest IS NOT NULL
        ORDER BY connection_id, digest, ord
    ), fresh AS (
        INSERT INTO webhook_digests AS d (connection_id, digest, received_at)
        SELECT connection_id, digest, received_at FROM firsts ORDER BY connection_id, digest
        ON CONFLICT (connection_id, digest) DO UPDATE SET received_at = excluded.received_at
            WHERE d.received_at <= excluded.received_at - CAST(:repeat_window AS interval)
        RETURNING connection_id, digest
    ), kept AS (
        SELECT * FROM live WHERE digest IS NULL
        UNION ALL
        SELECT firsts.* FROM firsts
        JOIN fresh ON fresh.connection_id = firsts.connection_id AND fresh.digest = firsts.digest
    ), stored AS (
        INSERT INTO webhook_inbox (connection_id, event_name, object_id, body_enc, received_at,
                                   available_at, state, attempts, processed_at)
        SELECT connection_id, event_name, object_id, body_enc, received_at,
               available_at, state, attempts, processed_at
        FROM kept ORDER BY ord
        RETURNING id
    )
    SELECT v.ord, l.ord IS NOT NULL AS live, k.ord IS NOT NULL AS kept, NULL AS id
    FROM v LEFT JOIN live AS l ON l.ord = v.ord LEFT JOIN kept AS k ON k.ord = v.ord
    UNION ALL
    SELECT NULL, NULL, NULL, id FROM stored
    """
)
_NEW_WEBHOOK_COLUMNS = (
    "connection_id",
    "event_name",
    "object_id",
    "body_enc",
    "received_at",
    "available_at",
    "state",
    "attempts",
    "processed_at",
)


def store_webhooks(db: Database, rows: Sequence[NewWebhook]) -> list[int | NotStored]:
    """Commit the rows as one unit (all or none): each one's inbox id, or why it got none (its
    connection was disconnected meanwhile: the intake works from a cached lookup, so liveness is
    checked again in the statement or transaction that inserts; or its body is a repeat). Raises,
    having stored nothing, if the database refuses the batch."""
    if not rows:
        return []
    if db.dialect == "sqlite":
        with db.write_sqlite() as raw:
            return _insert_webhooks_sqlite(raw, db.engine.dialect, rows)
    # PostgreSQL, the one other database the app runs on (its migrations and upserts know only
    # these two). Run a second time if the first connection died (see Database.autocommit): should
    # the first run have committed after all, the second finds every digest and stores nothing
    # again (rows without a digest are stored twice: the pipeline records a repeat once).
    return db.autocommit(lambda connection: _insert_webhooks_postgresql(connection, rows))


# SQLite, on the driver's connection: the same statements `insert_webhooks` has SQLAlchemy build
# (the liveness SELECT, one digest claim and one INSERT per row), written out once. A batch costs
# SQLite a few microseconds per statement; through SQLAlchemy's Core it cost about 450 us of
# Python per batch plus 60 us per row, most of a webhook's whole CPU budget.
_SQLITE_CLAIM_DIGEST = (
    "INSERT INTO webhook_digests (connection_id, digest, received_at) VALUES (?, ?, ?) "
    "ON CONFLICT (connection_id, digest) DO UPDATE SET received_at = excluded.received_at "
    "WHERE webhook_digests.received_at <= ?"
)
_SQLITE_ADD_WEBHOOK = (
    "INSERT INTO webhook_inbox (connection_id, event_name, object_id, body_enc, received_at, "
    "available_at, state, attempts, processed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SQLITE_LIVE_CONNECTION = "SELECT 1 FROM freshbooks_connections WHERE id = ? AND status != ?"
_UTC_COLUMNS = frozenset({"received_at", "available_at", "processed_at"})


@functools.cache
def _sqlite_time(dialect: Dialect) -> Callable[[dt.datetime | None], Any]:
    """The UTC columns' own bind processing (storage.models.UTCDateTime, then SQLite's DATETIME):
    the stored text is exactly what SQLAlchemy writes and the other queries compare with."""
    process = _INBOX.c.received_at.type.bind_processor(dialect)
    assert process is not None
    return process


def _insert_webhooks_sqlite(
    raw: sqlite3.Connection, dialect: Dialect, rows: Sequence[NewWebhook]
) -> list[int | NotStored]:
    to_db = _sqlite_time(dialect)
    disconnected = str(ConnectionStatus.DISCONNECTED)
    live = {
        connection_id
        for connection_id in {cast(int, row.params["connection_id"]) for row in rows}
        if raw.execute(_SQLITE_LIVE_CONNECTION, (connection_id, disconnected)).fetchone() is not None
    }
    result: list[int | NotStored] = []
    for row in rows:
        params = row.params
        if params["connection_id"] not in live:
            result.append(NotStored.DISCONNECTED)
            continue
        received_at = cast(dt.datetime, params["received_at"])
        if row.digest is not None:
            claim = raw.execute(
                _SQLITE_CLAIM_DIGEST,
                (params["connection_id"], row.digest, to_db(received_at), to_db(received_at - REPEAT_WINDOW)),
            )
            if claim.rowcount != 1:
                result.append(NotStored.REPEATED)
                continue
        values = [
            to_db(cast(dt.datetime | None, params[c])) if c in _UTC_COLUMNS else params[c]
            for c in _NEW_WEBHOOK_COLUMNS
        ]
        inserted = raw.execute(_SQLITE_ADD_WEBHOOK, values).lastrowid
        assert inserted is not None
        result.append(int(inserted))
    return result


def _insert_webhooks_postgresql(connection: Connection, rows: Sequence[NewWebhook]) -> list[int | NotStored]:
    params: dict[str, object] = {
        column: [row.params[column] for row in rows] for column in _NEW_WEBHOOK_COLUMNS
    }
    params["digest"] = [row.digest for row in rows]
    params["disconnected"] = str(ConnectionStatus.DISCONNECTED)
    params["repeat_window"] = REPEAT_WINDOW
    answer = connection.execute(_PG_ADD_WEBHOOKS, params).all()
    flags = sorted((int(ord_), bool(live), bool(kept)) for ord_, live, kept, _ in answer if ord_ is not None)
    ids = iter(sorted(int(row_id) for ord_, _, _, row_id in answer if ord_ is None))
    result: list[int | NotStored] = [
        next(ids) if kept else NotStored.REPEATED if live else NotStored.DISCONNECTED
        for _, live, kept in flags
    ]
    if len(result) != len(rows) or next(ids, None) is not None:
        raise RuntimeError("the inbox answered a different number of rows or ids than it was given")
    return result


def insert_webhooks(connection: Connection, rows: Sequence[NewWebhook]) -> list[int | NotStored]:
    """Insert the rows in the caller's transaction (any database): each one's inbox id, or why it
    got none."""
    if not rows:
        return []
    wanted = sorted({cast(int, row.params["connection_id"]) for row in rows})
    live = set(connection.execute(_LIVE_CONNECTIONS, {"ids": wanted}).scalars())
    claim = _CLAIM_DIGEST[connection.dialect.name]
    outcomes: list[NotStored | None] = []
    for row in rows:
        if row.params["connection_id"] not in live:
            outcomes.append(NotStored.DISCONNECTED)
        elif row.digest is not None and not _claimed(connection, claim, row):
            outcomes.append(NotStored.REPEATED)
        else:
            outcomes.append(None)
    kept = [row.params for row, outcome in zip(rows, outcomes, strict=True) if outcome is None]
    ids = iter(connection.execute(_ADD_WEBHOOKS, kept).scalars().all() if kept else ())
    return [int(next(ids)) if outcome is None else outcome for outcome in outcomes]


def _claimed(connection: Connection, claim: Any, row: NewWebhook) -> bool:
    received_at = cast(dt.datetime, row.params["received_at"])
    result = connection.execute(
        claim,
        {
            "connection_id": row.params["connection_id"],
            "digest": row.digest,
            "received_at": received_at,
            "repeat_before": received_at - REPEAT_WINDOW,
        },
    )
    return bool(result.rowcount)


def add_webhook(
    session: Session,
    cipher: Cipher,
    *,
    connection_id: int,
    event_name: str,
    object_id: str,
    raw_body: bytes,
    state: InboxState,
    now: dt.datetime,
) -> int | NotStored:
    """Store one authentic webhook in the session's unit of work, without a repeat check; its id,
    or DISCONNECTED. (The intake batches through `store_webhooks` instead.)"""
    row = prepare_webhook(
        cipher,
        connection_id=connection_id,
        event_name=event_name,
        object_id=object_id,
        raw_body=raw_body,
        state=state,
        now=now,
    )
    return insert_webhooks(session.connection(), [row])[0]


def last_received_at(session: Session, connection_id: int) -> dt.datetime | None:
    return session.scalar(
        select(func.max(WebhookInbox.received_at)).where(WebhookInbox.connection_id == connection_id)
    )


@dataclass(frozen=True, slots=True)
class InboxItem:
    """A leased inbox row, decrypted for the pipeline."""

    id: int
    connection_id: int
    event_name: str
    object_id: str
    raw_body: bytes
    received_at: dt.datetime
    attempts: int


def claim_due(
    session: Session,
    cipher: Cipher,
    *,
    owner: str,
    now: dt.datetime,
    lease_seconds: int,
    limit: int,
) -> list[InboxItem]:
    """Lease up to `limit` due rows to `owner`, taking turns between connections: each
    connection's oldest due row first, then each one's second, and so on. A burst for one
    connection therefore delays another connection's webhook by at most the batch in flight,
    while each connection's own rows still go oldest first. A crashed owner's lease runs out.

    PostgreSQL: FOR UPDATE SKIP LOCKED lets several processes claim side by side (the turns are
    ranked in a subquery: PostgreSQL locks no rows of a query level that has window functions).
    SQLite: the dialect drops the clause and BEGIN IMMEDIATE (storage.db) serialises claimers.
    """
    is_due = (
        WebhookInbox.state == InboxState.PENDING,
        WebhookInbox.available_at <= now,
        # Rows of a connection waiting for the customer to reconnect stay put (and keep their
        # retry budget) until it is active again.
        WebhookInbox.connection_id.in_(
            select(FreshBooksConnection.id).where(FreshBooksConnection.status == ConnectionStatus.ACTIVE)
        ),
        (WebhookInbox.lease_expires_at.is_(None)) | (WebhookInbox.lease_expires_at < now),
    )
    turns = (
        select(
            WebhookInbox.id.label("id"),
            func.row_number()
            .over(partition_by=WebhookInbox.connection_id, order_by=WebhookInbox.id)
            .label("turn"),
        )
        .where(*is_due)
        .subquery()
    )
    # The conditions again on the locked rows: a row another claimer leased while this statement
    # waited is re-checked against them (PostgreSQL re-evaluates the outer WHERE) and skipped.
    claim = (
        select(WebhookInbox)
        .join(turns, turns.c.id == WebhookInbox.id)
        .where(*is_due)
        .order_by(turns.c.turn, WebhookInbox.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=WebhookInbox)
    )
    rows = session.scalars(claim).all()
    items: list[InboxItem] = []
    for row in rows:
        row.lease_owner = owner
        row.lease_expires_at = now + dt.timedelta(seconds=lease_seconds)
        row.attempts += 1
        items.append(
            InboxItem(
                id=row.id,
                connection_id=row.connection_id,
                event_name=row.event_name,
                object_id=row.object_id,
                raw_body=cipher.decrypt_bytes(row.body_enc),
                received_at=row.received_at,
                attempts=row.attempts,
            )
        )
    return items


# Built once, as Core statements on the table: the pipeline finishes every row through these,
# and building an ORM-enabled UPDATE per row cost more than running it.
_OWNED = and_(_INBOX.c.id == bindparam("b_id"), _INBOX.c.lease_owner == bindparam("b_owner"))
_COMPLETE = (
    update(_INBOX)
    .where(_OWNED)
    .values(
        state=bindparam("b_state"),
        processed_at=bindparam("b_now", type_=_INBOX.c.processed_at.type),
        lease_owner=None,
        lease_expires_at=None,
        event_id=bindparam("b_event_id"),
        last_error=bindparam("b_error"),
    )
)
_RETRY_LATER = (
    update(_INBOX)
    .where(_OWNED)
    .values(
        available_at=bindparam("b_available_at", type_=_INBOX.c.available_at.type),
        lease_owner=None,
        lease_expires_at=None,
        last_error=bindparam("b_error"),
    )
)


def complete(
    session: Session,
    *,
    item_id: int,
    owner: str,
    state: InboxState,
    now: dt.datetime,
    event_id: int | None = None,
    error: str | None = None,
) -> bool:
    """Finish a leased row; False if the lease was lost (another worker took over)."""
    result = session.execute(
        _COMPLETE,
        {
            "b_id": item_id,
            "b_owner": owner,
            "b_state": str(state),
            "b_now": now,
            "b_event_id": event_id,
            "b_error": error[:500] if error else None,
        },
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def retry_later(session: Session, *, item_id: int, owner: str, available_at: dt.datetime, error: str) -> bool:
    result = session.execute(
        _RETRY_LATER,
        {"b_id": item_id, "b_owner": owner, "b_available_at": available_at, "b_error": error[:500]},
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def add_verification(
    session: Session,
    cipher: Cipher,
    *,
    connection_id: int,
    callback_id: int,
    verifier: str,
    now: dt.datetime,
    cap: int,
) -> int | None:
    """Store a verify request as a pending candidate; None (nothing stored) if the connection
    already has `cap` pending. Verify requests cannot be signed, so this bounds what anyone who
    knows a webhook URL can make the verification loop do for that connection."""
    # The connection's row lock makes the count exact under concurrent requests (PostgreSQL; on
    # SQLite writers are serialised anyway). Verify requests are rare: the hot path never waits.
    session.execute(
        select(FreshBooksConnection.id).where(FreshBooksConnection.id == connection_id).with_for_update()
    )
    pending = session.scalar(
        select(func.count()).where(
            CallbackVerification.connection_id == connection_id,
            CallbackVerification.state == VerificationState.PENDING,
        )
    )
    if (pending or 0) >= cap:
        return None
    row = CallbackVerification(
        connection_id=connection_id,
        callback_id=callback_id,
        verifier_enc=cipher.encrypt(verifier),
        state=VerificationState.PENDING,
        received_at=now,
    )
    session.add(row)
    session.flush()
    return row.id


def pending_verifications(
    session: Session, *, connection_id: int | None = None, limit: int = 500
) -> list[CallbackVerification]:
    """Pending candidates (of one connection, or of all), taking turns between connections: every
    connection's oldest first, then every second one... so a connection with many (a flood of
    forged requests) never keeps another's from being looked at in the same pass."""
    conditions = [CallbackVerification.state == VerificationState.PENDING]
    if connection_id is not None:
        conditions.append(CallbackVerification.connection_id == connection_id)
    turns = (
        select(
            CallbackVerification.id.label("id"),
            func.row_number()
            .over(partition_by=CallbackVerification.connection_id, order_by=CallbackVerification.id)
            .label("turn"),
        )
        .where(*conditions)
        .subquery()
    )
    return list(
        session.scalars(
            select(CallbackVerification)
            .join(turns, turns.c.id == CallbackVerification.id)
            .order_by(turns.c.turn, CallbackVerification.id)
            .limit(limit)
        )
    )


def drop_verification(session: Session, *, verification_id: int) -> bool:
    """Delete a pending candidate nobody needs (forged, or stale); False if another process
    already settled or dropped it."""
    result = session.execute(
        delete(CallbackVerification).where(
            CallbackVerification.id == verification_id,
            CallbackVerification.state == VerificationState.PENDING,
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def settle_verification(
    session: Session,
    *,
    verification_id: int,
    state: VerificationState,
    detail: str,
    now: dt.datetime,
) -> bool:
    """Move a pending verification to its final state; False if another process already did."""
    result = session.execute(
        update(CallbackVerification)
        .where(
            CallbackVerification.id == verification_id,
            CallbackVerification.state == VerificationState.PENDING,
        )
        .values(state=state, detail=detail[:200], processed_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def backlog(session: Session) -> tuple[int, dt.datetime | None]:
    """Pending rows and the oldest one's received_at, for /metrics (the state index finds them)."""
    count, oldest = session.execute(
        select(func.count(), func.min(WebhookInbox.received_at)).where(
            WebhookInbox.state == InboxState.PENDING
        )
    ).one()
    return int(count), oldest


def received_at(session: Session, inbox_id: int) -> dt.datetime | None:
    """When the webhook was accepted (the start of webhook-to-post latency)."""
    return session.scalar(select(WebhookInbox.received_at).where(WebhookInbox.id == inbox_id))
