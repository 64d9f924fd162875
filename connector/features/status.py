"""What `/freshbooks status` reports about a workspace's FreshBooks connections."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from connector.domain.events import SUPPORTED_EVENTS
from storage import connections, inbox
from storage.crypto import Cipher
from storage.db import Database


@dataclass(frozen=True, slots=True)
class ConnectionReport:
    connection_id: int
    business_name: str
    status: str
    status_reason: str | None
    callbacks_verified: int
    callbacks_expected: int
    token_expires_at: dt.datetime | None
    last_event_at: dt.datetime | None


def workspace_status(db: Database, cipher: Cipher, team_id: str) -> list[ConnectionReport]:
    reports: list[ConnectionReport] = []
    with db.session() as session:
        for connection in connections.connections_of_team(session, team_id):
            callbacks = connections.callbacks_of(session, connection.id)
            reports.append(
                ConnectionReport(
                    connection_id=connection.id,
                    business_name=(
                        cipher.decrypt(connection.business_name_enc)
                        if connection.business_name_enc
                        else connection.account_id
                    ),
                    status=connection.status,
                    status_reason=connection.status_reason,
                    callbacks_verified=len({c.event for c in callbacks if c.verified and c.verifier_enc}),
                    callbacks_expected=len(SUPPORTED_EVENTS),
                    token_expires_at=connection.token_expires_at,
                    last_event_at=inbox.last_received_at(session, connection.id),
                )
            )
    return reports
