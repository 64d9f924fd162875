"""The scheduled purge of audit history older than RETENTION_DAYS (0 keeps everything).

Runs once per interval across all processes (a job lease) and in batches, each its own transaction,
until nothing old is left or the time budget is spent; the next run continues.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time

from connector.domain.clock import Clock
from storage import leases, retention
from storage.db import Database
from storage.retention import Purged

log = logging.getLogger(__name__)

PURGE_INTERVAL = dt.timedelta(hours=6)


class RetentionPurge:
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        retention_days: int,
        batch_size: int = 1000,
        budget_seconds: float = 60,
    ) -> None:
        self._db = db
        self._clock = clock
        self._days = retention_days
        self._batch = batch_size
        self._budget = budget_seconds
        self._owner = f"purge-{os.getpid()}-{id(self):x}"

    def run(self) -> Purged:
        """The scheduled job: purge if this process holds the lease for this interval."""
        if self._days <= 0:
            return Purged()
        with self._db.session() as session:
            if not leases.try_acquire(
                session, name="retention-purge", owner=self._owner, now=self._clock(), ttl=PURGE_INTERVAL
            ):
                return Purged()
        return self.purge()

    def purge(self) -> Purged:
        now = self._clock()
        cutoff = now - dt.timedelta(days=self._days)
        total = Purged()
        deadline = time.monotonic() + self._budget
        # Order matters: inbox rows and deliveries first, so their events become unreferenced.
        while time.monotonic() < deadline:
            step = Purged()
            with self._db.session() as session:
                step.audit_entries = retention.purge_audit(session, cutoff=cutoff, batch=self._batch)
            with self._db.session() as session:
                step.inbox_rows = retention.purge_inbox(session, cutoff=cutoff, batch=self._batch)
            with self._db.session() as session:
                step.deliveries = retention.purge_deliveries(session, cutoff=cutoff, batch=self._batch)
            with self._db.session() as session:
                step.events = retention.purge_events(session, cutoff=cutoff, batch=self._batch)
            total.add(step)
            if step.total == 0:
                break
        with self._db.session() as session:
            total.other = retention.purge_leftovers(session, now=now, cutoff=cutoff)
        if total.total:
            log.info(
                "retention purge: %d audit entries, %d inbox rows, %d deliveries, %d events "
                "older than %d days",
                total.audit_entries,
                total.inbox_rows,
                total.deliveries,
                total.events,
                self._days,
                extra={"context": {"removed_other": total.other}},
            )
        return total
