"""Registering webhook callbacks at FreshBooks for a connection."""

from __future__ import annotations

import logging

from connector.freshbooks.client import CallbackInfo, FreshBooksClient
from connector.freshbooks.tokens import TokenSource
from connector.freshbooks.verification import VerificationService
from storage import connections
from storage.crypto import Cipher
from storage.db import Database

log = logging.getLogger(__name__)


def webhook_url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/freshbooks/webhooks/{token}"


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
    ) -> None:
        self._db = db
        self._cipher = cipher
        self._client = client
        self._tokens = tokens
        self._verification = verification
        self._public_url = public_url

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
                session, connection_id=connection_id, callback_id=info.callback_id, event=event
            )
        log.info(
            "callback registered",
            extra={
                "context": {"connection_id": connection_id, "callback_id": info.callback_id, "event": event}
            },
        )
        # FreshBooks usually POSTs callback.verify before the registration call returns; that
        # request is waiting in callback_verifications and can be settled now.
        self._verification.process_pending()
        return info
