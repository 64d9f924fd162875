"""Quiet hours per channel (issue 15 §3): set with /freshbooks quiet or the App Home's form (tested in
tests/features/rules/test_quiet_modal.py) in the admin's Slack time zone;
what is routed to the channel in them waits and goes out as one summary when they end; an urgent
rule posts at once. Real HTTP against the fake Slack; time is the injected clock."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from storage import events
from storage.models import Delivery, DeliveryState
from tests.support.desk import ACCOUNTING, SALES, Desk, eventually, invoice, slack_event
from tests.support.live import ADMIN, MEMBER
from tests.support.slack_interactivity import home_action, state_of, submit

pytestmark = pytest.mark.date_sensitive

NEW_YORK = ZoneInfo("America/New_York")


def record(desk: Desk, object_id: int, amount: str = "7500.00") -> None:
    """An invoice.create as enrichment records it, not yet routed (the router holds or queues it)."""
    obj = {**invoice(object_id), "amount": {"amount": amount, "code": "USD"}}
    with desk.live.services.db.session() as session:
        events.record_event(
            session,
            desk.live.services.cipher,
            connection_id=desk.connection_id,
            inbox_id=None,
            object_kind="invoice",
            name="invoice.create",
            object_id=str(object_id),
            object_updated=str(obj["updated"]),
            obj=obj,
            now=desk.live.clock(),
        )


def route_and_post(desk: Desk) -> None:
    while desk.live.services.router.run_once():
        pass
    desk.drain()


def at_local(desk: Desk, day: dt.date, hour: int, minute: int = 0) -> None:
    """Move the clock (forward only) to that wall-clock time in New York."""
    moment = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=NEW_YORK).astimezone(dt.UTC)
    assert moment >= desk.live.clock()
    desk.live.clock.now = moment


def next_evening(desk: Desk) -> dt.date:
    """A day whose 22:00 in New York is still ahead of the clock."""
    return desk.live.clock().astimezone(NEW_YORK).date() + dt.timedelta(days=1)


def top_level(desk: Desk, channel: str = ACCOUNTING) -> list[dict[str, Any]]:
    return [m for m in desk.slack.channels[channel].messages if m.get("thread_ts") in (None, m["ts"])]


@pytest.fixture
def quiet_desk(desk: Desk) -> Desk:
    desk.slack.users[ADMIN]["tz"] = "America/New_York"  # users.info, as Slack answers it
    desk.slack.enforce_channel_rate = True
    for text in (
        f"route invoice.create <#{ACCOUNTING}|accounting>",
        f"route invoice.create <#{ACCOUNTING}|accounting> min 50,000 urgent",
        f"route invoice.create <#{SALES}|sales>",
    ):
        assert desk.live.slash(text).json()["text"].startswith("Rule saved")
    answer = desk.live.slash(f"quiet <#{ACCOUNTING}|accounting> 19:00-08:00")
    assert "19:00-08:00 (America/New_York)" in answer.json()["text"]
    return desk


def test_messages_in_quiet_hours_wait_and_go_out_as_one_summary_when_they_end(quiet_desk: Desk) -> None:
    desk = quiet_desk
    evening = next_evening(desk)
    at_local(desk, evening, 22, 30)  # across midnight: quiet till 08:00 the next morning
    for object_id in (5001, 5002, 5003):
        record(desk, object_id)
    route_and_post(desk)

    assert desk.slack.channels[ACCOUNTING].messages == []
    assert len(top_level(desk, SALES)) == 3  # no quiet hours there: posted at once, one by one (3 < 5)
    at_local(desk, evening + dt.timedelta(days=1), 7, 59)
    desk.drain()
    assert desk.slack.channels[ACCOUNTING].messages == []
    at_local(desk, evening + dt.timedelta(days=1), 8, 0)
    desk.drain()

    [summary] = top_level(desk)
    assert summary["text"].startswith("3 invoices created · 22,500.00 USD: ")
    assert desk.slack.rate_limited == []


def test_an_urgent_rule_posts_at_once_in_quiet_hours(quiet_desk: Desk) -> None:
    desk = quiet_desk
    at_local(desk, next_evening(desk), 23, 0)
    record(desk, 5101, amount="75000.00")
    record(desk, 5102)
    route_and_post(desk)

    [urgent] = desk.slack.channels[ACCOUNTING].messages
    assert urgent["text"].startswith("Invoice ACM5101 created")
    with desk.live.services.db.read() as session:
        held = (
            session.query(Delivery)
            .filter(Delivery.channel_id == ACCOUNTING, Delivery.state == "pending")
            .one()
        )
    local_release = held.next_attempt_at.astimezone(NEW_YORK)
    assert (local_release.hour, local_release.minute) == (8, 0)


def test_quiet_hours_across_a_daylight_saving_change_end_at_local_morning(quiet_desk: Desk) -> None:
    desk = quiet_desk
    day = next_evening(desk)
    while NEW_YORK.utcoffset(dt.datetime(day.year, day.month, day.day, 12)) == NEW_YORK.utcoffset(
        dt.datetime((d := day + dt.timedelta(days=1)).year, d.month, d.day, 12)
    ):
        day += dt.timedelta(days=1)  # the evening before the next change (at most about 8 months on)
    at_local(desk, day, 22, 0)
    record(desk, 5201)
    route_and_post(desk)

    with desk.live.services.db.read() as session:
        [held] = session.query(Delivery).filter(Delivery.channel_id == ACCOUNTING).all()
    assert held.state == DeliveryState.PENDING
    assert held.next_attempt_at == dt.datetime.combine(
        day + dt.timedelta(days=1), dt.time(8, 0), tzinfo=NEW_YORK
    ).astimezone(dt.UTC)
    desk.live.clock.now = held.next_attempt_at
    desk.drain()
    assert len(desk.slack.channels[ACCOUNTING].messages) == 1


def test_quiet_hours_are_listed_turned_off_and_kept_for_admins(quiet_desk: Desk) -> None:
    desk = quiet_desk
    at_local(desk, next_evening(desk), 21, 0)
    record(desk, 5301)
    route_and_post(desk)
    assert desk.slack.channels[ACCOUNTING].messages == []

    listed = desk.live.slash("quiet").json()["text"]
    rules = desk.live.slash("rules").json()["text"]
    refused = desk.live.slash(f"quiet <#{SALES}|sales> 18:00-09:00", user_id=MEMBER).json()["text"]
    bad = desk.live.slash(f"quiet <#{SALES}|sales> 6pm-9am").json()["text"]
    off = desk.live.slash(f"quiet <#{ACCOUNTING}|accounting> off").json()["text"]
    desk.drain()

    assert f"<#{ACCOUNTING}> 19:00-08:00 (America/New_York)" in listed
    assert "*Quiet hours*" in rules and "urgent" in rules
    assert "quiet hours" in refused and "admin" in refused.lower()
    assert "not a time range" in bad
    assert "off" in off
    assert len(desk.slack.channels[ACCOUNTING].messages) == 1  # what was held went out at once
    assert "No quiet hours" in desk.live.slash("quiet").json()["text"]


def test_the_app_home_shows_the_quiet_hours_and_turns_them_off(quiet_desk: Desk) -> None:
    live = quiet_desk.live
    at_local(quiet_desk, next_evening(quiet_desk), 21, 0)
    record(quiet_desk, 5401)
    route_and_post(quiet_desk)
    slack_event(live, {"type": "app_home_opened", "user": ADMIN, "channel": f"D{ADMIN}", "tab": "home"})
    eventually(lambda: ADMIN in live.slack.home_views, "home published")
    blocks = live.slack.home_views.pop(ADMIN)["blocks"]

    [line] = [
        b
        for b in blocks
        if f"<#{ACCOUNTING}> 19:00-08:00 (America/New_York)" in b.get("text", {}).get("text", "")
    ]
    assert line["accessory"]["action_id"] == "home_quiet_off"
    assert "/freshbooks quiet" in json.dumps(blocks)
    assert quiet_desk.slack.channels[ACCOUNTING].messages == []
    assert home_action(live, "home_quiet_off", ACCOUNTING, user=MEMBER).status_code == 200  # refused
    assert home_action(live, "home_quiet_off", ACCOUNTING).status_code == 200
    eventually(lambda: ADMIN in live.slack.home_views, "home republished")
    quiet_desk.drain()

    assert "No quiet hours" in live.slash("quiet").json()["text"]
    assert len(quiet_desk.slack.channels[ACCOUNTING].messages) == 1  # what was held went out


def test_quiet_hours_set_in_the_app_home_hold_messages_as_the_commands_do(desk: Desk) -> None:
    live = desk.live
    live.slack.users[ADMIN]["tz"] = "America/New_York"
    assert live.slash(f"route invoice.create <#{SALES}|sales>").json()["text"].startswith("Rule saved")
    assert home_action(live, "home_quiet_set", "set").status_code == 200
    eventually(lambda: bool(live.slack.opened_modals), "quiet-hours form opened")
    view_id = live.slack.opened_modals[-1]
    values = state_of(live.slack.modals[view_id], channel=SALES, start="20:00", end="07:30")
    assert submit(live, view_id, values).json()["response_action"] == "update"

    evening = next_evening(desk)
    at_local(desk, evening, 19, 59)
    record(desk, 5501)
    route_and_post(desk)
    assert len(top_level(desk, SALES)) == 1  # before they start: posted at once
    at_local(desk, evening, 20, 0)
    record(desk, 5502)
    record(desk, 5503)
    route_and_post(desk)
    assert len(top_level(desk, SALES)) == 1
    at_local(desk, evening + dt.timedelta(days=1), 7, 30)
    desk.drain()

    assert len(top_level(desk, SALES)) == 2  # the two held ones, as one summary at 07:30 New York time
    assert top_level(desk, SALES)[-1]["text"].startswith("2 invoices created")
