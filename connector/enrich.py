"""Enrich: fetch the object a webhook names and record the event, once per distinct change.

FreshBooks webhooks carry IDs only, may arrive twice and out of order. The object is fetched
fresh and the event keyed on (connection, event name, object id, object's `updated`), so a
repeated delivery of the same change maps onto the event already recorded.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from connector.clock import Clock
from connector.events import SUPPORTED_EVENTS, ObjectKind
from connector.freshbooks.client import ErrorKind, FreshBooksClient, FreshBooksError
from connector.freshbooks.tokens import NoToken, TokenSource
from connector.pipeline.inbox_worker import PermanentFailure, Processed, RetryLater
from storage import connections, events
from storage.crypto import Cipher
from storage.db import Database
from storage.inbox import InboxItem
from storage.models import InboxState

log = logging.getLogger(__name__)

# Marks an object FreshBooks no longer returns (a delete may answer 404 instead of vis_state 1).
GONE = "gone"


def change_marker(obj: dict[str, Any] | None) -> str:
    """The value that tells two versions of an object apart: its `updated` timestamp. Pure."""
    if obj is None:
        return GONE
    for key in ("updated", "updated_at"):
        value = obj.get(key)
        if value:
            return str(value)[:40]
    # No timestamp at all: fall back to the visible state so a repeat still matches itself.
    return f"vis{obj.get('vis_state', '')}"


class Enricher:
    """The pipeline handler for inbox rows (connector.pipeline.inbox_worker.Handler)."""

    def __init__(
        self,
        *,
        db: Database,
        cipher: Cipher,
        client: FreshBooksClient,
        tokens: TokenSource,
        clock: Clock,
    ) -> None:
        self._db = db
        self._cipher = cipher
        self._client = client
        self._tokens = tokens
        self._clock = clock

    def __call__(self, item: InboxItem) -> Processed:
        kind = SUPPORTED_EVENTS.get(item.event_name)
        if kind is None:
            return Processed(InboxState.IGNORED)
        obj = self._fetch(item, kind)
        with self._db.session() as session:
            event_id, created = events.record_event(
                session,
                self._cipher,
                connection_id=item.connection_id,
                inbox_id=item.id,
                object_kind=kind,
                name=item.event_name,
                object_id=item.object_id,
                object_updated=change_marker(obj),
                obj=obj,
            )
        return Processed(InboxState.DONE if created else InboxState.DUPLICATE, event_id)

    def _fetch(self, item: InboxItem, kind: ObjectKind) -> dict[str, Any] | None:
        with self._db.session() as session:
            account_id = connections.account_id(session, item.connection_id)
        try:
            return self._tokens.call(
                item.connection_id,
                lambda token: self._client.get_object(
                    token=token, account_id=account_id, kind=kind, object_id=item.object_id
                ),
            )
        except NoToken as exc:
            raise RetryLater(str(exc)) from None
        except FreshBooksError as error:
            if error.kind is ErrorKind.NOT_FOUND and item.event_name.endswith(".delete"):
                return None
            if error.transient or error.kind is ErrorKind.AUTH:
                not_before = (
                    self._clock() + dt.timedelta(seconds=error.retry_after)
                    if error.retry_after is not None
                    else None
                )
                raise RetryLater(f"FreshBooks {error.kind}", not_before=not_before) from None
            raise PermanentFailure(f"FreshBooks {error.kind}: {error.message}") from None
