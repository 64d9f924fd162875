"""/freshbooks route, rules and unroute, through signed slash commands over real HTTP."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from storage.models import Delivery, RoutingRule
from tests.support.fakes.freshbooks import FakeFreshBooks
from tests.support.fakes.slack import Channel
from tests.support.live import ADMIN, MEMBER, SLACK_BOT_TOKEN, Live, serve_live


def say(live: Live, text: str, **kwargs: str) -> str:
    response = live.slash(text, **kwargs)
    assert response.status_code == 200
    payload = response.json()
    assert payload["response_type"] == "ephemeral"
    return str(payload["text"])


def rule_count(live: Live) -> int:
    with live.services.db.read() as session:
        return session.scalar(select(func.count()).select_from(RoutingRule)) or 0


def test_route_rules_unroute(live: Live) -> None:
    live.slack.add_channel(Channel("C0123", name="exec-alerts"))
    live.connect()

    saved = say(live, "route invoice.create <#C0123|exec-alerts> min 5,000 currency usd")
    assert saved.startswith("Rule saved: `#1` `invoice.create` → <#C0123> min 5,000")
    assert "currency USD" in saved
    listing = say(live, "rules")
    assert "`#1` `invoice.create` → <#C0123> min 5,000 currency USD" in listing

    assert say(live, "unroute 1") == "Rule #1 removed."
    assert say(live, "unroute #1") == "There is no rule #1 in this workspace."
    assert "No rules yet" in say(live, "rules")


def test_route_errors_are_helpful_and_save_nothing(live: Live) -> None:
    live.slack.add_channel(Channel("C0123"))
    live.connect()
    cases = {
        "route invoice.create <#C0123|x> min 5,00": "amount",
        "route invoice.crate <#C0123|x>": "invoice.create",  # suggests the close name
        "route invoice.create #exec": "#",
        "route invoice.create <#C0123|x> min 10 max 5": "min",
        "route invoice <#C0123|x> billable": "billable",
        "route invoice": "channel",
    }
    for text, hint in cases.items():
        answer = say(live, text)
        assert hint.lower() in answer.lower(), (text, answer)
        assert not answer.startswith("Rule saved")
    assert "Usage" in say(live, "unroute banana")
    assert rule_count(live) == 0


def test_a_channel_the_bot_cannot_post_in_is_refused(live: Live) -> None:
    live.slack.add_channel(Channel("G0PRIV", is_private=True, is_member=False))
    live.slack.add_channel(Channel("C0ARCH", is_archived=True))
    live.connect()
    assert "invite me first" in say(live, "route bill <#G0PRIV|secret>")
    assert "archived" in say(live, "route bill <#C0ARCH|old>")
    assert "can't see that channel" in say(live, "route bill <#C0GONE|gone>")
    assert rule_count(live) == 0


def test_a_public_channel_is_joined_when_the_rule_is_saved(live: Live) -> None:
    channel = live.slack.add_channel(Channel("C0PUB", is_member=False))
    live.connect()
    assert "I joined the channel" in say(live, "route payment <#C0PUB|payments>")
    assert channel.is_member


def test_members_cannot_change_rules_but_can_read_them(live: Live) -> None:
    live.slack.add_channel(Channel("C0123"))
    live.connect()
    assert "Only workspace admins" in say(live, "route invoice <#C0123|x>", user_id=MEMBER)
    assert "Only workspace admins" in say(live, "unroute 1", user_id=MEMBER)
    assert "No rules yet" in say(live, "rules", user_id=MEMBER)


def test_routing_needs_a_connection(live: Live) -> None:
    live.slack.add_channel(Channel("C0123"))
    assert "Connect FreshBooks first" in say(live, "route invoice <#C0123|x>")


def test_an_event_is_queued_once_per_channel_however_many_rules_match(live: Live) -> None:
    from tests.support.builders import invoice_json
    from tests.support.live import FB_ACCOUNT

    live.slack.add_channel(Channel("C0123"))
    live.connect_and_register("invoice.create")
    say(live, "route invoice <#C0123|x>")
    say(live, "route invoice.create <#C0123|x> min 100")
    live.fake.add_object(FB_ACCOUNT, "invoices", invoice_json("7500.00", "2026-11-24 09:00:00"))
    live.fake.deliver(FB_ACCOUNT, "invoice.create", "987654")
    live.services.inbox_worker.run_once()
    assert live.services.router.run_once() == 1
    assert live.services.router.run_once() == 0
    with live.services.db.read() as session:
        (delivery,) = session.scalars(select(Delivery)).all()
    assert delivery.rule_ids == [1, 2]


def test_anyone_can_post_a_sample_message(live: Live) -> None:
    general = live.slack.add_channel(Channel("C0GENERAL", name="general"))
    other = live.slack.add_channel(Channel("C0OTHER", name="other", is_member=False))
    live.slack.add_channel(Channel("G0PRIV", is_private=True, is_member=False))

    assert "Posted a sample message" in say(live, "test", user_id=MEMBER)
    live.clock.advance(seconds=30)  # one sample per person every 30 seconds
    # A member's sample goes only where the app already is: joining a channel is an admin's act.
    assert "An admin can add me" in say(live, "test <#C0OTHER|other>", user_id=MEMBER)
    assert not other.is_member and live.slack.calls_to("conversations.join") == []
    assert "Posted a sample message" in say(live, "test <#C0OTHER|other>", user_id=ADMIN)
    assert other.is_member
    live.clock.advance(seconds=30)
    assert "private channel you are not in" in say(live, "test <#G0PRIV|secret>", user_id=MEMBER)
    live.clock.advance(seconds=30)
    assert "invite me first" in say(live, "test <#G0PRIV|secret>", user_id=ADMIN)
    assert "Usage" in say(live, "test #nope", user_id=MEMBER)
    for channel in (general, other):
        (sample,) = channel.messages
        assert sample["text"].startswith("(Sample) Invoice SAMPLE-0042 created")
        assert "made-up data" in str(sample["blocks"])
        assert "metadata" not in sample


def test_numbers_in_other_digits_or_too_large_get_a_helpful_answer(live: Live) -> None:
    live.slack.add_channel(Channel("C0123"))
    live.connect()
    cases = {
        "unroute ²": "Did you mean `2`?",
        "unroute ٣": "Did you mean `3`?",
        "unroute #\uff11\uff12": "Did you mean `12`?",
        "unroute 1234567890123456789012345": "too large to be a rule number",
        "replay D99999999999999999999999": "too large to be a delivery id",
        "replay D٣": "Did you mean `3`?",
        "audit D99999999999999999999": "too large to be a delivery id",
        "route invoice <#C0123|x> min \u0661\u0660\u0660": "with the digits 0-9, like `100`",
        "route invoice <#C0123|x> max 1234567890123456789012345678901234567890": "too large",
        "route invoice <#C0123|x> min 1,234,567,890,123,456": "too large",
    }
    for text, hint in cases.items():
        answer = say(live, text)
        assert hint in answer, (text, answer)
    assert rule_count(live) == 0
    # The largest amount and id still work.
    assert say(live, "route invoice <#C0123|x> min 999,999,999,999,999.99").startswith("Rule saved")
    largest = "9" * 18
    assert say(live, f"unroute {largest}") == f"There is no rule #{largest} in this workspace."


def test_samples_are_limited_per_person_in_every_process(
    live: Live,
    database_url: str,
    encryption_key: str,
    fake_freshbooks: FakeFreshBooks,
    tmp_path: Path,
) -> None:
    general = live.slack.add_channel(Channel("C0GENERAL", name="general"))
    assert "Posted a sample message" in say(live, "test", user_id=MEMBER)
    refused = say(live, "test", user_id=MEMBER)
    assert refused.startswith("You posted a sample message a moment ago; you can post another in 30 seconds.")
    assert "Posted a sample message" in say(live, "test", user_id=ADMIN)  # the limit is per person
    # A second server process on the same database (another web worker, another host) knows it too.
    with serve_live(
        database_url=database_url,
        encryption_key=encryption_key,
        fake_freshbooks=fake_freshbooks,
        slack=live.slack,
        clock=live.clock,
        tmp_path=tmp_path,
        SLACK_BOT_TOKEN=SLACK_BOT_TOKEN,
    ) as other:
        live.clock.advance(seconds=21)
        assert "you can post another in 9 seconds" in say(other, "test", user_id=MEMBER)
        live.clock.advance(seconds=9)
        assert "Posted a sample message" in say(other, "test", user_id=MEMBER)
        assert "you can post another in 30 seconds" in say(live, "test", user_id=MEMBER)
    assert len(general.messages) == 3
    assert len(live.slack.calls_to("chat.postMessage")) == 3


def test_members_see_no_rule_of_a_private_channel_they_are_not_in(live: Live) -> None:
    live.slack.add_channel(Channel("C0PUB", name="public"))
    board = live.slack.add_channel(Channel("G0BOARD", name="board", is_private=True, members={ADMIN}))
    live.slack.add_channel(Channel("G0MINE", name="mine", is_private=True, members={MEMBER}))
    left = live.slack.add_channel(Channel("G0LEFT", name="left", is_private=True, members={MEMBER}))
    live.connect()
    for text in (
        "route invoice <#C0PUB|public>",
        'route invoice <#G0BOARD|board> min 250,000 client "Wayne Enterprises"',
        "route bill <#G0MINE|mine> max 75",
        "route payment <#G0LEFT|left> min 31,337",
    ):
        assert say(live, text).startswith("Rule saved"), text
    left.is_member = False  # the app was removed from it: nobody can tell a member who is in it now
    secrets = ("G0BOARD", "250,000", "Wayne", "G0LEFT", "31,337")

    member_view = say(live, "rules", user_id=MEMBER)
    assert "→ <#C0PUB>" in member_view and "→ <#G0MINE> max 75" in member_view
    assert [s for s in secrets if s in member_view] == []
    assert "shown to the people in them" in member_view
    admin_view = say(live, "rules")
    assert all(s in admin_view for s in secrets)
    status = say(live, "status", user_id=MEMBER)
    assert "Acme Bookkeeping" in status and [s for s in secrets if s in status] == []

    # Who is in which channel is asked once a minute at most (users.conversations is Tier 3).
    asked = len(live.slack.calls_to("users.conversations"))
    board.members.add(MEMBER)
    assert "G0BOARD" not in say(live, "rules", user_id=MEMBER)
    assert len(live.slack.calls_to("users.conversations")) == asked
    live.clock.advance(seconds=61)
    assert "→ <#G0BOARD> min 250,000" in say(live, "rules", user_id=MEMBER)


def test_when_slack_cannot_say_who_is_where_members_see_only_public_rules(live: Live) -> None:
    live.slack.add_channel(Channel("C0PUB", name="public"))
    live.slack.add_channel(Channel("G0MINE", name="mine", is_private=True, members={MEMBER}))
    live.connect()
    say(live, "route invoice <#C0PUB|public>")
    say(live, "route bill <#G0MINE|mine>")
    live.slack.script("users.conversations", "ratelimited")
    listing = say(live, "rules", user_id=MEMBER)
    assert "C0PUB" not in listing and "G0MINE" not in listing  # fail closed: nothing is known
