"""Route: turn each recorded event into deliveries, one per channel its workspace's rules name.

Runs in the background after enrichment. Each batch of events is routed in one transaction:
the deliveries are inserted and the events marked routed together, so an event is routed exactly
once however often this runs or crashes (and the unique (event, channel) backs that up).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Protocol

from sqlalchemy.orm import Session

from connector.domain.clock import Clock
from connector.domain.quiet import quiet_until
from connector.domain.rules import Target
from connector.freshbooks.models import FreshBooksObject, parse_stored
from connector.pipeline.route.matching import facts_of, targets
from storage import outbox, quiet, rules
from storage.crypto import Cipher
from storage.db import Database
from storage.models import Event, FreshBooksConnection

log = logging.getLogger(__name__)


class RouteHook(Protocol):
    """Work done on every routed event, notable or not, in the routing transaction (the audit index)."""

    def prepare(self) -> None: ...

    def on_event(
        self, session: Session, *, event: Event, obj: FreshBooksObject | None, workspace_id: int
    ) -> None: ...


class Router:
    def __init__(
        self,
        *,
        db: Database,
        cipher: Cipher,
        clock: Clock,
        hooks: Sequence[RouteHook] = (),
        batch_size: int = 50,
    ) -> None:
        self._db = db
        self._cipher = cipher
        self._clock = clock
        self._hooks = tuple(hooks)
        self._batch = batch_size

    def run_once(self) -> int:
        """Route one batch; returns how many deliveries were queued."""
        now = self._clock()
        queued = 0
        for hook in self._hooks:
            hook.prepare()
        with self._db.session() as session:
            for event in outbox.unrouted_events(session, limit=self._batch):
                event.routed_at = now
                connection = session.get_one(FreshBooksConnection, event.connection_id)
                obj = self._object(event)
                for hook in self._hooks:
                    hook.on_event(session, event=event, obj=obj, workspace_id=connection.workspace_id)
                if not event.notable:
                    continue  # an update nobody needs to hear about
                facts = facts_of(event.name, obj)
                for target in targets(
                    facts, rules.rules_of_connection(session, self._cipher, event.connection_id)
                ):
                    held = (
                        None
                        if target.urgent
                        else self._quiet_until(session, connection.workspace_id, target, now)
                    )
                    collapse_at = target.collapse_at
                    if held is not None and collapse_at is not None:
                        collapse_at = 2  # what waited out the quiet hours goes out as one summary
                    queued += outbox.add_delivery(
                        session,
                        event_id=event.id,
                        workspace_id=connection.workspace_id,
                        channel_id=target.channel_id,
                        rule_ids=list(target.rule_ids),
                        now=now,
                        collapse_at=collapse_at,
                        not_before=held,
                    )
        if queued:
            log.info("queued %d deliveries", queued)
        return queued

    def _quiet_until(
        self, session: Session, workspace_id: int, target: Target, now: dt.datetime
    ) -> dt.datetime | None:
        """When the channel's quiet hours end, if it is in them now (its deliveries wait till then)."""
        hours = quiet.quiet_of_channel(session, workspace_id=workspace_id, channel_id=target.channel_id)
        return None if hours is None else quiet_until(hours, now)

    def _object(self, event: Event) -> FreshBooksObject | None:
        raw = self._cipher.decrypt_json(event.object_enc) if event.object_enc else None
        return parse_stored(event.object_kind, raw)
