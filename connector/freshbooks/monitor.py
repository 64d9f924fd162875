"""The scheduled callback check: FreshBooks may disable or drop callbacks, so we look regularly."""

from __future__ import annotations

import datetime as dt
import logging

from connector.domain.clock import Clock
from connector.domain.process import worker_id
from connector.freshbooks.callbacks import CallbackRegistrar
from connector.freshbooks.client import FreshBooksError
from connector.freshbooks.tokens import NoToken
from connector.slack.notify import Notifier
from storage import connections, leases
from storage.db import Database

log = logging.getLogger(__name__)

CHECK_INTERVAL = dt.timedelta(minutes=15)


class CallbackMonitor:
    def __init__(
        self,
        *,
        db: Database,
        registrar: CallbackRegistrar,
        notifier: Notifier,
        clock: Clock,
        interval: dt.timedelta = CHECK_INTERVAL,
    ) -> None:
        self._db = db
        self._registrar = registrar
        self._notifier = notifier
        self._clock = clock
        self._interval = interval
        self._owner = worker_id()

    def run(self) -> int:
        """Check every active connection, once per interval across all processes; returns how many."""
        with self._db.session() as session:
            # Slightly shorter than the interval, so the next tick of whichever process runs it wins.
            if not leases.try_acquire(
                session,
                name="callback-check",
                owner=self._owner,
                now=self._clock(),
                ttl=self._interval - dt.timedelta(seconds=30),
            ):
                return 0
            ids = connections.active_connection_ids(session)
        for connection_id in ids:
            self.check(connection_id)
        return len(ids)

    def check(self, connection_id: int) -> bool:
        try:
            health = self._registrar.ensure_all(connection_id)
            healthy, detail = health.healthy, f"{health.verified} of {health.expected} webhooks verified"
        except (FreshBooksError, NoToken) as exc:
            healthy, detail = False, f"FreshBooks could not be asked ({exc})"
        with self._db.session() as session:
            changed = connections.flag_callbacks_alert(
                session, connection_id=connection_id, at=None if healthy else self._clock()
            )
            team_id, user_id = connections.team_of(session, connection_id)
        if changed and user_id:
            if healthy:
                text = ":white_check_mark: FreshBooks webhooks are healthy again; events are flowing."
            else:
                text = (
                    f":warning: FreshBooks webhooks need attention: {detail}. The connector keeps "
                    "retrying; `/freshbooks status` shows the state, `/freshbooks connect` renews the "
                    "connection."
                )
            self._notifier.tell_user(team_id=team_id, user_id=user_id, text=text)
        if not healthy:
            log.warning("callback check: %s", detail, extra={"context": {"connection_id": connection_id}})
        return healthy
