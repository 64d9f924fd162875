"""Multi-workspace mode: the OAuth install, token rotation for requests and the worker, isolation.

Everything runs against the fake Slack over real HTTP: GET /slack/install -> the fake's authorize
page -> /slack/oauth_redirect -> oauth.v2.access. Tokens expire on the test's clock (the fake
and the app share it), so expiry is reached by moving the clock, never by waiting.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.oauth.installation_store import Installation
from sqlalchemy import func, select, update

from connector.domain.refresh import LEASE, WAIT_LIMIT
from connector.domain.settings import ConfigError
from connector.slack import slack_tokens
from connector.slack.slack_tokens import SlackTokens, needs_refresh
from slack_ui.oauth import BOT_SCOPES, failure_reason, installation_from_oauth
from storage import connections, installations
from storage.crypto import Cipher, generate_key
from storage.db import Database
from storage.installations import EncryptedInstallationStore, HashedOAuthStateStore, StoredBot
from storage.models import Delivery, DeliveryState, RoutingRule, SlackBot, SlackInstallation, SlackOAuthState
from storage.rotation import rotate_keys
from tests.support.desk import Desk, eventually
from tests.support.dump import dump
from tests.support.fakes.freshbooks import FakeFreshBooks
from tests.support.fakes.slack import APP_ID, CLIENT_ID, CLIENT_SECRET, Channel, FakeSlack, Workspace
from tests.support.live import (
    SLACK_BOT_TOKEN,
    SLACK_SIGNING_SECRET,
    FakeClock,
    Live,
    make_settings,
    serve_live,
    signed_slack_post,
)
from tests.support.paths import REPO

# Run again by .ci/run from a leap day just before midnight US/Eastern (tests/support/live.py).
pytestmark = pytest.mark.date_sensitive

T1, T2 = "T1ACME", "T2GLOBEX"
ADMIN1, ADMIN2 = "UADMIN1", "UADMIN2"
C1, C2 = "C1ACCT", "C2ACCT"


# -- a live app in multi-workspace mode --------------------------------------------------------------


@pytest.fixture
def multi(
    db: Database,
    database_url: str,
    fake_freshbooks: FakeFreshBooks,
    clock: FakeClock,
    tmp_path: Path,
    encryption_key: str,
) -> Iterator[Live]:
    with FakeSlack(clock=lambda: clock().timestamp()) as slack:
        for team, name, admin, channel in ((T1, "Acme", ADMIN1, C1), (T2, "Globex", ADMIN2, C2)):
            slack.add_workspace(Workspace(team, name, installer=admin))
            slack.add_user(admin, admin=True, team_id=team)
            slack.add_channel(Channel(channel, name="accounting", team_id=team))
        with serve_live(
            database_url=database_url,
            encryption_key=encryption_key,
            fake_freshbooks=fake_freshbooks,
            slack=slack,
            clock=clock,
            tmp_path=tmp_path,
            SLACK_CLIENT_ID=CLIENT_ID,
            SLACK_CLIENT_SECRET=CLIENT_SECRET,
            SLACK_AUTHORIZE_URL=slack.authorize_url,
        ) as running:
            yield running


@dataclass
class Redirect:
    url: str  # /slack/oauth_redirect?code=...&state=..., where Slack sends the browser back
    cookie: str  # the state cookie /slack/install set


def start_install(live: Live, team: str | None = None) -> Redirect:
    """The browser's first two hops: our /slack/install, then Slack's authorize page approves."""
    started = httpx.get(f"{live.url}/slack/install" + (f"?team={team}" if team else ""))
    assert started.status_code == 302, started.text
    authorize = started.headers["location"]
    assert authorize.startswith(live.slack.authorize_url + "?")
    # The state cookie is Secure (https only), so httpx would not send it back over the test's plain
    # http: carry it by hand, as a browser on the real https URL would.
    cookie = started.headers["set-cookie"].split(";")[0]
    approved = httpx.get(authorize)
    assert approved.status_code == 302, approved.text
    return Redirect(approved.headers["location"], cookie)


def finish_install(live: Live, redirect: Redirect, *, cookie: str | None = None) -> httpx.Response:
    return httpx.get(redirect.url, headers={"Cookie": redirect.cookie if cookie is None else cookie})


def install(live: Live, team: str) -> httpx.Response:
    page = finish_install(live, start_install(live, team))
    assert page.status_code == 200, page.text
    return page


def stored(live: Live, team: str) -> list[SlackInstallation]:
    with live.services.db.read() as session:
        return list(session.scalars(select(SlackInstallation).where(SlackInstallation.team_id == team)))


def bot_of(live: Live, team: str) -> StoredBot | None:
    with live.services.db.read() as session:
        return installations.current_bot(session, live.services.cipher, client_id=CLIENT_ID, team_id=team)


def say(live: Live, text: str, *, team: str, user: str) -> str:
    response = live.slash(text, user_id=user, team_id=team)
    assert response.status_code == 200, response.text
    return str(response.json()["text"])


def event(live: Live, team: str, payload: dict[str, Any]) -> httpx.Response:
    """A signed Events API request for `team`, over real HTTP."""
    body = json.dumps(
        {
            "token": "unused",
            "team_id": team,
            "api_app_id": APP_ID,
            "event": {"event_ts": f"{time.time():.6f}", **payload},
            "type": "event_callback",
            "event_id": f"Ev{uuid.uuid4().hex[:10].upper()}",
            "event_time": int(time.time()),
        }
    )
    return signed_slack_post(live.url, body, content_type="application/json")


def tokens_used(slack: FakeSlack, method: str) -> set[str]:
    return {
        headers.get("authorization", "").removeprefix("Bearer ") for _m, _p, headers in slack.calls_to(method)
    }


def desk_for(live: Live, team: str, *, business: str = "Acme Bookkeeping", account: str = "ACC1") -> Desk:
    """A FreshBooks connection for `team` (its admin connected it), and helpers to queue deliveries."""
    with live.services.db.session() as session:
        workspace = connections.ensure_workspace(session, team_id=team, now=live.clock())
        new = connections.create_connection(
            session,
            live.services.cipher,
            workspace_id=workspace.id,
            account_id=account,
            business_id=1,
            business_name=business,
            access_token=f"fb-{account}",
            refresh_token=f"fb-refresh-{account}",
            token_expires_at=live.clock() + dt.timedelta(days=30),
            connected_by_user_id=ADMIN1 if team == T1 else ADMIN2,
            now=live.clock(),
        )
        return Desk(live=live, connection_id=new.connection.id, workspace_id=workspace.id)


# -- the install -----------------------------------------------------------------------------------


def test_install_stores_the_workspace_with_its_tokens_encrypted(multi: Live) -> None:
    started = httpx.get(f"{multi.url}/slack/install?team={T1}")
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(started.headers["location"]).query))
    assert query["client_id"] == CLIENT_ID
    assert query["scope"].split(",") == list(BOT_SCOPES)
    assert query["redirect_uri"] == f"{multi.url}/slack/oauth_redirect"
    assert query["team"] == T1
    assert started.headers["set-cookie"].startswith(f"slack-app-oauth-state={query['state']};")
    assert "Secure" in started.headers["set-cookie"] and "HttpOnly" in started.headers["set-cookie"]

    page = install(multi, T1)
    assert "FreshBooks for Slack is installed in Acme" in page.text
    assert "/freshbooks connect" in page.text
    assert "slack-app-oauth-state=deleted" in page.headers["set-cookie"]

    token = multi.slack.tokens_of(T1)[-1]
    [row] = stored(multi, T1)
    assert row.client_id == CLIENT_ID and row.user_id == ADMIN1 and row.bot_user_id == f"UB{T1}"
    assert row.bot_id == f"BB{T1}"  # from auth.test with the new token
    assert row.bot_token and token not in row.bot_token
    assert multi.services.cipher.decrypt(row.bot_token) == token
    assert row.bot_refresh_token and multi.services.cipher.decrypt(row.bot_refresh_token).startswith(
        "xoxe-1-"
    )
    assert row.bot_token_expires_at == (multi.clock() + dt.timedelta(hours=12)).replace(tzinfo=None)
    with multi.services.db.read() as session:
        bots = list(session.scalars(select(SlackBot).where(SlackBot.team_id == T1)))
        assert [multi.services.cipher.decrypt(b.bot_token or "") for b in bots] == [token]
        assert connections.workspace_of_team(session, T1) is not None  # the workspace row exists

    text = dump(multi)
    assert T1 in text  # the dump is real
    for secret in (token, multi.services.cipher.decrypt(row.bot_refresh_token), CLIENT_SECRET):
        assert secret not in text

    # The new install answers its workspace's commands with its own token.
    assert "not connected" in say(multi, "status", team=T1, user=ADMIN1)


def test_install_without_a_team_uses_the_signed_in_workspace(multi: Live) -> None:
    multi.slack.installing_team = T2
    page = finish_install(multi, start_install(multi))
    assert page.status_code == 200
    assert "Globex" in page.text
    assert len(stored(multi, T2)) == 1 and stored(multi, T1) == []


def test_a_state_works_once(multi: Live) -> None:
    redirect = start_install(multi, T1)
    assert finish_install(multi, redirect).status_code == 200
    again = finish_install(multi, redirect)
    assert again.status_code == 401
    assert "already used, or it expired" in again.text
    assert "/slack/install" in again.text
    assert len(stored(multi, T1)) == 1


def test_an_expired_state_is_refused(multi: Live) -> None:
    redirect = start_install(multi, T1)
    multi.clock.advance(minutes=10, seconds=1)
    page = finish_install(multi, redirect)
    assert page.status_code == 401
    assert "already used, or it expired" in page.text
    assert stored(multi, T1) == []
    with multi.services.db.read() as session:  # the dead state is purged by the next install link
        assert installations.pending_states(session) == 1
    start_install(multi, T1)
    with multi.services.db.read() as session:
        assert installations.pending_states(session) == 1


def test_a_callback_from_another_browser_is_refused(multi: Live) -> None:
    redirect = start_install(multi, T1)
    page = finish_install(multi, redirect, cookie="slack-app-oauth-state=someone-elses")
    assert page.status_code == 400
    assert "not reached from an install link opened in this browser" in page.text
    assert stored(multi, T1) == []
    assert finish_install(multi, redirect).status_code == 200  # the real browser still can


def test_a_cancelled_install_stores_nothing(multi: Live) -> None:
    multi.slack.deny_install = True
    page = finish_install(multi, start_install(multi, T1))
    assert page.status_code == 200  # Bolt's suggestion for a person's own choice
    assert "The install was cancelled in Slack." in page.text
    assert stored(multi, T1) == []


def test_a_code_slack_refuses_stores_nothing(multi: Live) -> None:
    redirect = start_install(multi, T1)
    multi.slack.client_secret = "rotated-at-slack"  # our secret no longer matches
    page = finish_install(multi, redirect)
    assert page.status_code == 401
    assert "did not accept the authorization code" in page.text
    assert stored(multi, T1) == []
    assert [call[0] for call in multi.slack.calls_to("oauth.v2.access")] == ["oauth.v2.access"]


def test_a_reinstall_replaces_the_token(multi: Live) -> None:
    install(multi, T1)
    multi.clock.advance(minutes=5)
    install(multi, T1)
    first, second = multi.slack.tokens_of(T1)
    bot = bot_of(multi, T1)
    assert bot is not None and bot.token == second != first


# -- token rotation ----------------------------------------------------------------------------------


def test_a_command_after_expiry_renews_the_token_once(multi: Live) -> None:
    install(multi, T1)
    [old] = multi.slack.tokens_of(T1)
    multi.clock.advance(hours=12, minutes=1)
    with pytest.raises(SlackApiError) as refused:  # Slack no longer takes the old token
        WebClient(token=old, base_url=multi.slack.base_url).auth_test()
    assert refused.value.response["error"] == "token_expired"

    assert "not connected" in say(multi, "status", team=T1, user=ADMIN1)
    assert len(multi.slack.refreshes()) == 1
    new = multi.slack.tokens_of(T1)[-1]
    bot = bot_of(multi, T1)
    assert bot is not None and bot.token == new != old
    assert bot.expires_at == multi.clock() + dt.timedelta(hours=12)

    # Later requests use the renewed token (users.info: the admin check), without renewing again.
    multi.slack.add_channel(Channel("C1PUB", name="exec", team_id=T1))
    desk_for(multi, T1)
    assert say(multi, "route invoice <#C1PUB|exec>", team=T1, user=ADMIN1).startswith("Rule saved")
    assert tokens_used(multi.slack, "users.info") == {new}
    assert len(multi.slack.refreshes()) == 1


def test_a_delivery_after_expiry_renews_the_token_once(multi: Live) -> None:
    install(multi, T1)
    desk = desk_for(multi, T1)
    [delivery] = desk.queue(C1)
    multi.clock.advance(hours=12, minutes=1)
    desk.drain()
    assert desk.states([delivery]) == [DeliveryState.DELIVERED]
    assert len(multi.slack.refreshes()) == 1
    assert tokens_used(multi.slack, "chat.postMessage") == {multi.slack.tokens_of(T1)[-1]}


def test_a_token_is_renewed_before_it_expires(multi: Live) -> None:
    install(multi, T1)
    [old] = multi.slack.tokens_of(T1)
    tokens = multi.services.slack_tokens
    assert tokens is not None
    multi.clock.advance(hours=11, minutes=49)
    client = tokens.client_for_team(T1)
    assert client is not None and client.token == old and multi.slack.refreshes() == []
    multi.clock.advance(minutes=2)  # within ten minutes of expiry
    client = tokens.client_for_team(T1)
    assert client is not None and client.token != old and len(multi.slack.refreshes()) == 1
    assert client.retry_handlers == []  # the engine owns retries


def test_two_processes_renewing_together_refresh_once(multi: Live, database_url: str) -> None:
    install(multi, T1)
    [old] = multi.slack.tokens_of(T1)
    multi.clock.advance(hours=13)
    other_db = Database(database_url, pool_size=2)  # another process: its own engine and pool
    b_waits = threading.Event()
    poll = threading.Event()

    def b_wait(seconds: float) -> None:
        b_waits.set()
        poll.wait(seconds)  # the production poll interval, on an event that is never set

    def process(db: Database, wait: Any = None) -> SlackTokens:
        extra = {"wait": wait} if wait else {}
        return SlackTokens(
            db=db,
            cipher=multi.services.cipher,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            api_url=multi.slack.base_url,
            clock=multi.clock,
            **extra,
        )

    a, b = process(multi.services.db), process(other_db, b_wait)
    got: dict[str, WebClient | None] = {}
    hold = multi.slack.hold("oauth.v2.access")
    try:
        first = threading.Thread(target=lambda: got.__setitem__("a", a.client_for_team(T1)))
        first.start()
        assert hold.arrived.wait(5), "A never asked Slack for a refresh"
        second = threading.Thread(target=lambda: got.__setitem__("b", b.client_for_team(T1)))
        second.start()
        assert b_waits.wait(5), "B did not wait for A's refresh"  # lease taken, token expired
        hold.release()
        first.join(10)
        second.join(10)
    finally:
        hold.release()
        multi.slack.holds.clear()
        other_db.dispose()

    new = multi.slack.tokens_of(T1)[-1]
    assert new != old
    client_a, client_b = got["a"], got["b"]
    assert client_a is not None and client_b is not None
    assert client_a.token == client_b.token == new
    assert len(multi.slack.refreshes()) == 1
    # The rotated refresh token was kept: the next renewal works.
    multi.clock.advance(hours=12)
    renewed = a.client_for_team(T1)
    assert renewed is not None and renewed.token == multi.slack.tokens_of(T1)[-1] != new


def another_process(live: Live, *, wait: Any = None, db: Database | None = None) -> SlackTokens:
    """An independent SlackTokens: what another process would have (the same clock)."""
    return SlackTokens(
        db=db or live.services.db,
        cipher=live.services.cipher,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        api_url=live.slack.base_url,
        clock=live.clock,
        wait=wait or poll,
    )


def poll(_seconds: float) -> None:
    threading.Event().wait(0.01)


def refresh_lease(live: Live, team: str) -> tuple[str | None, dt.datetime | None]:
    [row] = stored(live, team)
    return row.refresh_lease_owner, row.refresh_lease_until


def hold_refresh_lease(live: Live, team: str, owner: str) -> None:
    """Hold the refresh lease as a process that just took it would (and then was SIGKILLed)."""
    with live.services.db.session() as session:
        session.execute(
            update(SlackInstallation)
            .where(SlackInstallation.team_id == team)
            .values(refresh_lease_owner=owner, refresh_lease_until=live.clock() + LEASE)
        )


def test_four_second_tokens_are_renewed_about_once_per_lifetime(multi: Live) -> None:
    """Calls every quarter second for 20 s, from four threads of two processes, on bot tokens
    that live four seconds: one renewal every three seconds, and Slack never sees an expired
    token. (With the fixed ten-minute margin every call renewed.)"""
    multi.slack.token_lifetime = 4
    install(multi, T1)
    processes = [another_process(multi), another_process(multi)]
    errors: list[BaseException] = []

    def call(tokens: SlackTokens) -> None:
        try:
            client = tokens.client_for_team(T1)
            assert client is not None, "no token"
            client.auth_test()
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    for _ in range(80):
        threads = [threading.Thread(target=call, args=(processes[n % 2],)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        multi.clock.advance(seconds=0.25)

    assert errors == []
    # Renewed 1 s before each expiry: at about 3, 6 ... 18 s.
    assert 5 <= len(multi.slack.refreshes()) <= 8, len(multi.slack.refreshes())
    bot = bot_of(multi, T1)
    assert bot is not None and bot.issued_at is not None
    assert bot.expires_at is not None and bot.expires_at - bot.issued_at == dt.timedelta(seconds=4)
    assert refresh_lease(multi, T1) == (None, None)


def test_a_holder_killed_mid_renewal_holds_others_up_for_one_lease_then_they_renew(
    multi: Live, caplog: pytest.LogCaptureFixture
) -> None:
    """A process SIGKILLed holding the lease leaves it behind: a caller whose token has expired
    waits it out (at most LEASE, 15 s: it was 60 s, and after 100 polls it gave up) and renews."""
    install(multi, T1)
    [old] = multi.slack.tokens_of(T1)
    multi.clock.advance(hours=12, minutes=1)
    hold_refresh_lease(multi, T1, "host:4242:dead")
    taken_at = multi.clock()
    # Each poll lets half a second pass (a poll every 50 ms would take 300 rounds of queries).
    tokens = another_process(multi, wait=lambda _seconds: multi.clock.advance(seconds=0.5))

    with caplog.at_level(logging.WARNING, logger="connector.slack.slack_tokens"):
        client = tokens.client_for_team(T1)

    waited = multi.clock() - taken_at
    assert LEASE <= waited <= LEASE + dt.timedelta(seconds=0.5), waited
    assert client is not None and client.token == multi.slack.tokens_of(T1)[-1] != old
    assert len(multi.slack.refreshes()) == 1
    assert refresh_lease(multi, T1) == (None, None)
    assert not [r for r in caplog.records if "gave up" in r.getMessage()]


def test_a_lease_that_never_ends_is_waited_out_for_two_leases_then_given_up(
    multi: Live, caplog: pytest.LogCaptureFixture
) -> None:
    install(multi, T1)
    multi.clock.advance(hours=12, minutes=1)
    started = multi.clock()

    def wait(_seconds: float) -> None:
        multi.clock.advance(seconds=1)  # a second a poll: the clock, not the rounds, ends the wait
        hold_refresh_lease(multi, T1, "host:4242:elsewhere")  # renewed by a process we cannot see

    hold_refresh_lease(multi, T1, "host:4242:elsewhere")
    with caplog.at_level(logging.WARNING, logger="connector.slack.slack_tokens"):
        assert another_process(multi, wait=wait).client_for_team(T1) is None
    assert WAIT_LIMIT < multi.clock() - started <= WAIT_LIMIT + dt.timedelta(seconds=1)
    assert multi.slack.refreshes() == []
    assert [r for r in caplog.records if "gave up waiting for another process" in r.getMessage()]


def test_a_renewal_held_past_its_deadline_is_given_up_and_the_next_caller_renews(
    multi: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slack (or the network) holds oauth.v2.access unanswered: the call is given up at the
    deadline, not at slack_sdk's 30 s socket timeout, the lease is released at once, and the next
    caller renews with the same refresh token (Slack had not acted on the held call)."""
    monkeypatch.setattr(slack_tokens, "REFRESH_DEADLINE", 1.0)
    install(multi, T1)
    [old] = multi.slack.tokens_of(T1)
    multi.clock.advance(hours=12, minutes=1)
    held = multi.slack.hold("oauth.v2.access")
    try:
        began = time.monotonic()
        assert another_process(multi).client_for_team(T1) is None  # expired, and not renewed
        took = time.monotonic() - began
        assert held.arrived.is_set()
        assert 1.0 <= took < 5.0, took
        assert refresh_lease(multi, T1) == (None, None)

        multi.slack.holds.clear()  # the next call goes through while the first is still held
        client = another_process(multi).client_for_team(T1)
        assert client is not None and client.token == multi.slack.tokens_of(T1)[-1] != old
    finally:
        held.release()
    # The abandoned call, answered late, spent nothing: its refresh token was used already.
    eventually(lambda: len(multi.slack.refreshes()) == 2, "the held call answered")
    bot = bot_of(multi, T1)
    assert bot is not None and client.token == bot.token


