"""FreshBooks token refresh: before expiry, once across processes, committed before use."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import select, update

from connector.domain.events import ObjectKind
from connector.freshbooks.client import FreshBooksClient, FreshBooksError
from connector.freshbooks.tokens import NoToken, TokenManager, TokenRevoked, is_due, refresh_margin
from storage import connections
from storage.models import FreshBooksConnection, InboxState, WebhookInbox
from tests.support.fakes.freshbooks import Scripted
from tests.support.live import FB_ACCOUNT, FB_REFRESH, FB_TOKEN, Live

# Run again by .ci/run from a leap day just before midnight US/Eastern (tests/support/live.py).
pytestmark = pytest.mark.date_sensitive


def manager(live: Live, revoked: list[tuple[int, str]] | None = None) -> TokenManager:
    """A second, independent token manager: what another process would have."""
    sink = revoked if revoked is not None else []
    return TokenManager(
        db=live.services.db,
        cipher=live.services.cipher,
        client=FreshBooksClient(base_url=live.fake.base_url, sleep=lambda _s: None),
        client_id="fb-client",
        client_secret="fb-secret",
        redirect_uri=f"{live.url}/freshbooks/oauth/callback",
        clock=live.clock,
        on_revoked=lambda cid, reason: sink.append((cid, reason)),
        wait=lambda _s: threading.Event().wait(0.01),
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


def test_a_live_lease_makes_others_wait_not_refresh(live: Live) -> None:
    cid = live.connect().connection.id
    expire_soon(live, cid)
    with live.services.db.session() as session:
        session.execute(
            update(FreshBooksConnection)
            .where(FreshBooksConnection.id == cid)
            .values(refresh_lease_owner="busy", refresh_lease_until=live.clock() + dt.timedelta(seconds=30))
        )
    tokens = manager(live)
    tokens._wait_rounds = 3
    with pytest.raises(NoToken, match="timed out"):
        tokens.access_token(cid)
    assert live.fake.refreshes == 0


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


def test_the_refresh_margin_scales_with_the_tokens_lifetime() -> None:
    issued = dt.datetime(2028, 2, 29, 23, 59, tzinfo=dt.UTC)
    twelve_hours, four_seconds = issued + dt.timedelta(hours=12), issued + dt.timedelta(seconds=4)
    assert refresh_margin(issued, twelve_hours) == dt.timedelta(minutes=10)
    assert refresh_margin(issued, four_seconds) == dt.timedelta(seconds=1)
    assert refresh_margin(None, four_seconds) == dt.timedelta(minutes=10)  # unknown: the default
    assert refresh_margin(four_seconds, issued) == dt.timedelta(minutes=10)  # nonsense: the default
    assert not is_due(four_seconds, issued, issued + dt.timedelta(seconds=2.9))
    assert is_due(four_seconds, issued, issued + dt.timedelta(seconds=3))
    assert not is_due(None, None, issued)  # a token that never expires


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
