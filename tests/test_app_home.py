"""The App Home: published when opened, with connection health, rules, parked deliveries; its buttons."""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.parse
from typing import Any

import httpx
from slack_sdk.signature import SignatureVerifier

from connector.home import DeliveryLine, HomeData
from connector.route import Rule
from slack_ui.home import MAX_BLOCKS, build_home
from storage.models import DeliveryState
from tests.conftest import ADMIN, MEMBER, SLACK_SIGNING_SECRET, Live
from tests.fakes.slack import Channel
from tests.test_delivery import ACCOUNTING, PRIVATE, Desk, desk, eventually, slack_event  # noqa: F401 - fixture

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)


def action(live: Live, action_id: str, value: str, user: str = ADMIN) -> httpx.Response:
    """A signed block_actions request from the App Home, as Slack sends it."""
    payload = {
        "type": "block_actions",
        "team": {"id": "T0001"},
        "user": {"id": user, "team_id": "T0001"},
        "api_app_id": "A0001",
        "container": {"type": "view", "view_id": f"V{user}"},
        "trigger_id": "1.2.3",
        "view": {"id": f"V{user}", "type": "home"},
        "actions": [{"type": "button", "action_id": action_id, "value": value, "block_id": "b",
                     "action_ts": f"{time.time():.6f}"}],
    }  # fmt: skip
    body = urllib.parse.urlencode({"payload": json.dumps(payload)})
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(SLACK_SIGNING_SECRET).generate_signature(timestamp=timestamp, body=body)
    return httpx.post(
        f"{live.url}/slack/events",
        content=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": signature,
        },
        timeout=10,
    )


def home_text(live: Live, user: str = ADMIN) -> str:
    return json.dumps(live.slack.home_views.get(user, {}))


def test_home_is_published_when_opened_and_buttons_work(desk: Desk) -> None:  # noqa: F811 - the fixture
    live = desk.live
    live.slack.add_channel(Channel(PRIVATE, name="board", is_private=True, is_member=False))
    assert live.slash(f"route invoice <#{ACCOUNTING}|accounting>").json()["text"].startswith("Rule saved")
    (parked,) = desk.queue(PRIVATE)
    desk.drain()
    assert desk.states([parked]) == [DeliveryState.PARKED]

    slack_event(live, {"type": "app_home_opened", "user": ADMIN, "channel": "D0ADMIN", "tab": "home"})
    eventually(lambda: ADMIN in live.slack.home_views, "home published")
    text = home_text(live)
    assert "Acme Bookkeeping" in text
    assert "invoice" in text and ACCOUNTING in text
    assert "Needs attention" in text and "not_in_channel" in text
    assert '"action_id": "home_replay"' in text

    assert action(live, "home_rule_pause", "1").status_code == 200
    eventually(lambda: "(paused)" in home_text(live), "rule paused and home republished")
    action(live, "home_rule_resume", "1")
    eventually(lambda: "(paused)" not in home_text(live), "rule resumed")

    live.slack.channels[PRIVATE].is_member = True  # the admin invited the app, then pressed Replay
    action(live, "home_replay", str(parked))
    eventually(lambda: desk.states([parked]) == [DeliveryState.PENDING], "replayed")
    desk.drain()
    assert desk.states([parked]) == [DeliveryState.DELIVERED]

    action(live, "home_rule_delete", "1", user=MEMBER)
    eventually(lambda: bool(live.slack.ephemerals), "member told")
    assert "Only workspace admins" in live.slack.ephemerals[-1]["text"]
    assert "home_rule_delete" in home_text(live)  # still there
    action(live, "home_rule_delete", "1")
    eventually(lambda: "home_rule_delete" not in home_text(live), "rule deleted")


def rule(n: int) -> Rule:
    return Rule(id=n, patterns=("invoice",), channel_id=f"C{n:04d}")


def line(n: int, state: str = "delivered") -> DeliveryLine:
    return DeliveryLine(delivery_id=n, event_name="invoice.create", channel_id="C1", state=state, at=NOW,
                        reason=None if state == "delivered" else "is_archived")  # fmt: skip


def test_home_stays_within_slacks_block_limit() -> None:
    data = HomeData(
        connections=[],
        rules=[rule(n) for n in range(1, 80)],
        recent=[line(n) for n in range(10)],
        attention=[line(n, "parked") for n in range(10)],
        alerts=["is_archived:C1", "token_revoked"],
    )
    view: dict[str, Any] = build_home(data, NOW)
    assert view["type"] == "home"
    assert len(view["blocks"]) <= MAX_BLOCKS
    assert "and 59 more" in json.dumps(view)
    from slack_sdk.models.views import View

    View(**view).validate_json()  # slack_sdk's own limits


def test_an_empty_home_says_what_to_do() -> None:
    text = json.dumps(build_home(HomeData([], [], [], [], []), NOW))
    assert "/freshbooks connect" in text
    assert "No rules yet" in text
    assert "Nothing parked or failed" in text
