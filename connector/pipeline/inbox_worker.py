"""Leases inbox rows and runs them through the pipeline, with retries; several processes may share it."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy.orm import Session

from connector.domain.clock import Clock
from connector.domain.process import worker_id
from connector.pipeline.backoff import retry_delay
from connector.pipeline.stages import Handler, PermanentFailure, RetryLater
from connector.telemetry import metrics
from storage import inbox
from storage.crypto import Cipher
from storage.db import Database
from storage.inbox import InboxItem
from storage.models import InboxState

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Result:
    """What became of one claimed row: a final state, or (state None) a retry at available_at."""

    item: InboxItem
    state: InboxState | None
    event_id: int | None = None
    error: str | None = None
    available_at: dt.datetime | None = None


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
        self.batch_size = batch_size
        self.owner = worker_id()

    def run_once(self) -> int:
        """Claim a batch of due rows, run each through the pipeline, record all results at once.

        One write transaction to claim and one to finish the batch: on SQLite the write lock is
        shared with the web workers acknowledging webhooks, so the background takes it rarely.
        """
        with self._db.session() as session:
            items = inbox.claim_due(
                session,
                self._cipher,
                owner=self.owner,
                now=self._clock(),
                lease_seconds=self._lease,
                limit=self.batch_size,
            )
        if not items:
            return 0
        results = [self._process(item) for item in items]
        with self._db.session() as session:
            finished = [self._apply(session, result) for result in results]
        for result, done in zip(results, finished, strict=True):
            self._report(result, done)
        return len(items)

    def _process(self, item: InboxItem) -> _Result:
        context = {"inbox_id": item.id, "event": item.event_name, "connection_id": item.connection_id}
        try:
            result = self._handler(item)
        except RetryLater as exc:
            return self._retry(item, str(exc), exc.not_before)
        except PermanentFailure as exc:
            log.error("inbox item failed: %s", exc, extra={"context": context})
            return _Result(item, InboxState.FAILED, error=str(exc))
        except Exception as exc:
            # A bug in a stage: keep the row, retry on the schedule, and say so loudly.
            log.exception("inbox item raised", extra={"context": context})
            return self._retry(item, f"{type(exc).__name__} in pipeline", None)
        return _Result(item, result.state, event_id=result.event_id, error=result.note)

    def _retry(self, item: InboxItem, error: str, not_before: dt.datetime | None) -> _Result:
        delay = retry_delay(item.attempts)
        if delay is None:
            log.error("inbox item %d failed after %d attempts: %s", item.id, item.attempts, error)
            return _Result(item, InboxState.FAILED, error=f"gave up after {item.attempts} attempts: {error}")
        available_at = self._clock() + delay
        if not_before is not None and not_before > available_at:
            available_at = not_before
        return _Result(item, None, error=error, available_at=available_at)

    def _apply(self, session: Session, result: _Result) -> bool:
        if result.state is None:
            assert result.available_at is not None
            return inbox.retry_later(
                session,
                item_id=result.item.id,
                owner=self.owner,
                available_at=result.available_at,
                error=result.error or "",
            )
        return inbox.complete(
            session,
            item_id=result.item.id,
            owner=self.owner,
            state=result.state,
            now=self._clock(),
            event_id=result.event_id,
            error=result.error,
        )

    def _report(self, result: _Result, done: bool) -> None:
        if not done:
            log.warning("lost the lease on inbox item %d before finishing it", result.item.id)
            return
        if result.state is None:
            assert result.available_at is not None
            metrics.INBOX_PROCESSED.labels(outcome="retry").inc()
            log.warning(
                "inbox item %d will be retried at %s: %s",
                result.item.id,
                result.available_at.isoformat(timespec="seconds"),
                result.error,
            )
        else:
            metrics.INBOX_PROCESSED.labels(outcome=result.state).inc()
