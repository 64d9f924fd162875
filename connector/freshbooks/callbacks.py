"""Registering webhook callbacks at FreshBooks for a connection."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from connector.domain.clock import Clock
from connector.domain.events import SUPPORTED_EVENTS
from connector.freshbooks.client import CallbackInfo, FreshBooksClient, FreshBooksError
from connector.freshbooks.tokens import NoToken, TokenSource
from connector.freshbooks.verification import VerificationService
from storage import connections
from storage.crypto import Cipher
from storage.db import Database

log = logging.getLogger(__name__)
T = TypeVar("T")


def webhook_url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/freshbooks/webhooks/{token}"


@dataclass(frozen=True, slots=True)
class CallbackPlan:
    """What to do at FreshBooks so that exactly one callback per event points at our URL."""

    keep: dict[str, CallbackInfo]
    register: tuple[str, ...]
    resend: tuple[int, ...]
    delete: tuple[int, ...]


def plan_callbacks(
    existing: list[CallbackInfo], *, uri: str, events: tuple[str, ...], verifiers_held: set[int]
) -> CallbackPlan:
    """Pure: compare what FreshBooks has with what we need. Listing first means a reconnect never
    registers a duplicate (each duplicate would deliver every webhook twice)."""
    ours = [c for c in existing if c.uri == uri]
    keep: dict[str, CallbackInfo] = {}
    # Prefer a callback whose verifier we hold, then any verified one, then the oldest.
    for callback in sorted(
        ours, key=lambda c: (c.callback_id not in verifiers_held, not c.verified, c.callback_id)
    ):
        if callback.event in events and callback.event not in keep:
            keep[callback.event] = callback
    kept_ids = {c.callback_id for c in keep.values()}
    return CallbackPlan(
        keep=keep,
        register=tuple(e for e in events if e not in keep),
        # Unverified at FreshBooks, or verified but we lost the verifier (the HMAC key): ask again.
        resend=tuple(
            c.callback_id for c in keep.values() if not c.verified or c.callback_id not in verifiers_held
        ),
        delete=tuple(c.callback_id for c in ours if c.callback_id not in kept_ids),
    )


@dataclass(frozen=True, slots=True)
class CallbackHealth:
    expected: int
    registered: int
    verified: int
    errors: tuple[str, ...] = ()

    @property
    def healthy(self) -> bool:
        return self.verified == self.expected and not self.errors


class CallbackRegistrar:
    def __init__(
        self,
        *,
        db: Database,
        cipher: Cipher,
        client: FreshBooksClient,
        tokens: TokenSource,
        verification: VerificationService,
        public_url: str,
        clock: Clock,
    ) -> None:
        self._db = db
        self._cipher = cipher
        self._client = client
        self._tokens = tokens
        self._verification = verification
        self._public_url = public_url
        self._clock = clock

    def ensure_all(
        self, connection_id: int, events: tuple[str, ...] = tuple(SUPPORTED_EVENTS)
    ) -> CallbackHealth:
        """Make FreshBooks hold exactly one verified callback per event for this connection."""
        with self._db.session() as session:
            account_id = connections.account_id(session, connection_id)
            uri = webhook_url(
                self._public_url, connections.webhook_token(session, self._cipher, connection_id)
            )
            held = {c.callback_id for c in connections.callbacks_of(session, connection_id) if c.verifier_enc}
        errors: list[str] = []
        existing = self._tokens.call(
            connection_id, lambda token: self._client.list_callbacks(token=token, account_id=account_id)
        )
        plan = plan_callbacks(existing, uri=uri, events=events, verifiers_held=held)
        now = self._clock()
        with self._db.session() as session:
            local = {c.callback_id for c in connections.callbacks_of(session, connection_id)}
            gone = local - {c.callback_id for c in plan.keep.values()}
            connections.forget_callbacks(session, connection_id=connection_id, callback_ids=gone)
            for callback in plan.keep.values():
                connections.record_callback(
                    session,
                    connection_id=connection_id,
                    callback_id=callback.callback_id,
                    event=callback.event,
                    now=now,
                )
            for callback_id in plan.resend:
                connections.request_resend(
                    session, connection_id=connection_id, callback_id=callback_id, now=now
                )

        def delete(callback_id: int) -> None:
            self._tokens.call(
                connection_id,
                lambda token: self._client.delete_callback(
                    token=token, account_id=account_id, callback_id=callback_id
                ),
            )

        def resend(callback_id: int) -> None:
            self._tokens.call(
                connection_id,
                lambda token: self._client.resend_verification(
                    token=token, account_id=account_id, callback_id=callback_id
                ),
            )

        for callback_id in plan.delete:
            self._attempt(errors, f"delete duplicate callback {callback_id}", delete, callback_id)
        for callback_id in plan.resend:
            self._attempt(errors, f"resend verification of callback {callback_id}", resend, callback_id)
        for event in plan.register:
            self._attempt(errors, f"register {event}", lambda e: self.register(connection_id, e), event)
        self._verification.process_pending(connection_id)
        with self._db.session() as session:
            mine = connections.callbacks_of(session, connection_id)
        health = CallbackHealth(
            expected=len(events),
            registered=len({c.event for c in mine}),
            verified=len({c.event for c in mine if c.verified and c.verifier_enc}),
            errors=tuple(errors),
        )
        log.info(
            "callbacks checked: %d/%d verified",
            health.verified,
            health.expected,
            extra={"context": {"connection_id": connection_id, "errors": len(errors)}},
        )
        return health

    @staticmethod
    def _attempt(errors: list[str], what: str, action: Callable[[T], object], arg: T) -> None:
        try:
            action(arg)
        except (FreshBooksError, NoToken) as exc:
            errors.append(f"{what}: {exc}")

    def register(self, connection_id: int, event: str) -> CallbackInfo:
        """Create the callback at FreshBooks, remember it, then complete any verify that raced ahead."""
        with self._db.session() as session:
            account_id = connections.account_id(session, connection_id)
            token = connections.webhook_token(session, self._cipher, connection_id)
        uri = webhook_url(self._public_url, token)
        info = self._tokens.call(
            connection_id,
            lambda access: self._client.register_callback(
                token=access, account_id=account_id, event=event, uri=uri
            ),
        )
        with self._db.session() as session:
            connections.record_callback(
                session,
                connection_id=connection_id,
                callback_id=info.callback_id,
                event=event,
                now=self._clock(),
            )
        log.info(
            "callback registered",
            extra={
                "context": {"connection_id": connection_id, "callback_id": info.callback_id, "event": event}
            },
        )
        # FreshBooks usually POSTs callback.verify before the registration call returns; that
        # request is waiting in callback_verifications and can be settled now (ours only: another
        # connection's pending candidates are the loop's business, not this caller's wait).
        self._verification.process_pending(connection_id)
        return info