def test_a_refused_renewal_stops_posting_until_a_reinstall(multi: Live) -> None:
    install(multi, T1)
    desk = desk_for(multi, T1)
    [held] = desk.queue(C1)
    multi.slack.uninstall(T1)  # refresh token revoked too; no event reached us
    multi.clock.advance(hours=13)
    tokens = multi.services.slack_tokens
    assert tokens is not None and tokens.client_for_team(T1) is None
    desk.drain()
    assert desk.states([held]) == [DeliveryState.PARKED]
    assert desk.workspace().suspended_reason == "not_authed"

    install(multi, T1)  # the reinstall resumes the workspace and replays what waited
    assert desk.workspace().suspended_reason is None
    desk.drain()
    assert desk.states([held]) == [DeliveryState.DELIVERED]


@pytest.mark.parametrize("kind", ["app_uninstalled", "tokens_revoked"])
def test_uninstall_forgets_the_install_and_a_reinstall_resumes(multi: Live, kind: str) -> None:
    install(multi, T1)
    install(multi, T2)
    desk = desk_for(multi, T1)
    waiting = desk.queue(C1, 2)
    multi.slack.uninstall(T1)
    payload: dict[str, Any] = {"type": kind}
    if kind == "tokens_revoked":
        payload["tokens"] = {"bot": [f"UB{T1}"]}
    assert event(multi, T1, payload).status_code == 200
    eventually(lambda: desk.states(waiting) == [DeliveryState.PARKED] * 2, "deliveries parked")
    assert stored(multi, T1) == []
    assert len(stored(multi, T2)) == 1  # the other workspace keeps its install
    desk.drain()
    assert multi.slack.calls_to("chat.postMessage") == []

    install(multi, T1)
    assert desk.workspace().suspended_reason is None
    desk.drain()
    assert desk.states(waiting) == [DeliveryState.DELIVERED] * 2
    assert tokens_used(multi.slack, "chat.postMessage") == {multi.slack.tokens_of(T1)[-1]}


