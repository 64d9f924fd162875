"""The callback verification handshake (reference §3), race-safe and forgery-safe.

FreshBooks POSTs `callback.verify` to the callback URI as soon as it registers the callback,
often before our registration call has returned. The intake therefore only stores each verify
request as a candidate. This service later adopts a candidate verifier as the callback's HMAC
key only when all of these hold:

* the callback id is one this connection registered (a row in freshbooks_callbacks);
* the callback is not verified yet, or we asked FreshBooks to resend the verification;
* FreshBooks accepted the verifier (PUT .../callbacks/<id> answered verified: true).

A forged verify request fails one of these and changes nothing. Verify requests cannot be
signed, so a flood of forged ones must not hold anyone else up either: each connection keeps at
most MAX_PENDING_PER_CONNECTION candidates, the loop takes turns between connections, and
forged or stale candidates are dropped (an unknown callback's after UNKNOWN_CALLBACK_GRACE).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from connector.domain.clock import Clock
from connector.freshbooks.client import ErrorKind, FreshBooksClient, FreshBooksError
from connector.freshbooks.tokens import NoToken, TokenSource
from connector.telemetry import metrics
from storage import connections, inbox
from storage.crypto import Cipher
from storage.db import Database
from storage.models import CallbackVerification, VerificationState

log = logging.getLogger(__name__)

# How long a verify request for a callback id we do not know yet may wait for our registration
# call to return, and how long a resend we asked for stays open.
UNKNOWN_CALLBACK_GRACE = dt.timedelta(minutes=10)
RESEND_WINDOW = dt.timedelta(hours=1)
# A candidate that could not be confirmed for this long (no token, FreshBooks down) is dropped:
# the callback check asks FreshBooks to resend the verification of a callback left unverified.
STALE_AFTER = dt.timedelta(hours=1)
# Verify requests cannot be signed: anyone who knows a connection's webhook URL can send them. At
# most this many wait per connection (the intake answers 429 beyond it); a connection has 13
# callbacks, each verified once at registration and again on a resend.
MAX_PENDING_PER_CONNECTION = 32


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one pending candidate: drop it, confirm it with FreshBooks, or wait."""

    detail: str
    drop: bool = False
    put_verifier: bool = False


def decide(
    *,
    received_at: dt.datetime,
    callback_known: bool,
    callback_verified: bool,
    resend_requested_at: dt.datetime | None,
    now: dt.datetime,
) -> Decision:
    """Whether a verify request may be sent on to FreshBooks. Pure."""
    if not callback_known:
        if now - received_at > UNKNOWN_CALLBACK_GRACE:
            return Decision("callback was not registered by this connection", drop=True)
        return Decision("waiting for the callback registration to complete")
    if callback_verified and (resend_requested_at is None or now - resend_requested_at > RESEND_WINDOW):
        return Decision("callback is already verified and no resend was requested", drop=True)
    if now - received_at > STALE_AFTER:
        return Decision("could not be confirmed with FreshBooks in time", drop=True)
    return Decision("verifier to be confirmed with FreshBooks", put_verifier=True)


class VerificationService:
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

    def process_pending(self, connection_id: int | None = None) -> int:
        """Settle what can be settled now (for one connection, or for all, taking turns between
        them); returns how many candidates reached a final state or were dropped."""
        with self._db.read() as session:
            pending = inbox.pending_verifications(session, connection_id=connection_id)
        return sum(1 for row in pending if self._process(row))

    def _context(self, row: CallbackVerification) -> dict[str, object]:
        return {"context": {"connection_id": row.connection_id, "callback_id": row.callback_id}}

    def _settle(self, row: CallbackVerification, state: VerificationState, detail: str) -> bool:
        with self._db.session() as session:
            changed = inbox.settle_verification(
                session, verification_id=row.id, state=state, detail=detail, now=self._clock()
            )
        if changed:
            metrics.VERIFICATIONS.labels(outcome=state).inc()
            log.info("callback.verify %s: %s", state, detail, extra=self._context(row))
        return changed

    def _drop(self, row: CallbackVerification, detail: str) -> bool:
        """Forged or stale: nothing worth keeping, and a flood of them must not pile up."""
        with self._db.session() as session:
            dropped = inbox.drop_verification(session, verification_id=row.id)
        if dropped:
            metrics.VERIFICATIONS.labels(outcome=VerificationState.IGNORED).inc()
            log.info("callback.verify ignored and dropped: %s", detail, extra=self._context(row))
        return dropped

    def _process(self, row: CallbackVerification) -> bool:
        now = self._clock()
        with self._db.read() as session:
            callback = connections.find_callback(
                session, connection_id=row.connection_id, callback_id=row.callback_id
            )
            account_id = connections.account_id(session, row.connection_id)
            decision = decide(
                received_at=row.received_at,
                callback_known=callback is not None,
                callback_verified=bool(callback and callback.verified),
                resend_requested_at=callback.resend_requested_at if callback else None,
                now=now,
            )
            callback_row_id = callback.id if callback else None
        if decision.drop:
            return self._drop(row, decision.detail)
        if not decision.put_verifier or callback_row_id is None:
            return False
        try:
            verifier = self._cipher.decrypt(row.verifier_enc)
            answer = self._tokens.call(
                row.connection_id,
                lambda token: self._client.verify_callback(
                    token=token, account_id=account_id, callback_id=row.callback_id, verifier=verifier
                ),
            )
        except NoToken:
            return False  # stays pending until the connection has a token again
        except FreshBooksError as error:
            if error.transient or error.kind is ErrorKind.AUTH:
                log.warning("callback verification postponed: %s", error.kind, extra=self._context(row))
                return False
            return self._settle(
                row, VerificationState.REJECTED, f"FreshBooks refused the verifier ({error.kind})"
            )
        if not answer.verified or answer.callback_id != row.callback_id:
            return self._settle(
                row, VerificationState.REJECTED, "FreshBooks did not mark the callback verified"
            )
        with self._db.session() as session:
            changed = inbox.settle_verification(
                session,
                verification_id=row.id,
                state=VerificationState.ACCEPTED,
                detail="verifier accepted by FreshBooks",
                now=now,
            )
            if changed:
                connections.adopt_verifier(
                    session, callback_row_id=callback_row_id, verifier_enc=row.verifier_enc, now=now
                )
        if changed:
            metrics.VERIFICATIONS.labels(outcome=VerificationState.ACCEPTED).inc()
            log.info("callback verified", extra=self._context(row))
        return changed
