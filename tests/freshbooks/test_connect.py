"""Connecting FreshBooks end to end: slash command, OAuth over real HTTP, setup, status, disconnect."""

from __future__ import annotations

import datetime as dt
import urllib.parse

import httpx
import pytest
from sqlalchemy import func, select

from connector.domain.events import SUPPORTED_EVENTS
from connector.freshbooks.connect import SCOPES
from connector.pipeline.ingest.signature import compute_signature
from storage.models import AuditEntry, FreshBooksCallback, FreshBooksConnection
from tests.support.connect import approve, confirm, connect_link, dm_texts, form_fields, wait_for_dm
from tests.support.fakes.freshbooks import FakeBusiness, Scripted
from tests.support.live import ADMIN, FB_ACCOUNT, MEMBER, Live


def connection_rows(live: Live) -> list[FreshBooksConnection]:
    with live.services.db.session() as session:
        return list(session.scalars(select(FreshBooksConnection).order_by(FreshBooksConnection.id)))


def test_members_cannot_connect(live: Live) -> None:
    response = live.slash("connect", user_id=MEMBER)
    assert "Only workspace admins, owners and people they allow" in response.json()["text"]
    assert connection_rows(live) == []


def test_the_whole_connect_flow(live: Live) -> None:
    link = connect_link(live)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)
    assert link.startswith(f"{live.fake.base_url}/oauth/authorize?")
    assert query["client_id"] == ["fb-client"]
    assert query["response_type"] == ["code"]
    assert query["redirect_uri"] == [f"{live.url}/freshbooks/oauth/callback"]
    assert query["scope"] == [" ".join(SCOPES)]
    assert len(query["state"][0]) >= 40

    page = approve(live, link)

    assert page.status_code == 200
    assert "Acme Bookkeeping is connected" in page.text
    (row,) = connection_rows(live)
    assert (row.account_id, row.business_id, row.status) == (FB_ACCOUNT, 14393743, "active")
    assert row.connected_by_user_id == ADMIN
    assert row.access_token_enc and row.access_token_enc not in live.fake.valid_tokens
    # Setup runs in the background and says so in Slack when every webhook is verified.
    (message,) = wait_for_dm(live)
    assert "connected and live: 13 of 13 webhooks verified" in message
    assert sorted(c.event for c in live.fake.callbacks.values()) == sorted(SUPPORTED_EVENTS)
    assert all(c.verified for c in live.fake.callbacks.values())

    status = live.slash("status").json()["text"]
    assert "*Acme Bookkeeping*" in status
    assert "13/13 verified" in status
    assert "valid for 12 h" in status
    assert "Last event received: none yet" in status

    live.fake.deliver(FB_ACCOUNT, "invoice.create", "77")
    live.clock.advance(minutes=5)
    assert "Last event received: 5 minutes ago" in live.slash("status").json()["text"]


@pytest.mark.parametrize("problem", ["reused", "unknown", "expired"])
def test_bad_states_get_a_clear_page_and_store_nothing(live: Live, problem: str) -> None:
    link = connect_link(live)
    redirect = httpx.get(link).headers["location"]
    if problem == "reused":
        with httpx.Client() as browser:
            assert confirm(browser, live, browser.get(redirect)).status_code == 200
        connections_before = len(connection_rows(live))
        second = httpx.get(link).headers["location"]  # a fresh code, but the same state
        page = httpx.get(second)
        assert "already used" in page.text
        assert len(connection_rows(live)) == connections_before
        return
    if problem == "unknown":
        redirect = redirect.replace("state=", "state=forged")
        expected = "not valid"
    else:
        live.clock.advance(minutes=11)
        expected = "expired"
    page = httpx.get(redirect)
    assert page.status_code == 400
    assert expected in page.text
    assert connection_rows(live) == []


def test_a_bad_code_gets_a_clear_page_and_stores_nothing(live: Live) -> None:
    redirect = httpx.get(connect_link(live)).headers["location"]
    with httpx.Client() as browser:
        page = confirm(browser, live, browser.get(redirect.replace("code=", "code=x")))
    assert page.status_code == 400
    assert "did not accept this authorization" in page.text
    assert connection_rows(live) == []


def test_a_denied_authorization_stores_nothing(live: Live) -> None:
    state = urllib.parse.parse_qs(urllib.parse.urlsplit(connect_link(live)).query)["state"][0]
    page = httpx.get(
        f"{live.url}/freshbooks/oauth/callback", params={"error": "access_denied", "state": state}
    )
    assert page.status_code == 400
    assert "did not authorize" in page.text
    assert connection_rows(live) == []