def test_user_tokens_revoked_keep_the_bot_install(multi: Live) -> None:
    install(multi, T1)
    assert event(multi, T1, {"type": "tokens_revoked", "tokens": {"oauth": [ADMIN1]}}).status_code == 200
    assert len(stored(multi, T1)) == 1


def test_a_workspace_without_an_install_is_told_to_reinstall(multi: Live) -> None:
    response = multi.slash("status", user_id=ADMIN1, team_id=T1)
    assert response.status_code == 200
    assert multi.slack.wait_for_responses(1)[0]["text"].startswith(":warning:")


# -- isolation ------------------------------------------------------------------------------------


def test_a_workspace_never_sees_or_changes_another(multi: Live) -> None:
    install(multi, T1)
    install(multi, T2)
    desk1 = desk_for(multi, T1, business="Acme Bookkeeping", account="ACC1")
    desk2 = desk_for(multi, T2, business="Globex Books", account="ACC2")
    assert say(multi, f"route invoice <#{C1}|accounting>", team=T1, user=ADMIN1).startswith("Rule saved")
    assert say(multi, f"route bill <#{C2}|accounting>", team=T2, user=ADMIN2).startswith("Rule saved")
    with multi.services.db.read() as session:
        rule2 = session.scalar(select(RoutingRule.id).where(RoutingRule.channel_id == C2))
    assert rule2 is not None

    rules1 = say(multi, "rules", team=T1, user=ADMIN1)
    assert C1 in rules1 and C2 not in rules1 and "bill" not in rules1
    assert (
        say(multi, f"unroute {rule2}", team=T1, user=ADMIN1)
        == f"There is no rule #{rule2} in this workspace."
    )
    with multi.services.db.read() as session:
        assert session.scalar(select(func.count()).where(RoutingRule.id == rule2)) == 1
    status1 = say(multi, "status", team=T1, user=ADMIN1)
    assert "Acme Bookkeeping" in status1 and "Globex" not in status1

    # Deliveries go out with each workspace's own token (the fake refuses the other's channels).
    [d1], [d2] = desk1.queue(C1), desk2.queue(C2)
    desk1.drain()
    assert desk1.states([d1, d2]) == [DeliveryState.DELIVERED, DeliveryState.DELIVERED]
    token1, token2 = multi.slack.tokens_of(T1)[-1], multi.slack.tokens_of(T2)[-1]
    by_channel = {
        params["channel"]: headers["authorization"].removeprefix("Bearer ")
        for _m, params, headers in multi.slack.calls_to("chat.postMessage")
    }
    assert by_channel == {C1: token1, C2: token2}

    audit1 = say(multi, f"audit D{d2}", team=T1, user=ADMIN1)
    assert audit1 == f"There is no delivery D{d2} in this workspace."
    assert "no delivery" not in say(multi, f"audit D{d2}", team=T2, user=ADMIN2)

    # App Home: T1's admin sees T1's business and rules, published with T1's token.
    assert event(multi, T1, {"type": "app_home_opened", "user": ADMIN1, "tab": "home"}).status_code == 200
    eventually(lambda: ADMIN1 in multi.slack.home_views, "home published")
    home = json.dumps(multi.slack.home_views[ADMIN1])
    assert "Acme Bookkeeping" in home and "Globex" not in home and C2 not in home
    assert tokens_used(multi.slack, "views.publish") == {token1}
    with multi.services.db.read() as session:
        per_workspace = {d.workspace_id: d.channel_id for d in session.scalars(select(Delivery))}
    assert per_workspace == {desk1.workspace_id: C1, desk2.workspace_id: C2}


