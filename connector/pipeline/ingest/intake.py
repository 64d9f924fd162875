"""The webhook intake service: verify, parse, store, answer. No FreshBooks or Slack call here."""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from connector.domain.clock import Clock
from connector.domain.events import SUPPORTED_EVENTS
from connector.freshbooks.verification import MAX_PENDING_PER_CONNECTION
from connector.pipeline.ingest.batcher import CommitFailed, GroupCommit
from connector.pipeline.ingest.form import (
    MalformedWebhook,
    Notification,
    VerifyRequest,
    is_verify,
    parse_fields,
    parse_notification,
    parse_verify,
)
from connector.pipeline.ingest.signature import signature_matches
from connector.telemetry import metrics
from storage import connections, inbox
from storage.crypto import Cipher
from storage.db import Database
from storage.inbox import NotStored
from storage.models import InboxState
from storage.search import BlindIndex

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IntakeResult:
    status: int
    message: str
    inbox_id: int | None = None


@dataclass(frozen=True, slots=True)
class _Outcome:
    result: IntakeResult
    reject_reason: str | None = None
    connection_id: int | None = None
    event: str | None = None
    object_id: str | None = None
    callback_id: int | None = None
    repeated: bool = False


def _rejected(status: int, reason: str, message: str, connection_id: int | None = None) -> _Outcome:
    return _Outcome(IntakeResult(status, message), reject_reason=reason, connection_id=connection_id)


@dataclass(frozen=True, slots=True)
class _Accepted:
    """An authentic webhook, parsed and encrypted: the row for the group commit."""

    row: inbox.NewWebhook
    connection_id: int
    notification: Notification
    supported: bool


class Deferred(enum.Enum):
    """`Intake.receive_soon` has no answer yet."""

    PENDING = "pending"  # the webhook is in the group commit; `answer` will be called
    BLOCKING = "blocking"  # it needs the database first: call `receive` in a thread


@dataclass(frozen=True, slots=True)
class _Target:
    connection_id: int
    account_id: str
    verifiers: tuple[str, ...]
    expires: float


def _describe(exc: BaseException) -> str:
    """The error's kind and the driver's first line, for the log: SQLAlchemy's own message would
    also list the statement's parameters (ciphertext, object IDs). Pure."""
    orig = getattr(exc, "orig", None)
    cause = orig if isinstance(orig, BaseException) else exc
    first_line = (str(cause).strip().splitlines() or [""])[0][:200]
    return f"{type(exc).__name__} ({type(cause).__name__}: {first_line})"


# How long a connection's verifiers are reused without asking the database. A verifier that is
# newer than the cache is still found: a signature that fails against cached verifiers is checked
# once more against fresh ones before it is refused.
TARGET_TTL_SECONDS = 5.0