def test_several_businesses_the_user_picks_one(live: Live) -> None:
    live.fake.identity.businesses.append(FakeBusiness(555, "ZZtop9", "Second Venture <Ltd>"))
    page = approve(live, connect_link(live))
    assert "Which FreshBooks business?" in page.text
    assert "Second Venture &lt;Ltd&gt;" in page.text  # escaped
    assert connection_rows(live) == []  # nothing is guessed
    choice = page.text.split("name='choice' value='")[1].split("'")[0]

    wrong = httpx.post(f"{live.url}/freshbooks/oauth/choose", data={"choice": choice, "business_id": "1"})
    assert wrong.status_code == 400
    assert "not one this FreshBooks login can connect" in wrong.text

    # The wrong pick spent the choice: start again and pick properly.
    page = approve(live, connect_link(live))
    choice = page.text.split("name='choice' value='")[1].split("'")[0]
    chosen = httpx.post(f"{live.url}/freshbooks/oauth/choose", data={"choice": choice, "business_id": "555"})
    assert chosen.status_code == 200
    assert "Second Venture" in chosen.text
    (row,) = connection_rows(live)
    assert (row.account_id, row.business_id) == ("ZZtop9", 555)
    again = httpx.post(f"{live.url}/freshbooks/oauth/choose", data={"choice": choice, "business_id": "555"})
    assert "already used" in again.text


def test_reconnecting_reuses_the_connection_and_creates_no_duplicates(live: Live) -> None:
    approve(live, connect_link(live))
    wait_for_dm(live, 1)
    (first,) = connection_rows(live)
    approve(live, connect_link(live))
    wait_for_dm(live, 2)
    (second,) = connection_rows(live)
    assert second.id == first.id
    assert second.webhook_token_hash == first.webhook_token_hash
    assert len(live.fake.callbacks) == 13
    assert len(live.fake.calls_to("POST", "/events")) == 13


def test_disconnect_removes_webhooks_and_tokens_but_keeps_the_trail(live: Live) -> None:
    approve(live, connect_link(live))
    wait_for_dm(live)
    live.fake.callbacks[9999] = live.fake.callbacks[next(iter(live.fake.callbacks))].__class__(
        9999, FB_ACCOUNT, "invoice.create", "https://another-integration.example/hook", "v", True
    )
    assert live.fake.deliver(FB_ACCOUNT, "invoice.create", "1").status_code == 200
    ours = next(
        c for c in live.fake.callbacks.values() if c.event == "invoice.create" and c.callback_id != 9999
    )
    fields = live.fake.webhook_fields(FB_ACCOUNT, "invoice.create", "2")
    late_webhook = (ours.uri, urllib.parse.urlencode(fields), compute_signature(fields, ours.verifier))

    refused = live.slash("disconnect", user_id=MEMBER).json()
    assert "Only workspace admins" in refused["text"]
    ack = live.slash("disconnect").json()
    assert "Disconnecting" in ack["text"]
    (response,) = live.slack.wait_for_responses(1)
    assert "Disconnected Acme Bookkeeping" in response["text"]

    assert list(live.fake.callbacks) == [9999]  # only ours were deleted
    (row,) = connection_rows(live)
    assert (row.status, row.access_token_enc, row.refresh_token_enc) == ("disconnected", None, None)
    with live.services.db.session() as session:
        assert session.scalar(select(func.count()).select_from(FreshBooksCallback)) == 0
        outcomes = session.scalars(select(AuditEntry.outcome).order_by(AuditEntry.id)).all()
    assert outcomes == ["connected", "disconnected"]
    uri, body, signature = late_webhook  # a webhook FreshBooks had in flight: refused, not stored
    late = httpx.post(
        uri,
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-FreshBooks-Hmac-SHA256": signature},
    )
    assert late.status_code == 404
    assert "not connected" in live.slash("status").json()["text"]


def test_a_revoked_grant_tells_the_admin_and_shows_in_status(live: Live) -> None:
    approve(live, connect_link(live))
    wait_for_dm(live)
    (row,) = connection_rows(live)
    live.fake.grants.clear()
    live.clock.advance(hours=12)  # the access token is about to expire: a refresh is due
    live.fake.deliver(FB_ACCOUNT, "invoice.create", "5")
    live.services.inbox_worker.run_once()

    messages = wait_for_dm(live, 2)
    assert "Run `/freshbooks connect` to reconnect" in messages[-1]
    status = live.slash("status").json()["text"]
    assert "needs reconnecting" in status
    assert row.id