# -- the stores on both databases ------------------------------------------------------------------


def test_the_store_encrypts_every_token_and_key_rotation_reaches_them(
    db: Database, cipher: Cipher, encryption_key: str
) -> None:
    store = EncryptedInstallationStore(client_id=CLIENT_ID, engine=db.engine, cipher=cipher)
    secrets = {
        "bot_token": "xoxe.xoxb-1-bot",
        "bot_refresh_token": "xoxe-1-bot-refresh",
        "user_token": "xoxe.xoxp-1-user",
        "user_refresh_token": "xoxe-1-user-refresh",
        "incoming_webhook_url": "https://hooks.slack.test/services/T/B/secret",
    }
    original = Installation(
        app_id=APP_ID, team_id=T1, user_id=ADMIN1, bot_id="B1", bot_user_id="U1", **secrets
    )
    store.save(original)
    assert original.bot_token == secrets["bot_token"]  # the caller's object is untouched

    with db.read() as session:
        row = session.scalars(select(SlackInstallation)).one()
        for name, value in secrets.items():
            assert getattr(row, name) != value and cipher.decrypt(getattr(row, name)) == value
    found = store.find_installation(enterprise_id=None, team_id=T1)
    assert found is not None and {name: getattr(found, name) for name in secrets} == secrets
    bot = store.find_bot(enterprise_id=None, team_id=T1)
    assert bot is not None and bot.bot_token == secrets["bot_token"]

    newer = Cipher([generate_key(), encryption_key])  # a new first key; the old one still decrypts
    report = rotate_keys(db, newer)
    assert report.per_column["slack_installations.bot_token"] == 1
    assert report.per_column["slack_bots.bot_refresh_token"] == 1
    rotated = EncryptedInstallationStore(client_id=CLIENT_ID, engine=db.engine, cipher=newer)
    found = rotated.find_installation(enterprise_id=None, team_id=T1)
    assert found is not None and found.user_refresh_token == secrets["user_refresh_token"]

    store.delete_installation(enterprise_id=None, team_id=T1)
    store.delete_bot(enterprise_id=None, team_id=T1)
    assert store.find_installation(enterprise_id=None, team_id=T1) is None


