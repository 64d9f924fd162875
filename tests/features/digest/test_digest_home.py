"""The App Home's Digests section over real HTTP: listed, added through its form, previewed in a
modal (computed now, nothing posted), removed; members see the list and none of the controls."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from slack_sdk.models.views import View
from sqlalchemy import select

from slack_ui.digest_home import (
    CADENCE_BLOCK,
    CHANNEL_BLOCK,
    DAY_BLOCK,
    HOME_DIGESTS,
    TIME_BLOCK,
    home_section,
    new_digest_modal,
)
from slack_ui.home import MAX_BLOCKS
from storage.models import DigestSchedule
from tests.support.books import random_books
from tests.support.desk import eventually, slack_event
from tests.support.fakes.slack import Channel
from tests.support.live import ADMIN, FB_ACCOUNT, MEMBER, Live
from tests.support.slack_interactivity import home_action, submit, texts


def open_home(live: Live, user: str = ADMIN) -> str:
    live.slack.home_views.pop(user, None)
    slack_event(live, {"type": "app_home_opened", "user": user, "channel": f"D{user}", "tab": "home"})
    eventually(lambda: user in live.slack.home_views, "home published")
    return texts(live.slack.home_views[user])


def ready(live: Live) -> Channel:
    channel = live.slack.add_channel(Channel("C0FIN", name="finance"))
    live.slack.users[ADMIN]["tz"] = "Europe/Paris"
    live.connect()
    return channel


def schedules(live: Live) -> list[DigestSchedule]:
    with live.services.db.read() as session:
        return list(session.scalars(select(DigestSchedule)))


def form(channel: str | None, cadence: str, day: str | None, time: str | None) -> dict[str, Any]:
    """view.state.values as Slack sends them for the New digest form."""
    return {
        CHANNEL_BLOCK: {"channel": {"type": "conversations_select", "selected_conversation": channel}},
        CADENCE_BLOCK: {"cadence": {"type": "static_select", "selected_option": {"value": cadence}}},
        DAY_BLOCK: {"day": {"type": "static_select", "selected_option": {"value": day} if day else None}},
        TIME_BLOCK: {"time": {"type": "timepicker", "selected_time": time}},
    }


def test_the_section_lists_adds_and_removes_digests(live: Live) -> None:
    ready(live)
    assert live.slash("digest <#C0FIN|finance> daily at 07:15").json()["text"].startswith("Digest scheduled")
    home = open_home(live)
    assert "Cash-flow digests" in home and "`#1` <#C0FIN> daily at 07:15 (Europe/Paris)" in home
    assert '"action_id": "home_digest_new"' in home and '"action_id": "home_digest_remove"' in home

    home_action(live, "home_digest_new", "new")
    eventually(lambda: bool(live.slack.opened_modals), "form opened")
    view_id = live.slack.opened_modals[-1]
    assert live.slack.modals[view_id]["callback_id"] == "digest_new"
    refused = submit(live, view_id, form(None, "weekly", "4", "17:30")).json()
    assert refused == {"response_action": "errors", "errors": {CHANNEL_BLOCK: "Pick a channel."}}
    answer = submit(live, view_id, form("C0FIN", "weekly", "4", "17:30")).json()
    assert answer["response_action"] == "update"
    assert "`#2` <#C0FIN> weekly on Friday at 17:30 (Europe/Paris)" in texts(answer["view"])
    assert [(s.cadence, s.weekday, s.local_time, s.zone) for s in schedules(live)] == [
        ("daily", None, "07:15", "Europe/Paris"),
        ("weekly", 4, "17:30", "Europe/Paris"),
    ]
    eventually(lambda: "`#2` <#C0FIN> weekly on Friday" in texts(live.slack.home_views[ADMIN]), "home again")

    home_action(live, "home_digest_remove", "1")
    eventually(lambda: "`#1`" not in texts(live.slack.home_views[ADMIN]), "removed and home again")
    assert [s.id for s in schedules(live)] == [2]


@pytest.mark.date_sensitive
def test_preview_shows_the_digest_computed_now_in_a_modal_and_posts_nothing(live: Live) -> None:
    finance = ready(live)
    today = live.clock().astimezone(ZoneInfo("Europe/Paris")).date()
    random_books(9, today=today, invoices=30, payments=30, bills=5, expenses=10).load_into(
        live.fake, FB_ACCOUNT
    )
    home_action(live, "home_digest_preview", "weekly")

    def previewed() -> bool:
        return bool(live.slack.opened_modals) and "cash-flow digest" in texts(
            live.slack.modals[live.slack.opened_modals[-1]]
        )

    eventually(previewed, "preview filled in")
    view = live.slack.modals[live.slack.opened_modals[-1]]
    monday = today - dt.timedelta(days=today.weekday())
    last = monday - dt.timedelta(days=1)
    header = next(b for b in view["blocks"] if b["type"] == "header")["text"]["text"]
    assert header.startswith("Weekly cash-flow digest") and f"{last:%b} {last.day}, {last.year}" in header
    assert "nothing was posted" in texts(view)
    assert finance.messages == [] and live.slack.calls_to("chat.postMessage") == []


def test_preview_says_why_when_freshbooks_cannot_be_read(live: Live) -> None:
    from tests.support.fakes.freshbooks import Scripted

    ready(live)
    down = Scripted(503, {"message": "down"}, {"Retry-After": "0"})
    live.fake.script("GET", f"/accounting/account/{FB_ACCOUNT}/invoices/invoices", down, down, down, down)
    home_action(live, "home_digest_preview", "daily")
    eventually(
        lambda: (
            bool(live.slack.opened_modals)
            and "FreshBooks is not answering" in texts(live.slack.modals[live.slack.opened_modals[-1]])
        ),
        "the reason shown",
    )


def test_members_see_the_list_but_no_controls_and_cannot_preview(live: Live) -> None:
    ready(live)
    live.slash("digest <#C0FIN|finance> daily")
    home = open_home(live, MEMBER)
    assert "`#1` <#C0FIN> daily at 08:00" in home
    assert (
        "home_digest_new" not in home
        and "home_digest_remove" not in home
        and "home_digest_preview" not in home
    )
    home_action(live, "home_digest_preview", "daily", user=MEMBER)
    eventually(lambda: bool(live.slack.opened_modals), "refusal shown")
    assert "Only workspace admins" in texts(live.slack.modals[live.slack.opened_modals[-1]])
    home_action(live, "home_digest_remove", "1", user=MEMBER)
    eventually(lambda: len(live.slack.opened_modals) == 2, "refusal shown")
    assert len(schedules(live)) == 1


def test_the_section_stays_small_however_many_digests() -> None:
    from connector.features.digest.period import Cadence
    from connector.features.digest.schedule import Timing
    from connector.features.digest.service import ScheduleLine
    from storage.digests import Schedule
    from tests.support.live import clock_start

    timing = Timing(Cadence.DAILY, dt.time(8), ZoneInfo("UTC"))
    lines = [
        ScheduleLine(
            Schedule(
                n, 1, "T1", 1, "A", "active", "C1", "daily", None, "08:00", "UTC", None, clock_start(), None
            ),
            timing,
            clock_start(),
            None,
        )
        for n in range(1, 31)
    ]
    blocks = home_section(lines, can_manage=True)
    assert len(blocks) == HOME_DIGESTS + 3
    assert "20 more" in json.dumps(blocks[-1])
    # The rest of the Home stays within 70 blocks (tests/features/home/test_app_home.py): with this
    # section and its divider, still below Slack's 100.
    assert 70 + len(blocks) + 1 <= MAX_BLOCKS
    View(type="home", blocks=blocks).validate_json()  # slack_sdk's own limits
    View(**new_digest_modal()).validate_json()