def test_the_scheduled_check_repairs_and_tells_once(live: Live) -> None:
    approve(live, connect_link(live))
    wait_for_dm(live)
    monitor = live.services.monitor
    assert monitor is not None
    victim = next(c for c in live.fake.callbacks.values() if c.event == "bill.delete")
    del live.fake.callbacks[victim.callback_id]

    assert monitor.run() == 1
    assert "bill.delete" in {c.event for c in live.fake.callbacks.values()}
    assert monitor.run() == 0  # another tick within the interval (any process) does nothing
    assert len(dm_texts(live)) == 1  # healthy after repair: nobody is bothered

    # FreshBooks refuses to take the callback back: the admin is told once, then once on recovery.
    victim = next(c for c in live.fake.callbacks.values() if c.event == "bill.delete")
    del live.fake.callbacks[victim.callback_id]
    refuse = Scripted(400, {"errno": 422, "message": "Unrecognized event."})
    live.fake.script("POST", "/events", refuse, refuse)
    for _ in range(2):
        live.clock.advance(minutes=15)
        monitor.run()
    texts = dm_texts(live)
    assert len(texts) == 2
    assert "webhooks need attention: 12 of 13 webhooks verified" in texts[-1]
    live.clock.advance(minutes=15)
    monitor.run()
    assert "healthy again" in dm_texts(live)[-1]
    assert len(dm_texts(live)) == 3


def test_connect_without_freshbooks_settings_says_what_is_missing(live: Live) -> None:
    live.services.connect._config = None
    text = live.slash("connect").json()["text"]
    assert "FRESHBOOKS_CLIENT_ID" in text


def test_state_expires_after_ten_minutes_exactly(live: Live) -> None:
    link = connect_link(live)
    redirect = httpx.get(link).headers["location"]
    live.clock.advance(minutes=9, seconds=59)
    assert httpx.get(redirect).status_code == 200
    assert live.clock() - dt.timedelta(minutes=10) < live.clock()


def test_the_return_page_names_the_workspace_and_stores_nothing_until_confirmed(live: Live) -> None:
    redirect = httpx.get(connect_link(live)).headers["location"]
    with httpx.Client() as browser:
        page = browser.get(redirect)
        assert page.status_code == 200
        # Which Slack workspace the books would join (auth.test's name), before anything happens.
        assert "the Slack workspace <strong>Fake Team</strong> (<code>T0001</code>)" in page.text
        assert "Connect to Fake Team" in page.text
        assert connection_rows(live) == []
        assert live.fake.calls_to("POST", "/auth/oauth/token") == []  # the code is not even exchanged
        assert page.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
        cookie = page.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/freshbooks/oauth" in cookie
        fields = form_fields(page.text)

        # Another site's page posting the same form from this browser sends no SameSite cookie.
        forged = httpx.post(f"{live.url}/freshbooks/oauth/confirm", data={**fields, "action": "connect"})
        assert forged.status_code == 400 and "did not come from the page" in forged.text
        # Nor does a token made up, or one from another link, pass with the cookie.
        for bad in ("x", fields["form_token"][:-4] + "AAAA"):
            tampered = browser.post(
                f"{live.url}/freshbooks/oauth/confirm",
                data={**fields, "form_token": bad, "action": "connect"},
            )
            assert tampered.status_code == 400 and "did not come from the page" in tampered.text
        assert connection_rows(live) == []

        done = confirm(browser, live, page)
        assert done.status_code == 200, done.text
        assert "Acme Bookkeeping is connected" in done.text
    assert len(connection_rows(live)) == 1


def test_cancel_on_the_return_page_connects_nothing_and_spends_the_link(live: Live) -> None:
    redirect = httpx.get(connect_link(live)).headers["location"]
    with httpx.Client() as browser:
        page = browser.get(redirect)
        cancelled = confirm(browser, live, page, action="cancel")
        assert "Nothing was connected" in cancelled.text
        again = browser.get(redirect)
    assert again.status_code == 400 and "already used" in again.text
    assert connection_rows(live) == []
    assert live.fake.calls_to("POST", "/auth/oauth/token") == []