def test_state_store_keeps_hashes_and_each_state_works_once(db: Database, clock: FakeClock) -> None:
    store = HashedOAuthStateStore(engine=db.engine, clock=clock)
    state = store.issue()
    with db.read() as session:
        [row] = session.scalars(select(SlackOAuthState)).all()
    assert row.state != state and len(row.state) == 64
    assert store.consume(state) is True
    assert store.consume(state) is False
    late = store.issue()
    clock.advance(seconds=601)
    assert store.consume(late) is False
    assert store.consume("never-issued") is False


# -- pure pieces ----------------------------------------------------------------------------------


def test_installation_from_oauth_puts_expiry_on_our_clock() -> None:
    now = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
    answer = {
        "app_id": APP_ID,
        "access_token": "xoxe.xoxb-1",
        "refresh_token": "xoxe-1-r",
        "expires_in": 43200,
        "token_type": "bot",
        "scope": "commands,chat:write",
        "bot_user_id": "UB1",
        "team": {"id": T1, "name": "Acme"},
        "enterprise": None,
        "authed_user": {"id": ADMIN1},
    }
    made = installation_from_oauth(answer, bot_id="BB1", now=now)
    assert made.bot_token_expires_at == int(now.timestamp()) + 43200
    assert made.installed_at == now.timestamp()
    assert (made.team_id, made.user_id, made.bot_id, made.bot_scopes) == (
        T1,
        ADMIN1,
        "BB1",
        ["commands", "chat:write"],
    )
    assert made.user_token is None and made.user_token_expires_at is None
    plain = installation_from_oauth(
        {**answer, "expires_in": None, "refresh_token": None}, bot_id=None, now=now
    )
    assert plain.bot_token_expires_at is None  # rotation off: the token does not expire


