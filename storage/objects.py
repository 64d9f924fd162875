"""Last known state of each FreshBooks object: the one place that queries object_states."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage.crypto import Cipher
from storage.models import ObjectState


def get_state(
    session: Session, cipher: Cipher, *, connection_id: int, kind: str, object_id: str
) -> dict[str, Any] | None:
    token = session.scalar(
        select(ObjectState.snapshot_enc).where(
            ObjectState.connection_id == connection_id,
            ObjectState.object_kind == kind,
            ObjectState.object_id == object_id,
        )
    )
    if token is None:
        return None
    value: dict[str, Any] = cipher.decrypt_json(token)
    return value


def put_state(
    session: Session,
    cipher: Cipher,
    *,
    connection_id: int,
    kind: str,
    object_id: str,
    updated: str,
    raw: dict[str, Any],
    now: dt.datetime,
) -> None:
    row = session.scalar(
        select(ObjectState)
        .where(
            ObjectState.connection_id == connection_id,
            ObjectState.object_kind == kind,
            ObjectState.object_id == object_id,
        )
        .with_for_update()
    )
    if row is None:
        try:
            with session.begin_nested():  # two workers may meet a new object at the same moment
                session.add(
                    ObjectState(
                        connection_id=connection_id,
                        object_kind=kind,
                        object_id=object_id,
                        updated=updated,
                        snapshot_enc=cipher.encrypt_json(raw),
                        seen_at=now,
                    )
                )
            return
        except IntegrityError:
            row = session.scalars(
                select(ObjectState).where(
                    ObjectState.connection_id == connection_id,
                    ObjectState.object_kind == kind,
                    ObjectState.object_id == object_id,
                )
            ).one()
    row.updated = updated
    row.snapshot_enc = cipher.encrypt_json(raw)
    row.seen_at = now


def states_of_kind(
    session: Session, cipher: Cipher, *, connection_id: int, kind: str
) -> list[dict[str, Any]]:
    tokens = session.scalars(
        select(ObjectState.snapshot_enc)
        .where(ObjectState.connection_id == connection_id, ObjectState.object_kind == kind)
        .order_by(ObjectState.id)
    ).all()
    return [cipher.decrypt_json(t) for t in tokens]
