"""Route: turn each recorded event into deliveries, one per channel its workspace's rules name.

Runs in the background after enrichment. Each batch of events is routed in one transaction:
the deliveries are inserted and the events marked routed together, so an event is routed exactly
once however often this runs or crashes (and the unique (event, channel) backs that up).
"""

from __future__ import annotations

import logging

from connector.domain.clock import Clock
from connector.features.audit.search import index_terms
from connector.freshbooks.models import FreshBooksObject, parse_stored
from connector.pipeline.route.matching import facts_of, targets
from storage import outbox, rules, search
from storage.crypto import Cipher
from storage.db import Database
from storage.models import Event, FreshBooksConnection
from storage.search import BlindIndex

log = logging.getLogger(__name__)


class Router:
    def __init__(
        self, *, db: Database, cipher: Cipher, clock: Clock, blind_index: BlindIndex, batch_size: int = 50
    ) -> None:
        self._db = db
        self._cipher = cipher
        self._clock = clock
        self._index = blind_index
        self._batch = batch_size

    def run_once(self) -> int:
        """Route one batch; returns how many deliveries were queued."""
        now = self._clock()
        queued = 0
        self._index.ensure_key()
        with self._db.session() as session:
            for event in outbox.unrouted_events(session, limit=self._batch):
                event.routed_at = now
                connection = session.get_one(FreshBooksConnection, event.connection_id)
                obj = self._object(event)
                # Every event is findable by `/freshbooks audit`, posted or not.
                terms = index_terms(self._index, event.name, obj)
                search.add_terms(
                    session, workspace_id=connection.workspace_id, event_id=event.id, terms=terms
                )
                if not event.notable:
                    continue  # an update nobody needs to hear about
                facts = facts_of(event.name, obj)
                for target in targets(
                    facts, rules.rules_of_connection(session, self._cipher, event.connection_id)
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

    def _object(self, event: Event) -> FreshBooksObject | None:
        raw = self._cipher.decrypt_json(event.object_enc) if event.object_enc else None
        return parse_stored(event.object_kind, raw)
