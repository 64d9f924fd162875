"""/freshbooks route, rules and unroute, through signed slash commands over real HTTP."""

from __future__ import annotations

from sqlalchemy import func, select

from storage.models import Delivery, RoutingRule
from tests.support.fakes.slack import Channel
from tests.support.live import MEMBER, Live


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
    assert "Posted a sample message" in say(live, "test <#C0OTHER|other>", user_id=MEMBER)
    assert "invite me first" in say(live, "test <#G0PRIV|secret>", user_id=MEMBER)
    assert "Usage" in say(live, "test #nope", user_id=MEMBER)
    for channel in (general, other):
        (sample,) = channel.messages
        assert sample["text"].startswith("(Sample) Invoice SAMPLE-0042 created")
        assert "made-up data" in str(sample["blocks"])
        assert "metadata" not in sample
