"""Route: turn each recorded event into deliveries, one per channel its workspace's rules name.

Runs in the background after enrichment. Each batch of events is routed in one transaction:
the deliveries are inserted and the events marked routed together, so an event is routed exactly
once however often this runs or crashes (and the unique (event, channel) backs that up).
"""

from __future__ import annotations

import logging

from connector.clock import Clock
from connector.events import ObjectKind
from connector.freshbooks.models import ObjectParseError, parse_object
from connector.route import RoutableEvent, facts_of, targets
from storage import outbox, rules
from storage.crypto import Cipher
from storage.db import Database
from storage.models import Event, FreshBooksConnection

log = logging.getLogger(__name__)


class Router:
    def __init__(self, *, db: Database, cipher: Cipher, clock: Clock, batch_size: int = 50) -> None:
        self._db = db
        self._cipher = cipher
        self._clock = clock
        self._batch = batch_size

    def run_once(self) -> int:
        """Route one batch; returns how many deliveries were queued."""
        now = self._clock()
        queued = 0
        with self._db.session() as session:
            for event in outbox.unrouted_events(session, limit=self._batch):
                event.routed_at = now
                if not event.notable:
                    continue  # an update nobody needs to hear about
                connection = session.get_one(FreshBooksConnection, event.connection_id)
                for target in targets(
                    self._facts(event), rules.rules_of_connection(session, self._cipher, event.connection_id)
                ):
                    queued += outbox.add_delivery(
                        session,
                        event_id=event.id,
                        workspace_id=connection.workspace_id,
                        channel_id=target.channel_id,
                        rule_ids=list(target.rule_ids),
                        now=now,
                    )
        if queued:
            log.info("queued %d deliveries", queued)
        return queued

    def _facts(self, event: Event) -> RoutableEvent:
        raw = self._cipher.decrypt_json(event.object_enc) if event.object_enc else None
        try:
            obj = parse_object(ObjectKind(event.object_kind), raw) if raw is not None else None
        except ObjectParseError:
            obj = None
        return facts_of(event.name, obj)
