"""FreshBooks token refresh: before expiry, once across processes, committed before use."""

from __future__ import annotations

import datetime as dt
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select, update

from connector.domain.events import ObjectKind
from connector.domain.refresh import LEASE, WAIT_LIMIT
from connector.freshbooks import tokens as token_module
from connector.freshbooks.client import ErrorKind, FreshBooksClient, FreshBooksError, TokenGrant
from connector.freshbooks.tokens import NoToken, TokenManager, TokenRevoked
from storage import connections
from storage.models import FreshBooksConnection, InboxState, WebhookInbox
from tests.support.fakes.freshbooks import Scripted
from tests.support.live import FB_ACCOUNT, FB_REFRESH, FB_TOKEN, Live

# Run again by .ci/run from a leap day just before midnight US/Eastern (tests/support/live.py).
pytestmark = pytest.mark.date_sensitive


def manager(
    live: Live,
    revoked: list[tuple[int, str]] | None = None,
    *,
    wait: Callable[[float], None] | None = None,
    client: FreshBooksClient | None = None,
) -> TokenManager:
    """A second, independent token manager: what another process would have."""
    sink = revoked if revoked is not None else []
    return TokenManager(
        db=live.services.db,
        cipher=live.services.cipher,
        client=client or FreshBooksClient(base_url=live.fake.base_url, sleep=lambda _s: None),
        client_id="fb-client",
        client_secret="fb-secret",
        redirect_uri=f"{live.url}/freshbooks/oauth/callback",
        clock=live.clock,
        on_revoked=lambda cid, reason: sink.append((cid, reason)),
        wait=wait or (lambda _s: threading.Event().wait(0.01)),
    )


def lease_of(live: Live, connection_id: int) -> tuple[str | None, dt.datetime | None]:
    with live.services.db.read() as session:
        row = session.get_one(FreshBooksConnection, connection_id)
        return row.refresh_lease_owner, row.refresh_lease_until


def take_lease(live: Live, connection_id: int, owner: str) -> None:
    """Hold the refresh lease as a process that just took it would (and then, say, died)."""
    with live.services.db.session() as session:
        session.execute(
            update(FreshBooksConnection)
            .where(FreshBooksConnection.id == connection_id)
            .values(refresh_lease_owner=owner, refresh_lease_until=live.clock() + LEASE)
        )


def expire_soon(live: Live, connection_id: int) -> None:
    with live.services.db.session() as session:
        session.execute(
            update(FreshBooksConnection)
            .where(FreshBooksConnection.id == connection_id)
            .values(token_expires_at=live.clock() + dt.timedelta(minutes=5))
        )


def snapshot(live: Live, connection_id: int) -> connections.TokenSnapshot:
    with live.services.db.session() as session:
        return connections.token_snapshot(session, live.services.cipher, connection_id)


def test_a_fresh_token_is_used_as_is(live: Live) -> None:
    cid = live.connect().connection.id
    assert manager(live).access_token(cid) == FB_TOKEN
    assert live.fake.refreshes == 0


def test_a_token_about_to_expire_is_refreshed_and_stored_first(live: Live) -> None:
    cid = live.connect().connection.id
    expire_soon(live, cid)

    token = manager(live).access_token(cid)

    assert token != FB_TOKEN
    assert live.fake.refreshes == 1
    snap = snapshot(live, cid)
    assert snap.access_token == token
    assert snap.refresh_token not in (None, FB_REFRESH)
    assert snap.version == 1
    assert snap.expires_at == live.clock() + dt.timedelta(seconds=43199)
    with live.services.db.session() as session:
        row = session.get_one(FreshBooksConnection, cid)
        assert row.refresh_lease_owner is None
        assert token not in (row.access_token_enc or "")
    # The old refresh token is spent: FreshBooks refuses it now.
    with pytest.raises(FreshBooksError):
        FreshBooksClient(base_url=live.fake.base_url).refresh_tokens(
            refresh_token=FB_REFRESH,
            redirect_uri="x",
            client_id="fb-client",
            client_secret="fb-secret",
            now=live.clock(),
        )


