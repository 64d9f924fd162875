"""Where FreshBooks access tokens come from. Refreshing arrives with the OAuth connection work."""

from __future__ import annotations

from typing import Protocol

from storage import connections
from storage.crypto import Cipher
from storage.db import Database


class NoToken(Exception):
    """The connection has no usable access token (never connected, or access was revoked)."""


class TokenSource(Protocol):
    def access_token(self, connection_id: int) -> str: ...


class StoredTokens:
    """Reads the access token as stored; it does not refresh it."""

    def __init__(self, *, db: Database, cipher: Cipher) -> None:
        self._db = db
        self._cipher = cipher

    def access_token(self, connection_id: int) -> str:
        with self._db.session() as session:
            token = connections.access_token(session, self._cipher, connection_id)
        if not token:
            raise NoToken(f"connection {connection_id} has no access token")
        return token