def test_needs_refresh_within_a_margin_scaled_to_the_tokens_lifetime() -> None:
    now = dt.datetime(2028, 2, 29, 23, 59, tzinfo=dt.UTC)

    def bot(
        expires_in: dt.timedelta | None,
        refresh: str | None = "xoxe-REFRESH",
        *,
        lifetime: dt.timedelta = dt.timedelta(hours=12),
        issued: bool = True,
    ) -> StoredBot:
        expires_at = now + expires_in if expires_in is not None else None
        issued_at = expires_at - lifetime if expires_at is not None and issued else None
        return StoredBot(
            row_id=1, team_id=T1, enterprise_id=None, bot_user_id=None, bot_id=None, scopes=(),
            installed_at=now.replace(tzinfo=None), expires_at=expires_at, issued_at=issued_at,
            token="t", refresh_token=refresh,
        )  # fmt: skip

    # Slack's 12-hour tokens: ten minutes before expiry, as before.
    assert not needs_refresh(bot(dt.timedelta(minutes=11)), now)
    assert needs_refresh(bot(dt.timedelta(minutes=10)), now)
    assert needs_refresh(bot(dt.timedelta(hours=-1)), now)
    # 4-second tokens: a quarter of their life, not every call.
    four = dt.timedelta(seconds=4)
    assert not needs_refresh(bot(dt.timedelta(seconds=1.1), lifetime=four), now)
    assert needs_refresh(bot(dt.timedelta(seconds=1), lifetime=four), now)
    # Unknown issue time: the default margin (an early refresh, after which it is known).
    assert needs_refresh(bot(dt.timedelta(seconds=599), lifetime=four, issued=False), now)
    assert not needs_refresh(bot(None), now)
    assert not needs_refresh(bot(dt.timedelta(minutes=1), refresh=None), now)
    assert "SECRET" not in repr(bot(None)) and "REFRESH" not in repr(bot(None))  # never in a log