def test_concurrent_refreshes_from_two_processes_refresh_once(live: Live) -> None:
    cid = live.connect().connection.id
    expire_soon(live, cid)
    first, second = manager(live), manager(live)
    results: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def run(tokens: TokenManager) -> None:
        start.wait()
        try:
            results.append(tokens.access_token(cid))
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(m,)) for m in (first, second, first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert live.fake.refreshes == 1
    assert len(set(results)) == 1
    assert results[0] == snapshot(live, cid).access_token


def test_a_crashed_refreshers_lease_runs_out(live: Live) -> None:
    cid = live.connect().connection.id
    expire_soon(live, cid)
    with live.services.db.session() as session:  # a process that died holding the lease
        session.execute(
            update(FreshBooksConnection)
            .where(FreshBooksConnection.id == cid)
            .values(refresh_lease_owner="dead", refresh_lease_until=live.clock() - dt.timedelta(seconds=1))
        )
    assert manager(live).access_token(cid) != FB_TOKEN
    assert live.fake.refreshes == 1


def test_a_holder_killed_mid_refresh_holds_others_up_for_one_lease_then_they_refresh(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    """A process SIGKILLed holding the lease leaves it behind: the others wait it out (they used
    to give up after 10 s of a 60 s lease, 'timed out waiting for another process') and the
    first to take it over refreshes, at most LEASE after the dead one took it."""
    cid = live.connect().connection.id
    expire_soon(live, cid)
    take_lease(live, cid, "host:4242:dead")
    taken_at = live.clock()
    tokens = manager(live, wait=lambda seconds: live.clock.advance(seconds=seconds))

    with caplog.at_level(logging.WARNING, logger="connector.freshbooks.tokens"):
        token = tokens.access_token(cid)

    waited = live.clock() - taken_at
    assert LEASE <= waited <= LEASE + dt.timedelta(seconds=0.2), waited
    assert token == snapshot(live, cid).access_token != FB_TOKEN
    assert live.fake.refreshes == 1
    assert lease_of(live, cid) == (None, None)
    assert not [r for r in caplog.records if "timed out" in r.getMessage()]


def test_a_lease_that_never_ends_is_waited_out_for_two_leases_then_given_up(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    """Only a lease that is always live (another host's clock far ahead, say) makes a caller
    give up, and only after two leases' time: it never refreshes under someone else's lease."""
    cid = live.connect().connection.id
    expire_soon(live, cid)
    started = live.clock()

    def wait(seconds: float) -> None:
        live.clock.advance(seconds=seconds)
        take_lease(live, cid, "host:4242:elsewhere")  # renewed, as if by a process we cannot see

    take_lease(live, cid, "host:4242:elsewhere")
    with (
        caplog.at_level(logging.WARNING, logger="connector.freshbooks.tokens"),
        pytest.raises(NoToken, match="timed out waiting for another process"),
    ):
        manager(live, wait=wait).access_token(cid)
    assert WAIT_LIMIT < live.clock() - started <= WAIT_LIMIT + dt.timedelta(seconds=0.2)
    assert live.fake.refreshes == 0
    assert [r for r in caplog.records if "timed out waiting for another process" in r.getMessage()]


def test_a_refresh_held_past_its_deadline_is_given_up_and_the_next_caller_refreshes(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FreshBooks (or the network) holds the refresh call unanswered: it is given up at the
    deadline, the lease is released at once, and the next caller refreshes with the same
    refresh token (FreshBooks never acted on the held call)."""
    monkeypatch.setattr(token_module, "REFRESH_DEADLINE", 1.0)
    monkeypatch.setattr(token_module, "LEASE", dt.timedelta(seconds=3))
    cid = live.connect().connection.id
    expire_soon(live, cid)
    held = live.fake.hold_refresh(spent=False)

    began = time.monotonic()
    with pytest.raises(NoToken, match="failed for now") as info:
        manager(live).access_token(cid)
    took = time.monotonic() - began
    assert not isinstance(info.value, TokenRevoked)
    assert held.arrived.is_set()
    # The held call never answers: only the deadline can end it (1 s; the rest is slack for a
    # busy machine, the client's own per-phase timeout being 10 s).
    assert 1.0 <= took < 5.0, took
    assert lease_of(live, cid) == (None, None)
    assert live.fake.refreshes == 0

    token = manager(live).access_token(cid)
    assert token == snapshot(live, cid).access_token != FB_TOKEN
    assert live.fake.refreshes == 1
    held.release()


def test_a_refresh_answer_lost_after_freshbooks_acted_needs_a_reconnect(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The case no lease can save (reference §10.8): FreshBooks issued the new pair, the answer
    never arrived, so the stored refresh token is spent. The next refresh is refused and the
    connection waits for a reconnect (its inbox waits too: test_inbox_waits_for_a_reconnect...)."""
    monkeypatch.setattr(token_module, "REFRESH_DEADLINE", 1.0)
    cid = live.connect().connection.id
    expire_soon(live, cid)
    held = live.fake.hold_refresh(spent=True)
    with pytest.raises(NoToken, match="failed for now"):
        manager(live).access_token(cid)
    held.release()
    revoked: list[tuple[int, str]] = []
    with pytest.raises(TokenRevoked):
        manager(live, revoked).access_token(cid)
    assert revoked == [(cid, "FreshBooks refused the token refresh (invalid_grant)")]
    assert live.fake.refreshes == 2


class OverrunRefresh(FreshBooksClient):
    """A refresh refused because its token was spent by a refresh that overran its lease and
    stored its pair meanwhile (what another process would have done)."""

    def __init__(self, live: Live, connection_id: int) -> None:
        super().__init__(base_url=live.fake.base_url)
        self.live, self.connection_id = live, connection_id

    def refresh_tokens(self, **_kwargs: Any) -> TokenGrant:
        with self.live.services.db.session() as session:
            assert connections.store_tokens(
                session,
                self.live.services.cipher,
                connection_id=self.connection_id,
                expected_version=0,
                access_token="fb-access-from-the-overrun",
                refresh_token="fb-refresh-from-the-overrun",
                expires_at=self.live.clock() + dt.timedelta(hours=12),
                issued_at=self.live.clock(),
            )
        raise FreshBooksError(ErrorKind.AUTH, "The provided grant is invalid.", code="invalid_grant")


def test_a_refused_refresh_token_that_was_replaced_meanwhile_is_no_revocation(live: Live) -> None:
    cid = live.connect().connection.id
    expire_soon(live, cid)
    revoked: list[tuple[int, str]] = []
    tokens = manager(live, revoked, client=OverrunRefresh(live, cid))

    assert tokens.access_token(cid) == "fb-access-from-the-overrun"
    assert revoked == []
    snap = snapshot(live, cid)
    assert (snap.status, snap.version) == ("active", 1)


def test_the_refresh_call_has_a_total_deadline_not_only_per_phase_timeouts() -> None:
    """An answer trickling in a byte every 0.1 s never trips httpx's per-phase timeouts (10 s
    here): only the total deadline ends the call."""
    stop = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))

    def trickle() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: " + b"a" * 10_000:
                if stop.wait(0.1):
                    return
                connection.sendall(bytes([byte]))

    server = threading.Thread(target=trickle, daemon=True)
    server.start()
    client = FreshBooksClient(base_url=f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=10.0)
    began = time.monotonic()
    try:
        with pytest.raises(FreshBooksError) as info:
            client.refresh_tokens(
                refresh_token="r",
                redirect_uri="https://x.example/cb",
                client_id="c",
                client_secret="s",
                now=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
                within=1.0,
            )
        took = time.monotonic() - began
    finally:
        stop.set()
        server.join(5)
        listener.close()
        client.close()
    assert info.value.kind is ErrorKind.NETWORK
    assert 1.0 <= took < 3.0, took


def test_a_refused_refresh_marks_the_connection_and_tells_once(live: Live) -> None:
    new = live.connect()
    cid = new.connection.id
    expire_soon(live, cid)
    live.fake.grants.clear()  # the customer revoked the app at FreshBooks
    revoked: list[tuple[int, str]] = []
    tokens = manager(live, revoked)

    with pytest.raises(TokenRevoked):
        tokens.access_token(cid)
    with pytest.raises(TokenRevoked):
        tokens.access_token(cid)

    assert live.fake.refreshes == 1
    assert revoked == [(cid, "FreshBooks refused the token refresh (invalid_grant)")]
    with live.services.db.session() as session:
        row = session.get_one(FreshBooksConnection, cid)
        assert (row.status, row.status_reason) == ("needs_reconnect", revoked[0][1])
        assert row.refresh_lease_owner is None


def test_a_freshbooks_outage_during_refresh_is_not_a_revocation(live: Live) -> None:
    cid = live.connect().connection.id
    expire_soon(live, cid)
    live.fake.script("POST", "/auth/oauth/token", Scripted(503, {"errno": 503, "message": "down"}))
    tokens = manager(live)
    with pytest.raises(NoToken) as info:
        tokens.access_token(cid)
    assert not isinstance(info.value, TokenRevoked)
    with live.services.db.session() as session:
        row = session.get_one(FreshBooksConnection, cid)
        assert (row.status, row.refresh_lease_owner) == ("active", None)
    assert tokens.access_token(cid) != FB_TOKEN  # the next try works


def test_a_401_refreshes_once_and_retries(live: Live) -> None:
    cid = live.connect().connection.id
    live.fake.valid_tokens.discard(FB_TOKEN)  # FreshBooks stopped accepting it before its expiry
    live.fake.add_object(FB_ACCOUNT, "invoices", {"id": 1, "updated": "u"})
    tokens = manager(live)
    client = FreshBooksClient(base_url=live.fake.base_url)
    from connector.domain.events import ObjectKind

    obj = tokens.call(
        cid,
        lambda token: client.get_object(
            token=token, account_id=FB_ACCOUNT, kind=ObjectKind.INVOICE, object_id="1"
        ),
    )
    assert obj["id"] == 1
    assert live.fake.refreshes == 1


def test_inbox_waits_for_a_reconnect_and_loses_nothing(live: Live) -> None:
    new = live.connect_and_register("invoice.create")
    cid = new.connection.id
    live.clock.advance(hours=12)  # the access token is due for a refresh
    live.fake.grants.clear()
    live.fake.add_object(
        FB_ACCOUNT,
        "invoices",
        {"id": 5, "amount": {"amount": "5.00", "code": "USD"}, "updated": "2026-11-24 07:05:00"},
    )
    live.fake.deliver(FB_ACCOUNT, "invoice.create", "5")
    live.fake.deliver(FB_ACCOUNT, "invoice.create", "5", user_id="2")  # another body for the same change

    assert live.services.inbox_worker.run_once() == 2  # both fail to get a token: revoked
    live.clock.advance(hours=30)  # far past the retry schedule
    token_expiry = live.clock() + dt.timedelta(hours=12)
    for _ in range(3):
        assert live.services.inbox_worker.run_once() == 0  # parked while the connection waits
    with live.services.db.session() as session:
        states = session.scalars(select(WebhookInbox.state)).all()
    assert states == [InboxState.PENDING, InboxState.PENDING]

    # The customer reconnects: fresh tokens, active again.
    live.fake.grant("fb-access-2", "fb-refresh-2")
    with live.services.db.session() as session:
        session.execute(
            update(FreshBooksConnection)
            .where(FreshBooksConnection.id == cid)
            .values(
                status="active",
                access_token_enc=live.services.cipher.encrypt("fb-access-2"),
                refresh_token_enc=live.services.cipher.encrypt("fb-refresh-2"),
                token_expires_at=token_expiry,
            )
        )
    assert live.services.inbox_worker.run_once() == 2
    with live.services.db.session() as session:
        states = session.scalars(select(WebhookInbox.state).order_by(WebhookInbox.id)).all()
    assert states == [InboxState.DONE, InboxState.DUPLICATE]


def test_four_second_tokens_are_refreshed_about_once_per_lifetime(live: Live) -> None:
    """Calls every quarter second for 40 s, from four threads of two processes, on tokens that
    live four seconds: one refresh every three seconds, none refused, none waited out."""
    live.fake.expires_in = 4
    cid = live.connect().connection.id
    live.fake.add_object(FB_ACCOUNT, "invoices", {"id": 1, "updated": "u"})
    expire_soon(live, cid)
    processes = [manager(live), manager(live)]
    client = FreshBooksClient(base_url=live.fake.base_url, sleep=lambda _s: None)
    errors: list[BaseException] = []

    def fetch(tokens: TokenManager) -> None:
        try:
            tokens.call(
                cid,
                lambda token: client.get_object(
                    token=token, account_id=FB_ACCOUNT, kind=ObjectKind.INVOICE, object_id="1"
                ),
            )
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    for _ in range(160):
        threads = [threading.Thread(target=fetch, args=(processes[n % 2],)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        live.clock.advance(seconds=0.25)

    assert errors == []
    # 40 s of 4 s tokens, each refreshed 1 s before it expires: at 0, 3, 6 ... 39 s, 14 refreshes.
    # (With the fixed 10-minute margin every call refreshed, and calls waiting on another's
    # refresh timed out.)
    assert 13 <= live.fake.refreshes <= 15, live.fake.refreshes
    assert live.fake.expired_token_calls == 0
    assert snapshot(live, cid).issued_at is not None
