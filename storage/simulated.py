"""Sample objects written by `fbslack simulate`: the one place that queries simulated_objects.

A simulated webhook names an object FreshBooks never had. The enricher answers its fetch from
here, so a simulation never reaches FreshBooks. Simulated ids live in a range no FreshBooks id can
reach, which is how the enricher tells them apart without a query for every real webhook.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from storage.crypto import Cipher
from storage.models import SimulatedObject

# FreshBooks ids are database integers that its JavaScript SDK carries as JSON numbers, so they stay
# below 2**53 (about 9.0e15; every id seen in its docs and SDK fixtures has at most 8 digits).
# Simulated ids are 18-digit numbers starting with 9 (9e17 and up): hundreds of times past what
# FreshBooks can hand out, yet still integers the object parser, a BIGINT and the webhook's
# object_id field all accept.
SIMULATED_ID_MIN = 9 * 10**17
_SIMULATED_ID = re.compile(r"^9[0-9]{17}$")


def is_simulated_id(object_id: str) -> bool:
    """Whether an object id belongs to `fbslack simulate` (never to a real FreshBooks object). Pure."""
    return bool(_SIMULATED_ID.match(object_id))


def new_simulated_id() -> str:
    """A fresh simulated id; random, so simulations from several hosts do not meet."""
    return str(SIMULATED_ID_MIN + secrets.randbelow(10**17))


def put_object(
    session: Session,
    cipher: Cipher,
    *,
    connection_id: int,
    kind: str,
    object_id: str,
    raw: dict[str, Any],
    now: dt.datetime,
) -> None:
    """Store the sample the enricher will be answered with (encrypted: it reads like customer data)."""
    if not is_simulated_id(object_id):
        raise ValueError("simulated objects need a simulated id (see is_simulated_id)")
    session.add(
        SimulatedObject(
            connection_id=connection_id,
            object_kind=kind,
            object_id=object_id,
            payload_enc=cipher.encrypt_json(raw),
            created_at=now,
        )
    )
    session.flush()


def get_object(
    session: Session, cipher: Cipher, *, connection_id: int, kind: str, object_id: str
) -> dict[str, Any] | None:
    token = session.scalar(
        select(SimulatedObject.payload_enc).where(
            SimulatedObject.connection_id == connection_id,
            SimulatedObject.object_kind == kind,
            SimulatedObject.object_id == object_id,
        )
    )
    if token is None:
        return None
    value: dict[str, Any] = cipher.decrypt_json(token)
    return value


def forget_object(session: Session, *, connection_id: int, object_id: str) -> int:
    """Remove a sample the instance never received (the webhook was refused); returns rows removed."""
    result = session.execute(
        delete(SimulatedObject).where(
            SimulatedObject.connection_id == connection_id, SimulatedObject.object_id == object_id
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
