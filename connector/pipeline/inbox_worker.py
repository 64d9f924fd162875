"""Leases inbox rows and runs them through the pipeline, with retries; several processes may share it."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from connector import metrics
from connector.backoff import retry_delay
from connector.clock import Clock
from connector.process import worker_id
from storage import inbox
from storage.crypto import Cipher
from storage.db import Database
from storage.inbox import InboxItem
from storage.models import InboxState

log = logging.getLogger(__name__)


class RetryLater(Exception):
    """Raised by a stage when the item should be tried again later (the message is logged)."""

    def __init__(self, message: str, *, not_before: dt.datetime | None = None) -> None:
        super().__init__(message)
        self.not_before = not_before


class PermanentFailure(Exception):
    """Raised by a stage when retrying cannot help; the item is marked failed for a person to look at."""


@dataclass(frozen=True, slots=True)
class Processed:
    state: InboxState
    event_id: int | None = None
    note: str | None = None  # why a row was ignored, kept on the row for people looking later


Handler = Callable[[InboxItem], Processed]


class InboxWorker:
    def __init__(
        self,
        *,
        db: Database,
        cipher: Cipher,
        handler: Handler,
        clock: Clock,
        lease_seconds: int = 120,
        batch_size: int = 20,
    ) -> None:
        self._db = db
        self._cipher = cipher
        self._handler = handler
        self._clock = clock
        self._lease = lease_seconds
        self._batch = batch_size
        self.owner = worker_id()

    def run_once(self) -> int:
        """Claim and process one batch of due rows; returns how many were claimed."""
        with self._db.session() as session:
            items = inbox.claim_due(
                session,
                self._cipher,
                owner=self.owner,
                now=self._clock(),
                lease_seconds=self._lease,
                limit=self._batch,
            )
        for item in items:
            self._process(item)
        return len(items)

    def _process(self, item: InboxItem) -> None:
        context = {"inbox_id": item.id, "event": item.event_name, "connection_id": item.connection_id}
        try:
            result = self._handler(item)
        except RetryLater as exc:
            self._retry(item, str(exc), exc.not_before)
            return
        except PermanentFailure as exc:
            self._finish(item, InboxState.FAILED, error=str(exc))
            log.error("inbox item failed: %s", exc, extra={"context": context})
            return
        except Exception as exc:
            # A bug in a stage: keep the row, retry on the schedule, and say so loudly.
            log.exception("inbox item raised", extra={"context": context})
            self._retry(item, f"{type(exc).__name__} in pipeline", None)
            return
        self._finish(item, result.state, event_id=result.event_id, error=result.note)

    def _finish(
        self, item: InboxItem, state: InboxState, *, event_id: int | None = None, error: str | None = None
    ) -> None:
        with self._db.session() as session:
            done = inbox.complete(
                session,
                item_id=item.id,
                owner=self.owner,
                state=state,
                now=self._clock(),
                event_id=event_id,
                error=error,
            )
        if done:
            metrics.INBOX_PROCESSED.labels(outcome=state).inc()
        else:
            log.warning("lost the lease on inbox item %d before finishing it", item.id)

    def _retry(self, item: InboxItem, error: str, not_before: dt.datetime | None) -> None:
        delay = retry_delay(item.attempts)
        if delay is None:
            self._finish(item, InboxState.FAILED, error=f"gave up after {item.attempts} attempts: {error}")
            log.error("inbox item %d failed after %d attempts: %s", item.id, item.attempts, error)
            return
        available_at = self._clock() + delay
        if not_before is not None and not_before > available_at:
            available_at = not_before
        with self._db.session() as session:
            inbox.retry_later(
                session, item_id=item.id, owner=self.owner, available_at=available_at, error=error
            )
        metrics.INBOX_PROCESSED.labels(outcome="retry").inc()
        log.warning(
            "inbox item %d will be retried at %s: %s",
            item.id,
            available_at.isoformat(timespec="seconds"),
            error,
        )
