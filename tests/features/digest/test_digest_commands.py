"""/freshbooks digest, digests, undigest and digest now, through signed slash commands over real HTTP."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from storage.models import AuditEntry, DigestSchedule
from tests.support.books import random_books
from tests.support.fakes.slack import Channel
from tests.support.live import ADMIN, FB_ACCOUNT, MEMBER, Live

NEW_YORK = "America/New_York"


def say(live: Live, text: str, **kwargs: str) -> str:
    response = live.slash(text, **kwargs)
    assert response.status_code == 200
    payload = response.json()
    assert payload["response_type"] == "ephemeral"
    return str(payload["text"])


def ready(live: Live, zone: str | None = NEW_YORK) -> Channel:
    channel = live.slack.add_channel(Channel("C0FIN", name="finance"))
    if zone is not None:
        live.slack.users[ADMIN]["tz"] = zone
    live.connect()
    return channel


def schedules(live: Live) -> list[DigestSchedule]:
    with live.services.db.read() as session:
        return list(session.scalars(select(DigestSchedule)))


def test_schedule_list_and_remove(live: Live) -> None:
    ready(live)
    saved = say(live, "digest <#C0FIN|finance> weekly friday at 17:30")
    assert saved.startswith(
        "Digest scheduled: `#1` <#C0FIN> weekly on Friday at 17:30 (America/New_York), next Fri"
    )
    (row,) = schedules(live)
    assert (row.cadence, row.weekday, row.local_time, row.zone, row.created_by) == (
        "weekly",
        4,
        "17:30",
        NEW_YORK,
        ADMIN,
    )
    assert "daily at 08:00 (America/New_York)" in say(live, "digest <#C0FIN|finance> daily")
    listing = say(live, "digests", user_id=MEMBER)  # anyone may read them
    assert "`#1` <#C0FIN> weekly on Friday at 17:30" in listing and "`#2` <#C0FIN> daily at 08:00" in listing
    assert say(live, "undigest 1") == "Digest #1 removed."
    assert say(live, "undigest #1") == "There is no digest #1 in this workspace."
    assert [s.id for s in schedules(live)] == [2]
    assert say(live, "undigest 2") == "Digest #2 removed."
    assert "No digests yet" in say(live, "digests")


@pytest.mark.date_sensitive
def test_the_next_digest_is_said_in_the_admins_zone(live: Live) -> None:
    ready(live, zone="Asia/Kolkata")
    answer = say(live, "digest <#C0FIN|finance> daily at 7:05")
    now = live.clock().astimezone(ZoneInfo("Asia/Kolkata"))
    first = now.date() + dt.timedelta(days=0 if now.time() < dt.time(7, 5) else 1)
    assert f"daily at 07:05 (Asia/Kolkata), next {first:%a %b} {first.day} 07:05" in answer


def test_without_a_slack_time_zone_the_time_is_utc_and_said_so(live: Live) -> None:
    ready(live, zone=None)
    answer = say(live, "digest <#C0FIN|finance> daily")
    assert "(UTC)" in answer and "Slack has no time zone for you" in answer


def test_bad_input_gets_a_helpful_answer_and_saves_nothing(live: Live) -> None:
    ready(live)
    cases = {
        "digest": "Which channel",
        "digest #finance daily": "not a linked channel",
        "digest <@U1> daily": "a person, not a channel",
        "digest <#C0FIN|finance>": "`daily` or `weekly`",
        "digest <#C0FIN|finance> dialy": "Did you mean `daily`?",
        "digest <#C0FIN|finance> daily monday": "say `weekly monday`",
        "digest <#C0FIN|finance> weekly monday friday": "Name one day",
        "digest <#C0FIN|finance> weekly at": "needs a time",
        "digest <#C0FIN|finance> daily at 25:00": "24-hour clock",
        "digest <#C0FIN|finance> daily at 8pm": "24-hour clock",
        "digest <#C0FIN|finance> weekly fridya": "Did you mean `friday`?",
        "digest <#C0FIN|finance> daily at 08:00 09:00": "one time",
        "digest now <#C0FIN|a> <#C0FIN|b>": "one channel at most",
        "undigest banana": "Usage",
        "undigest ²": "Did you mean `2`?",
    }
    for text, hint in cases.items():
        answer = say(live, text)
        assert hint.lower() in answer.lower(), (text, answer)
        assert not answer.startswith("Digest scheduled")
    assert schedules(live) == []


def test_channels_are_checked_as_routes_check_them(live: Live) -> None:
    ready(live)
    live.slack.add_channel(Channel("G0PRIV", is_private=True, is_member=False))
    live.slack.add_channel(Channel("C0ARCH", is_archived=True))
    public = live.slack.add_channel(Channel("C0PUB", is_member=False))
    assert "invite me first" in say(live, "digest <#G0PRIV|secret> daily")
    assert "archived" in say(live, "digest <#C0ARCH|old> daily")
    assert "can't see that channel" in say(live, "digest <#C0GONE|gone> daily")
    assert schedules(live) == []
    assert "I joined the channel" in say(live, "digest <#C0PUB|pub> daily")
    assert public.is_member


def test_members_cannot_schedule_and_a_connection_is_needed(live: Live) -> None:
    live.slack.add_channel(Channel("C0FIN", name="finance"))
    assert "Connect FreshBooks first" in say(live, "digest <#C0FIN|finance> daily")
    live.connect()
    assert "Only workspace admins" in say(live, "digest <#C0FIN|finance> daily", user_id=MEMBER)
    assert "Only workspace admins" in say(live, "undigest 1", user_id=MEMBER)
    assert "Only workspace admins" in say(live, "digest now", user_id=MEMBER)
    assert schedules(live) == []


@pytest.mark.date_sensitive
def test_digest_now_posts_at_once_with_its_key_and_is_audited(live: Live) -> None:
    finance = ready(live)
    today = live.clock().astimezone(ZoneInfo(NEW_YORK)).date()
    random_books(11, today=today, invoices=40, payments=40, bills=10, expenses=20).load_into(
        live.fake, FB_ACCOUNT
    )
    assert say(live, "digest now <#C0FIN|finance>") == "Posted the daily digest to <#C0FIN>."
    (message,) = [m for m in finance.messages if not m.get("upload")]  # its chart follows it
    yesterday = today - dt.timedelta(days=1)
    assert (
        message["blocks"][0]["text"]["text"]
        == f"Daily cash-flow digest: {yesterday:%b} {yesterday.day}, {yesterday.year}"
    )
    assert set(message["metadata"]["event_payload"]) == {"delivery_key"}
    # Typed in the channel itself, `digest now` posts there.
    live.slack.add_channel(Channel("C0GENERAL", name="general"))
    assert say(live, "digest now") == "Posted the daily digest to <#C0GENERAL>."
    with live.services.db.read() as session:
        entries = list(session.scalars(select(AuditEntry).where(AuditEntry.kind == "digest")))
    assert [(e.outcome, e.actor) for e in entries] == [("posted_now", ADMIN), ("posted_now", ADMIN)]


def test_members_see_no_digest_of_a_private_channel_they_are_not_in(live: Live) -> None:
    ready(live)
    live.slack.add_channel(Channel("G0BOARD", name="board", is_private=True, members={ADMIN}))
    assert say(live, "digest <#G0BOARD|board> weekly").startswith("Digest scheduled")
    assert say(live, "digest <#C0FIN|finance> daily").startswith("Digest scheduled")
    mine = say(live, "digests", user_id=MEMBER)
    assert "<#C0FIN>" in mine and "G0BOARD" not in mine and "shown to the people in them" in mine
    assert "<#G0BOARD>" in say(live, "digests")


def test_fbslack_audit_digest_prints_the_same_trail(live: Live, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from connector.features.audit.cli import cmd_audit

    ready(live)
    say(live, "digest <#C0FIN|finance> daily")
    say(live, "undigest 1")
    assert cmd_audit(argparse.Namespace(query=["digest"], team=None, limit=25), live.settings) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("  ", 1)[1] for line in lines] == [
        f"digest:1 removed by {ADMIN}",
        f"digest:1 scheduled C0FIN by {ADMIN}",
    ]


def test_digest_now_says_what_slack_answered(live: Live) -> None:
    from tests.support.fakes.slack import STORE_THEN_DROP

    finance = ready(live)
    live.slack.script("chat.postMessage", "is_archived")
    assert say(live, "digest now <#C0FIN|finance>") == "Slack refused the digest (`is_archived`)."
    live.slack.script("chat.postMessage", STORE_THEN_DROP)  # posted, but the answer never came
    answer = say(live, "digest now <#C0FIN|finance>")
    assert answer.startswith("Slack did not answer (`connection_dropped`): the digest may be in <#C0FIN>")
    assert len([m for m in finance.messages if not m.get("upload")]) == 1
