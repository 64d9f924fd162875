"""FreshBooks access tokens: refreshed before they expire, one refresh at a time across processes.

FreshBooks refresh tokens are single-use (reference §7): two processes refreshing with the same
token would invalidate each other. A refresh therefore takes a lease on the connection row
(compare-and-swap, so it works the same on SQLite and PostgreSQL and needs no lock held across
the HTTP call), and the new pair is committed, also by compare-and-swap on `token_version`,
before anyone uses the new access token. The margin, the call's hard deadline, the lease and the
wait are the rules connector.domain.refresh sets for every expiring token (Slack's too).

What no lease can fix: a refresh FreshBooks carried out whose answer never arrived (the process
was killed, the connection dropped on the way back) spent the stored refresh token, and the next
refresh is refused. Only the customer's reconnect recovers that (reference §10.8): the
connection is marked needs_reconnect and its inbox waits, losing nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

from connector.domain import refresh
from connector.domain.clock import Clock
from connector.domain.process import worker_id
from connector.domain.refresh import (
    LEASE,
    REFRESH_DEADLINE,
    WAIT_LIMIT,
    WAIT_STEP,
    is_due,
)
from connector.freshbooks.client import ErrorKind, FreshBooksClient, FreshBooksError
from storage import connections
from storage.crypto import Cipher
from storage.db import Database
from storage.models import ConnectionStatus

log = logging.getLogger(__name__)

# A connection that was revoked or disconnected meanwhile is noticed on FreshBooks' next 401.
CACHE_SECONDS = 30.0


class NoToken(Exception):
    """No usable access token: never connected, access revoked, or a refresh is failing for now."""


class TokenRevoked(NoToken):
    """FreshBooks refused the refresh: the customer must connect again."""


T = TypeVar("T")


class TokenSource(Protocol):
    def call(self, connection_id: int, fn: Callable[[str], T]) -> T: ...

    def forget(self, connection_id: int) -> None: ...


class TokenManager:
    def __init__(
        self,
        *,
        db: Database,
        cipher: Cipher,
        client: FreshBooksClient,
        client_id: str | None,
        client_secret: str | None,
        redirect_uri: str | None,
        clock: Clock,
        on_revoked: Callable[[int, str], None] = lambda _cid, _reason: None,
        wait: Callable[[float], None] = time.sleep,
        wait_rounds: int | None = None,
    ) -> None:
        self._db = db
        self._cipher = cipher
        self._client = client
        self._client_id = client_id
        self._client_secret = client_secret
        self._redirect_uri = redirect_uri
        self._clock = clock
        self._on_revoked = on_revoked
        self._wait = wait
        self._wait_rounds = wait_rounds or refresh.wait_rounds()
        # Tokens this process read recently, so a busy pipeline does not decrypt them per call.
        self._cache: dict[int, tuple[str, dt.datetime | None, dt.datetime | None, float]] = {}
        self._cache_lock = threading.Lock()

    def call(self, connection_id: int, fn: Callable[[str], T]) -> T:
        """Run an API call with the connection's token; on a 401, refresh once and try again."""
        token = self._cached(connection_id) or self.access_token(connection_id)
        try:
            return fn(token)
        except FreshBooksError as error:
            if error.kind is not ErrorKind.AUTH:
                raise
        self.forget(connection_id)
        return fn(self.access_token(connection_id, rejected=token))

    def _cached(self, connection_id: int) -> str | None:
        with self._cache_lock:
            entry = self._cache.get(connection_id)
        if entry is None:
            return None
        token, expires_at, issued_at, stored = entry
        if time.monotonic() - stored > CACHE_SECONDS:
            return None
        if is_due(expires_at, issued_at, self._clock()):
            return None
        return token

    def _remember(
        self, connection_id: int, token: str, expires_at: dt.datetime | None, issued_at: dt.datetime | None
    ) -> None:
        with self._cache_lock:
            self._cache[connection_id] = (token, expires_at, issued_at, time.monotonic())

    def forget(self, connection_id: int) -> None:
        """Drop what this process remembers of the connection's token (disconnect, revocation)."""
        with self._cache_lock:
            self._cache.pop(connection_id, None)

    def _snapshot(self, connection_id: int) -> connections.TokenSnapshot:
        with self._db.read() as session:
            return connections.token_snapshot(session, self._cipher, connection_id)

    def _fresh(self, snap: connections.TokenSnapshot, rejected: str | None) -> str | None:
        if snap.status != ConnectionStatus.ACTIVE:
            raise TokenRevoked(f"connection is {snap.status}")
        if not snap.access_token:
            raise NoToken("connection has no access token")
        if snap.access_token == rejected:
            return None
        if not is_due(snap.expires_at, snap.issued_at, self._clock()):
            return snap.access_token
        return None

    def access_token(self, connection_id: int, *, rejected: str | None = None) -> str:
        """A valid access token, refreshed first if it expires within its refresh margin.

        `rejected` is a token FreshBooks just answered 401 to: it is refreshed even if not expired.
        """
        waiting_since: dt.datetime | None = None
        for _ in range(self._wait_rounds):
            snap = self._snapshot(connection_id)
            token = self._fresh(snap, rejected)
            if token is not None:
                self._remember(connection_id, token, snap.expires_at, snap.issued_at)
                return token
            now, taken = self._clock(), time.monotonic()  # the lease's deadline runs from here
            # An owner per refresh, not per process: a thread of this process must not release
            # the lease another thread of it took after this one's refresh was stored.
            owner = worker_id()
            with self._db.session() as session:
                acquired = connections.acquire_refresh_lease(
                    session, connection_id=connection_id, owner=owner, now=now, until=now + LEASE
                )
            if acquired:
                token = self._refresh(connection_id, rejected, owner, taken=taken)
                if token is not None:
                    return token
                continue  # a newer pair than the one we refreshed from is stored: read it
            # Another process is refreshing right now: its result is what we want. Its lease
            # ends within LEASE, answered or not, and then we take over.
            if waiting_since is None:
                waiting_since = now
            elif now - waiting_since > WAIT_LIMIT:
                break
            self._wait(WAIT_STEP)
        log.warning(
            "timed out waiting for another process to refresh the token",
            extra={"context": {"connection_id": connection_id}},
        )
        raise NoToken("timed out waiting for another process to refresh the token")

    def _refresh(self, connection_id: int, rejected: str | None, owner: str, *, taken: float) -> str | None:
        """Refresh under the lease `owner` took at `taken` (time.monotonic()). None: another
        process stored a newer pair meanwhile, to be read once this lease is released."""
        try:
            snap = self._snapshot(connection_id)  # re-read under the lease: maybe already done
            token = self._fresh(snap, rejected)
            if token is not None:
                return token
            if not (snap.refresh_token and self._client_id and self._client_secret and self._redirect_uri):
                raise NoToken("cannot refresh: FreshBooks client credentials or refresh token missing")
            try:
                grant = self._client.refresh_tokens(
                    refresh_token=snap.refresh_token,
                    redirect_uri=self._redirect_uri,
                    client_id=self._client_id,
                    client_secret=self._client_secret,
                    now=self._clock(),
                    # What is left of the deadline after the reads above: the lease outlasts it.
                    within=REFRESH_DEADLINE - (time.monotonic() - taken),
                )
            except FreshBooksError as error:
                if error.kind in (ErrorKind.AUTH, ErrorKind.VALIDATION):
                    reason = f"FreshBooks refused the token refresh ({error.code or error.kind})"
                    if self._revoked(connection_id, snap.version, reason):
                        raise TokenRevoked("FreshBooks refused the refresh") from None
                    # A newer pair was stored since our snapshot (a refresh that overran its
                    # lease): the token FreshBooks refused was already spent, not revoked.
                    return None
                raise NoToken(f"token refresh failed for now ({error.kind})") from None
            with self._db.session() as session:
                stored = connections.store_tokens(
                    session,
                    self._cipher,
                    connection_id=connection_id,
                    expected_version=snap.version,
                    access_token=grant.access_token,
                    refresh_token=grant.refresh_token,
                    expires_at=grant.expires_at,
                    issued_at=grant.issued_at or self._clock(),
                )
            if not stored:
                # Only possible if our lease ran out mid-call and someone else stored a pair; theirs
                # came after ours at FreshBooks or failed, so use what the database now holds.
                log.error(
                    "token refresh raced past its lease", extra={"context": {"connection_id": connection_id}}
                )
                return None
            log.info("freshbooks token refreshed", extra={"context": {"connection_id": connection_id}})
            self._remember(connection_id, grant.access_token, grant.expires_at, grant.issued_at)
            return grant.access_token
        finally:
            with self._db.session() as session:
                connections.release_refresh_lease(session, connection_id=connection_id, owner=owner)

    def _revoked(self, connection_id: int, version: int, reason: str) -> bool:
        """Mark the connection needs_reconnect: FreshBooks refused the refresh token of `version`.
        False if a newer pair was stored meanwhile (the connection is fine); True otherwise,
        also if it was marked already (the customer is told once)."""
        with self._db.session() as session:
            changed = connections.mark_needs_reconnect(
                session, connection_id=connection_id, reason=reason, expected_version=version
            )
        if changed:
            log.warning(
                "connection needs reconnecting: %s",
                reason,
                extra={"context": {"connection_id": connection_id}},
            )
            self._on_revoked(connection_id, reason)
            return True
        snap = self._snapshot(connection_id)
        return snap.status != ConnectionStatus.ACTIVE or snap.version == version
