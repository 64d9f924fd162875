"""Recorded events: the one place that queries the events table."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.crypto import Cipher
from storage.db import upsert_insert
from storage.models import Event


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