@pytest.mark.parametrize(
    ("reason", "text"),
    [
        ("access_denied", "cancelled"),
        ("invalid_state", "already used"),
        ("invalid_browser", "this browser"),
        ("storage_error", "could not be saved"),
        ("something_new", "Slack answered `something_new`."),
    ],
)
def test_every_failure_says_what_happened(reason: str, text: str) -> None:
    assert text in failure_reason(reason)


def test_manifest_asks_for_token_rotation_and_the_scopes_the_install_requests() -> None:
    manifest = yaml.safe_load((REPO / "manifest.yml").read_text())
    assert manifest["settings"]["token_rotation_enabled"] is True
    assert manifest["oauth_config"]["scopes"]["bot"] == list(BOT_SCOPES)
    assert "user" not in manifest["oauth_config"]["scopes"]
    assert manifest["oauth_config"]["redirect_urls"] == ["https://example.com/slack/oauth_redirect"]


# -- settings and single-workspace mode -------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"PUBLIC_URL": "https://fb.example.com", "SLACK_CLIENT_ID": "x" * 33}, "SLACK_CLIENT_ID: must be"),
        (
            {"PUBLIC_URL": "https://fb.example.com", "SLACK_AUTHORIZE_URL": "https://slack.test/a?x=1"},
            "SLACK_AUTHORIZE_URL: must not carry a query string",
        ),
        ({"PUBLIC_URL": "https://fb.example.com", "SLACK_BOT_TOKEN": SLACK_BOT_TOKEN}, "mutually exclusive"),
    ],
)
def test_multi_workspace_settings_are_checked(tmp_path: Path, env: dict[str, str], named: str) -> None:
    base = {"SLACK_CLIENT_ID": CLIENT_ID, "SLACK_CLIENT_SECRET": CLIENT_SECRET}
    with pytest.raises(ConfigError) as error:
        make_settings(tmp_path, **{**base, **env})
    assert named in str(error.value)
    assert CLIENT_SECRET not in str(error.value)


