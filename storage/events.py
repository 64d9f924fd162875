"""Recorded events: the one place that queries the events table."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from storage.crypto import Cipher
from storage.db import upsert_insert
from storage.models import Event, FreshBooksConnection


def record_event(
    session: Session,
    cipher: Cipher,
    *,
    connection_id: int,
    inbox_id: int | None,
    object_kind: str,
    name: str,
    object_id: str,
    object_updated: str,
    obj: dict[str, Any] | None,
    now: dt.datetime,
    source: str = "webhook",
    notable: bool = True,
) -> tuple[int, bool]:
    """Insert the event unless an identical one exists; return (event id, whether it is new).

    The unique key (connection, name, object id, object's `updated`) is what makes FreshBooks'
    repeated deliveries harmless: the database, not a read-then-write check, decides.
    """
    values = {
        "connection_id": connection_id,
        "inbox_id": inbox_id,
        "object_kind": object_kind,
        "source": source,
        "name": name,
        "object_id": object_id,
        "object_updated": object_updated,
        "object_enc": cipher.encrypt_json(obj) if obj is not None else None,
        "notable": notable,
        "created_at": now,
    }
    statement = upsert_insert(session, Event).values(**values).on_conflict_do_nothing().returning(Event.id)
    new_id = session.scalar(statement)
    if new_id is not None:
        return new_id, True
    existing = session.scalar(
        select(Event.id).where(
            Event.connection_id == connection_id,
            Event.name == name,
            Event.object_id == object_id,
            Event.object_updated == object_updated,
        )
    )
    assert existing is not None
    return existing, False


def change_recorded(
    session: Session,
    *,
    connection_id: int,
    object_kind: str,
    object_id: str,
    object_updated: str,
    sources: tuple[str, ...] = ("webhook", "poll"),
) -> bool:
    """Whether an event from one of `sources` already reported this version of the object."""
    return (
        session.scalar(
            select(Event.id)
            .where(
                Event.connection_id == connection_id,
                Event.object_kind == object_kind,
                Event.object_id == object_id,
                Event.object_updated == object_updated,
                Event.source.in_(sources),
            )
            .limit(1)
        )
        is not None
    )


def recent_of_workspace(
    session: Session,
    *,
    workspace_id: int,
    since: dt.datetime,
    names: Collection[str],
    limit: int,
) -> list[Row[int, str, str, str | None, dt.datetime]]:
    """(id, name, object kind, object_enc, created_at) of the workspace's notable events named
    `names` recorded since `since`, newest first, at most `limit` (a rule preview's scan)."""
    statement = (
        select(Event.id, Event.name, Event.object_kind, Event.object_enc, Event.created_at)
        .join(FreshBooksConnection, FreshBooksConnection.id == Event.connection_id)
        .where(
            FreshBooksConnection.workspace_id == workspace_id,
            Event.created_at >= since,
            Event.notable.is_(True),
            Event.name.in_(list(names)),
        )
        .order_by(Event.id.desc())
        .limit(limit)
    )
    return list(session.execute(statement).all())


def latest_object(
    session: Session, cipher: Cipher, *, connection_id: int, kind: str, object_id: str
) -> dict[str, Any] | None:
    """The object as the newest event about it recorded it (None: no event carried it)."""
    token = session.scalar(
        select(Event.object_enc)
        .where(
            Event.connection_id == connection_id,
            Event.object_kind == kind,
            Event.object_id == object_id,
            Event.object_enc.is_not(None),
        )
        .order_by(Event.id.desc())
        .limit(1)
    )
    if token is None:
        return None
    value: dict[str, Any] = cipher.decrypt_json(token)
    return value