class Intake:
    """Receives one webhook request; `on_stored`/`on_verify` wake the background workers."""

    def __init__(
        self,
        *,
        db: Database,
        cipher: Cipher,
        clock: Clock,
        blind_index: BlindIndex,
        on_stored: Callable[[], None],
        on_verify: Callable[[], None],
    ) -> None:
        self._db = db
        self._cipher = cipher
        self._clock = clock
        self._blind_index = blind_index
        self._on_stored = on_stored
        self._on_verify = on_verify
        self._targets: dict[str, _Target] = {}
        self._targets_lock = threading.Lock()
        # Concurrent requests of this process share one transaction and one commit.
        self._inserts: GroupCommit[inbox.NewWebhook, int | NotStored] = GroupCommit(self._insert_batch)

    def _insert_batch(self, rows: Sequence[inbox.NewWebhook]) -> list[int | NotStored]:
        try:
            results = inbox.store_webhooks(self._db, rows)
        except Exception as exc:
            # Once per batch; each request of it then answers 503 and logs its own rejection.
            log.error("%d webhook(s) not stored, rolled back: %s", len(rows), _describe(exc))
            raise
        # Committed. What a stored webhook sets off is done once per batch, before its requests are
        # answered: one log line, one counter update per event name, one wake-up. Per request they
        # cost a write(), a metrics file update and a datagram each, and the batch's other threads
        # wait for the GIL meanwhile (issue 12, section 5).
        stored = [(i, row.params) for i, row in zip(results, rows, strict=True) if isinstance(i, int)]
        if not stored:
            return results
        log.info(
            "webhook stored" if len(stored) == 1 else f"{len(stored)} webhooks stored",
            extra={
                "context": {
                    "webhooks": [
                        {
                            "inbox_id": inbox_id,
                            "connection_id": p["connection_id"],
                            "event": p["event_name"],
                            "object_id": p["object_id"],
                        }
                        for inbox_id, p in stored
                    ]
                }
            },
        )
        for event, count in Counter(str(p["event_name"]) for _, p in stored).items():
            metrics.WEBHOOKS_RECEIVED.labels(event=event).inc(count)
        if any(p["state"] == str(InboxState.PENDING) for _, p in stored):
            self._on_stored()
        return results

    def _target(self, token: str, *, fresh: bool) -> _Target | None:
        key = connections.webhook_token_hash(token)
        now = time.monotonic()
        if not fresh:
            with self._targets_lock:
                cached = self._targets.get(key)
            if cached is not None and cached.expires > now:
                return cached
        # A read-only unit of work: no write lock, so a lookup never queues behind a commit.
        with self._db.read() as session:
            found = connections.find_webhook_target(session, token)
        if found is None:
            with self._targets_lock:
                self._targets.pop(key, None)
            return None
        target = _Target(
            connection_id=found.connection_id,
            account_id=found.account_id,
            verifiers=tuple(self._cipher.decrypt(v) for v in found.verifiers_enc),
            expires=now + TARGET_TTL_SECONDS,
        )
        with self._targets_lock:
            if len(self._targets) > 10_000:  # bounded: connections, not senders, fill it
                self._targets.clear()
            self._targets[key] = target
        return target

    def receive(
        self, *, token: str, raw_body: bytes, content_type: str | None, signature: str | None
    ) -> IntakeResult:
        """Handle one request to /freshbooks/webhooks/<token>; the answer is only sent after commit."""
        return self._finish(self._store(token, raw_body, content_type, signature))

    def receive_soon(
        self,
        *,
        token: str,
        raw_body: bytes,
        content_type: str | None,
        signature: str | None,
        answer: Callable[[IntakeResult], None],
    ) -> IntakeResult | Deferred:
        """`receive` for a caller that must not block (the web front's event loop).

        The answer itself when no database is needed for it (a refusal); PENDING when the webhook
        went to the group commit, whose thread calls `answer` with the result after the commit;
        BLOCKING when it needs the database first (a lookup not cached, a callback.verify, a
        signature that fails against the cached verifiers): then call `receive` in a thread.
        """
        key = connections.webhook_token_hash(token)
        with self._targets_lock:
            target = self._targets.get(key)
        if target is None or target.expires <= time.monotonic():
            return Deferred.BLOCKING
        checked = self._check(token, target, raw_body, content_type, signature, blocking=False)
        if checked is None:
            return Deferred.BLOCKING
        if isinstance(checked, _Outcome):
            return self._finish(checked)

        def committed(inbox_id: int | NotStored | None, failed: CommitFailed | None) -> None:
            answer(self._finish(self._committed(checked, inbox_id, failed)))

        self._inserts.submit_nowait(checked.row, committed)
        return Deferred.PENDING

    def _finish(self, outcome: _Outcome) -> IntakeResult:
        # The unit of work has committed: side effects (logs, counters, wake-ups) come after.
        if outcome.reject_reason:
            metrics.WEBHOOKS_REJECTED.labels(reason=outcome.reject_reason).inc()
            # Never the body or the signature: IDs and the reason only.
            log.warning(
                "webhook rejected: %s (%s)",
                outcome.result.message,
                outcome.reject_reason,
                extra={"context": {"connection_id": outcome.connection_id}},
            )
        elif outcome.repeated:
            assert outcome.event is not None
            metrics.WEBHOOKS_REPEATED.labels(event=outcome.event).inc()
            log.info(
                "webhook repeated, acknowledged without storing it again",
                extra={
                    "context": {
                        "connection_id": outcome.connection_id,
                        "event": outcome.event,
                        "object_id": outcome.object_id,
                    }
                },
            )
        elif outcome.callback_id is not None:
            metrics.VERIFICATIONS.labels(outcome="received").inc()
            log.info(
                "callback.verify received",
                extra={
                    "context": {"connection_id": outcome.connection_id, "callback_id": outcome.callback_id}
                },
            )
            self._on_verify()
        # A stored webhook was logged, counted and announced with its batch (_insert_batch).
        return outcome.result

    def _store(
        self,
        token: str,
        raw_body: bytes,
        content_type: str | None,
        signature: str | None,
    ) -> _Outcome:
        # Lookup, parse, signature check and encryption all happen outside any transaction: only
        # the insert and its commit hold the database (and, on SQLite, the write lock).
        target = self._target(token, fresh=False)
        if target is None:
            return _rejected(404, "unknown_token", "unknown webhook URL")
        checked = self._check(token, target, raw_body, content_type, signature, blocking=True)
        assert checked is not None  # only a non-blocking check stops short
        if isinstance(checked, _Outcome):
            return checked
        try:
            inbox_id = self._inserts.submit(checked.row)
        except CommitFailed as failed:
            return self._committed(checked, None, failed)
        return self._committed(checked, inbox_id, None)

    def _check(
        self,
        token: str,
        target: _Target,
        raw_body: bytes,
        content_type: str | None,
        signature: str | None,
        *,
        blocking: bool,
    ) -> _Outcome | _Accepted | None:
        """Parse and authenticate; the row to store, or the answer. With `blocking` False, None
        where the database would be needed (callback.verify, a fresh lookup of the verifiers)."""
        conn_id = target.connection_id
        try:
            fields = parse_fields(raw_body, content_type)
            if is_verify(fields):
                if not blocking:
                    return None
                return self._candidate(target, parse_verify(fields))
            authentic = signature_matches(fields, signature, target.verifiers)
            if not authentic and signature:
                if not blocking:
                    return None
                fresh = self._target(token, fresh=True)  # a callback verified just now?
                if fresh is None:
                    return _rejected(404, "unknown_token", "unknown webhook URL")
                target = fresh
                authentic = signature_matches(fields, signature, target.verifiers)
            if not authentic:
                reason = "missing_signature" if not signature else "bad_signature"
                return _rejected(401, reason, "invalid signature", conn_id)
            notification = parse_notification(fields)
            if notification.account_id not in (None, target.account_id):
                raise MalformedWebhook("account_id does not match this connection")
        except MalformedWebhook as exc:
            return _rejected(400, "malformed", exc.reason, conn_id)

        now = self._clock()
        supported = notification.name in SUPPORTED_EVENTS
        row = inbox.prepare_webhook(
            self._cipher,
            connection_id=conn_id,
            event_name=notification.name,
            object_id=notification.object_id,
            raw_body=raw_body,
            state=InboxState.PENDING if supported else InboxState.IGNORED,
            now=now,
            # Keyed (a dump cannot confirm a guessed body: they are mostly IDs) and of the bytes
            # FreshBooks signed, which parse_fields has checked are UTF-8.
            digest=self._blind_index.term("webhook_body", raw_body.decode("utf-8")),
        )
        return _Accepted(row, conn_id, notification, supported)

    def _candidate(self, target: _Target, verify: VerifyRequest) -> _Outcome:
        if verify.account_id not in (None, target.account_id):
            raise MalformedWebhook("account_id does not match this connection")
        conn_id = target.connection_id
        # Stored as a candidate only: the verifier becomes our HMAC key once FreshBooks
        # accepts it for a callback we registered (see connector.freshbooks.verification).
        with self._db.session() as session:
            stored = inbox.add_verification(
                session,
                self._cipher,
                connection_id=conn_id,
                callback_id=verify.callback_id,
                verifier=verify.verifier,
                now=self._clock(),
                cap=MAX_PENDING_PER_CONNECTION,
            )
        if stored is None:
            return _rejected(
                429, "too_many_verifications", "too many verifications pending; try later", conn_id
            )
        return _Outcome(
            IntakeResult(200, "verification received"),
            connection_id=conn_id,
            callback_id=verify.callback_id,
        )

    @staticmethod
    def _committed(
        accepted: _Accepted, inbox_id: int | NotStored | None, failed: CommitFailed | None
    ) -> _Outcome:
        conn_id, notification = accepted.connection_id, accepted.notification
        if failed is not None or inbox_id is None:
            # Not stored, so not acknowledged: FreshBooks retries a webhook that gets no 2xx.
            return _rejected(503, "unavailable", "could not store the webhook; try again", conn_id)
        if inbox_id is NotStored.DISCONNECTED:  # since our cached lookup
            return _rejected(404, "unknown_token", "unknown webhook URL", conn_id)
        if inbox_id is NotStored.REPEATED:
            # Acknowledged, or FreshBooks would retry it: it is stored already, under its first id.
            return _Outcome(
                IntakeResult(200, "repeated webhook, already received"),
                connection_id=conn_id,
                event=notification.name,
                object_id=notification.object_id,
                repeated=True,
            )
        return _Outcome(
            IntakeResult(200, "ok" if accepted.supported else "ignored event", inbox_id),
            connection_id=conn_id,
            event=notification.name,
            object_id=notification.object_id,
        )