def test_multi_workspace_settings_build_the_redirect_url(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        SLACK_CLIENT_ID=CLIENT_ID,
        SLACK_CLIENT_SECRET=CLIENT_SECRET,
        PUBLIC_URL="https://fb.example.com/",
    )
    assert settings.slack_redirect_uri == "https://fb.example.com/slack/oauth_redirect"
    assert settings.slack_authorize_url == "https://slack.com/oauth/v2/authorize"


def test_without_public_url_the_install_is_off_and_the_setup_page_says_why(tmp_path: Path) -> None:
    from app import create_app
    from storage import migrate

    settings = make_settings(
        tmp_path,
        SLACK_SIGNING_SECRET=SLACK_SIGNING_SECRET,
        SLACK_CLIENT_ID=CLIENT_ID,
        SLACK_CLIENT_SECRET=CLIENT_SECRET,
    )
    assert settings.slack_mode == "multi" and settings.slack_redirect_uri is None
    database = Database(settings.resolved_database_url)
    migrate.upgrade(database.engine)
    database.dispose()
    flask_app = create_app(settings, start_background=False)
    try:
        client = flask_app.test_client()
        assert client.get("/slack/install").status_code == 404
        page = re.sub(r"<[^>]+>", "", client.get("/").get_data(as_text=True))  # the setup page's text
        assert "Set PUBLIC_URL" in page
    finally:
        flask_app.extensions["fbslack"].stop()


def test_single_workspace_mode_has_no_install_pages(live: Live) -> None:
    for path in ("/slack/install", "/slack/oauth_redirect?code=x&state=y"):
        response = httpx.get(f"{live.url}{path}")
        assert response.status_code == 404
        assert "SLACK_CLIENT_ID" in response.text
    assert "not connected" in live.slash("status").json()["text"]  # single mode still answers


def test_doctor_checks_every_installed_workspace(multi: Live) -> None:
    from connector.ops import doctor

    tokens = multi.services.slack_tokens
    assert tokens is not None
    [nothing] = doctor.check_slack_workspaces(tokens.client_for_team, [])
    assert not nothing.ok and "/slack/install" in nothing.fix
    install(multi, T1)
    install(multi, T2)
    multi.slack.uninstall(T2)
    multi.clock.advance(hours=13)  # T2's token expired and cannot be renewed any more
    findings = {f.check: f for f in doctor.check_slack_workspaces(tokens.client_for_team, [T1, T2])}
    assert findings[f"slack auth.test {T1}"].ok
    assert not findings[f"slack {T2}"].ok and "reinstall" in findings[f"slack {T2}"].fix
