"""`/freshbooks audit` and `/freshbooks replay` (and `fbslack audit|replay`), over real HTTP against
the fakes: blind-index search, workspace scoping, confirmations, and what replays really post."""

from __future__ import annotations

import datetime as dt
import io
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from connector.features.audit.replay import ReplayFailed, ReplayOne, ReplaySyntaxError, parse_replay_command
from connector.features.audit.search import AuditQuery, AuditSyntaxError, parse_audit_query
from connector.pipeline.index import number_values, word_alternatives
from storage import connections, outbox
from storage.models import AppSecret, Delivery, DeliveryState, SearchTerm
from tests.support.builders import invoice_json
from tests.support.fakes.slack import Channel
from tests.support.live import ADMIN, FB_ACCOUNT, MEMBER, Live, drain
from tests.support.slack_interactivity import interact

# Run again by .ci/run from a leap day just before midnight US/Eastern (tests/support/live.py).
pytestmark = pytest.mark.date_sensitive

ACC, OTHER, SPARE = "C0ACC", "C0OTHER", "C0SPARE"
TODAY = dt.date(2026, 11, 24)


# -- the query language (pure) -------------------------------------------------------------------


def test_query_words_kinds_statuses_channel_and_dates() -> None:
    query = parse_audit_query(
        '1042 "Acme Corp" invoice.paid status:parked <#C0ACC|acc> since:7d until:2026-11-24', today=TODAY
    )
    assert query == AuditQuery(
        words=("1042", "Acme", "Corp"),
        event_names=("invoice.paid",),
        statuses=("parked",),
        channel_id="C0ACC",
        since=dt.date(2026, 11, 17),
        until=TODAY,
    )
    bare = parse_audit_query("bills failed d77", today=TODAY)
    assert set(bare.event_names) >= {"bill.create", "bill.paid"} and bare.statuses == ("failed",)
    assert bare.delivery_id == 77
    assert parse_audit_query("", today=TODAY).is_empty


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("kind:invoices.nope", "kind:invoices.nope"),
        ("status:lost", "status:lost"),
        ("since:yesterday", "since:yesterday"),
        ("#accounting", "#accounting"),
        ('"Acme', "closing quote"),
        ("since:2026-11-20 until:2026-11-01", "before"),
        ("acme globex initech umbrella hooli", "at most 4 words"),
        ('"Acme Widgets Holdings" O\'Brien', "this one has 5"),
    ],
)
def test_bad_queries_say_what_was_wrong(text: str, named: str) -> None:
    with pytest.raises(AuditSyntaxError) as raised:
        parse_audit_query(text, today=TODAY)
    assert named in str(raised.value)
    assert "Usage: `/freshbooks audit" in str(raised.value)


def test_the_word_cap_counts_lookups_not_repeats() -> None:
    assert parse_audit_query('"Acme Widgets Holdings Ltd" invoice.paid failed since:30d', today=TODAY).words
    assert parse_audit_query("acme acme ACME Acme acme", today=TODAY).words  # one lookup, five times
    with pytest.raises(AuditSyntaxError) as raised:
        parse_audit_query("a b c d e f g h i j k", today=TODAY)
    assert "`a`, `b`, `c`, `d`, `e`, `f`, `g`, `h`, …" in str(raised.value)


def test_numbers_match_without_prefix_or_zeros_and_names_by_word() -> None:
    assert number_values("#INV-0042") == {"inv-0042", "42"}
    assert number_values("0000042") == {"0000042", "42"}
    assert number_values("") == set()
    assert word_alternatives("ACM0042") == [[("number", "42"), ("number", "acm0042"), ("word", "acm0042")]]
    assert word_alternatives("O'Brien") == [[("word", "o")], [("word", "brien")]]


def test_replay_command_forms() -> None:
    assert parse_replay_command("D12", today=TODAY) == ReplayOne(12)
    assert parse_replay_command("12 to <#C0X|x>", today=TODAY) == ReplayOne(12, "C0X")
    assert parse_replay_command("failed to <#C0X> since 2026-11-01", today=TODAY) == ReplayFailed(
        "C0X", dt.date(2026, 11, 1)
    )
    assert parse_replay_command("parked since:3d", today=TODAY) == ReplayFailed(None, dt.date(2026, 11, 21))
    for bad, named in (("", "Say what"), ("twelve", "`twelve`"), ("D1 since 2026-01-01", "since"),
                       ("failed to #x", "`to`"), ("failed since soon", "`soon`")):  # fmt: skip
        with pytest.raises(ReplaySyntaxError) as raised:
            parse_replay_command(bad, today=TODAY)
        assert named in str(raised.value)


# -- search over the live app -------------------------------------------------------------------


def money(amount: str) -> dict[str, str]:
    return {"amount": amount, "code": "USD"}


def setup_books(live: Live) -> None:
    """Two invoices and a bill through the real pipeline: webhooks, fetches, rules, posts."""
    live.slack.add_channel(Channel(ACC, name="accounting"))
    live.slack.add_channel(Channel(OTHER, name="purchasing"))
    live.slack.add_channel(Channel(SPARE, name="spare"))
    live.connect_and_register("invoice.create", "bill.create")
    assert live.slash(f"route invoice <#{ACC}|accounting>").json()["text"].startswith("Rule saved")
    assert live.slash(f"route bill <#{OTHER}|purchasing>").json()["text"].startswith("Rule saved")
    live.fake.add_object(FB_ACCOUNT, "invoices", invoice_json("7500.00", "2026-11-24 09:00:00"))
    acme = {**invoice_json("1200.00", "2026-11-24 09:01:00"), "id": 111, "invoice_number": "0001043",
            "organization": "Acme Corp", "amount": money("1200.00"), "paid": money("0.00")}  # fmt: skip
    live.fake.add_object(FB_ACCOUNT, "invoices", acme)
    bill = {"id": 4321, "bill_number": "BN101", "status": "unpaid", "currency_code": "USD",
            "amount": money("1500.00"), "outstanding": money("1500.00"), "vendor": {"vendor_name": "IKEA"},
            "due_date": "2026-12-10", "updated_at": "2026-11-24 10:05:00", "vis_state": 0}  # fmt: skip
    live.fake.add_object(FB_ACCOUNT, "bills", bill)
    for event, object_id in (
        ("invoice.create", "987654"),
        ("invoice.create", "111"),
        ("bill.create", "4321"),
    ):
        assert live.fake.deliver(FB_ACCOUNT, event, object_id).status_code == 200
    drain(live)


def audit(live: Live, query: str, user: str = ADMIN) -> str:
    answer = live.slash(f"audit {query}".strip(), user_id=user).json()
    assert answer["response_type"] == "ephemeral"
    return str(answer["text"])


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("• ")]


def test_audit_finds_by_number_name_kind_status_channel_and_date(live: Live) -> None:
    setup_books(live)
    assert len(lines(audit(live, "ACM0042"))) == 1 and "Gordon Shumway" in audit(live, "ACM0042")
    assert "0001043" in audit(live, "1043")  # leading zeros and prefixes are optional
    assert "Acme Corp" in audit(live, "acme")
    assert "Acme Corp" in audit(live, '"ACME corp"')
    assert lines(audit(live, "acme gordon")) == []  # every word must match
    found = audit(live, "ikea")
    assert "BN101" in found and f"<#{OTHER}>" in found and "delivered" in found
    assert len(lines(audit(live, "invoice"))) == 2
    assert len(lines(audit(live, f"<#{OTHER}|purchasing>"))) == 1
    assert len(lines(audit(live, "status:delivered"))) == 3
    assert audit(live, "status:parked").startswith("Nothing in the audit trail matches")
    today = live.clock().astimezone(dt.UTC).date()  # audit dates are UTC days
    assert len(lines(audit(live, f"since:{today} until:{today}"))) == 3
    assert lines(audit(live, f"since:{today + dt.timedelta(days=1)}")) == []
    assert lines(audit(live, f"until:{today - dt.timedelta(days=1)}")) == []
    assert "Nothing in the audit trail matches" in audit(live, "nobody")


def test_audit_words_are_capped_with_a_helpful_answer(live: Live) -> None:
    setup_books(live)
    answer = audit(live, "acme corp gordon shumway ikea")
    assert answer.startswith("A search matches at most 4 words of a number or a name")
    assert "invoice or bill number alone is enough" in answer
    assert "Acme Corp" in audit(live, '"Acme Corp" acme corp')  # repeats are one lookup each


def test_a_search_the_database_holds_up_is_answered_by_response_url(live: Live) -> None:
    if live.services.db.dialect != "postgresql":
        pytest.skip("SQLite readers are never blocked by a writer (WAL)")
    setup_books(live)
    with live.services.db.engine.connect() as blocker:
        # Another session holds the events table (a migration, a long report): the search waits.
        blocker.exec_driver_sql("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        began = time.monotonic()
        ack = live.slash("audit ikea", follow=False).json()
        assert time.monotonic() - began < 3
        assert ack["text"] == "Searching the audit trail…"
        blocker.rollback()
    (follow_up,) = live.slack.wait_for_responses(1, timeout=20)
    assert "BN101" in follow_up["text"] or "too much" in follow_up["text"]


def test_a_search_past_its_time_is_stopped_and_answered_within_slacks_time(live: Live) -> None:
    if live.services.db.dialect != "postgresql":
        pytest.skip(
            "SQLite readers are never blocked by a writer: tests/features/audit/test_audit_search_limits.py"
        )
    setup_books(live)
    with live.services.db.engine.connect() as blocker:
        blocker.exec_driver_sql("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        began = time.monotonic()
        ack = live.slash("audit ikea", follow=False).json()
        assert ack["text"] == "Searching the audit trail…"
        # The database stops the search (statement_timeout) while the lock is still held.
        (follow_up,) = live.slack.wait_for_responses(1, timeout=20)
        answered = time.monotonic() - began
        blocker.rollback()
    assert "matches too much of the audit trail" in follow_up["text"]
    assert answered < 3.0  # arrival to answer, as Slack's 3 s count it (less the internet)


def test_audit_shows_events_no_rule_sent_anywhere(live: Live) -> None:
    setup_books(live)
    assert live.slash("unroute 1").json()["text"] == "Rule #1 removed."
    live.fake.add_object(FB_ACCOUNT, "invoices", {**invoice_json("7500.00", "2026-11-24 11:00:00"), "id": 5})
    live.fake.deliver(FB_ACCOUNT, "invoice.create", "5")
    drain(live)
    assert "not posted (no rule matched)" in audit(live, "42 since:2026-11-24")


def test_search_terms_and_their_key_reveal_nothing(live: Live) -> None:
    setup_books(live)
    with live.services.db.read() as session:
        terms = list(session.scalars(select(SearchTerm.term)))
        key = session.scalar(select(AppSecret.value_enc))
    assert terms and all(len(t) == 32 and int(t, 16) >= 0 for t in terms)
    dump = " ".join(terms) + (key or "")
    for secret in ("acm0042", "ACM0042", "ikea", "IKEA", "acme", "gordon", "1043"):
        assert secret not in dump
    assert key is not None and live.services.cipher.decrypt(key)  # stored encrypted


def test_members_are_refused_and_workspaces_are_isolated(live: Live) -> None:
    setup_books(live)
    refused = audit(live, "acme", user=MEMBER)
    assert "admins" in refused and "Acme" not in refused
    # Another workspace (its own admin) sees nothing of T0001's trail and cannot replay its deliveries.
    with live.services.db.session() as session:
        connections.ensure_workspace(session, team_id="T0002", now=live.clock())
    other = live.slash("audit acme", team_id="T0002").json()["text"]
    assert "Acme" not in other
    assert "There is no delivery D1" in live.slash("replay D1", team_id="T0002").json()["text"]


# -- replay --------------------------------------------------------------------------------------


def click(live: Live, action_id: str, value: str, user: str = ADMIN) -> httpx.Response:
    """A signed block_actions request from an ephemeral slash-command answer, as Slack sends it."""
    payload = {
        "type": "block_actions",
        "team": {"id": "T0001"},
        "user": {"id": user, "team_id": "T0001"},
        "api_app_id": "A0001",
        "container": {"type": "message", "is_ephemeral": True},
        "trigger_id": "1.2.3",
        "response_url": live.slack.response_url("confirm"),
        "actions": [{"type": "button", "action_id": action_id, "value": value, "block_id": "b",
                     "action_ts": f"{time.time():.6f}"}],
    }  # fmt: skip
    return interact(live, payload)


def button(answer: dict[str, Any], action_id: str) -> str:
    for block in answer.get("blocks", []):
        for element in block.get("elements", []):
            if element.get("action_id") == action_id:
                return str(element["value"])
    raise AssertionError(f"no {action_id} button in {answer}")


def delivery_of(live: Live, channel: str) -> Delivery:
    with live.services.db.read() as session:
        rows = list(
            session.scalars(select(Delivery).where(Delivery.channel_id == channel).order_by(Delivery.id))
        )
        session.expunge_all()
    assert rows
    return rows[0]


def posts(live: Live, channel: str) -> int:
    return len(live.slack.channels[channel].messages)


def test_replaying_a_parked_delivery_posts_it_once(live: Live) -> None:
    live.slack.add_channel(Channel(OTHER, name="purchasing"))
    live.connect_and_register("bill.create")
    assert live.slash(f"route bill <#{OTHER}|purchasing>").json()["text"].startswith("Rule saved")
    live.slack.channels[OTHER].is_archived = True
    bill = {"id": 4321, "bill_number": "BN101", "status": "unpaid", "currency_code": "USD",
            "amount": money("1500.00"), "outstanding": money("1500.00"), "vendor": {"vendor_name": "IKEA"},
            "due_date": "2026-12-10", "updated_at": "2026-11-24 10:05:00", "vis_state": 0}  # fmt: skip
    live.fake.add_object(FB_ACCOUNT, "bills", bill)
    live.fake.deliver(FB_ACCOUNT, "bill.create", "4321")
    drain(live)
    parked = delivery_of(live, OTHER)
    assert parked.state == DeliveryState.PARKED
    assert "is_archived" in audit(live, "status:parked")

    # Someone unarchives the channel without the app hearing of it; an admin replays by hand.
    live.slack.channels[OTHER].is_archived = False
    answer = live.slash(f"replay D{parked.id}").json()["text"]
    assert answer == f"D{parked.id} is queued again for <#{OTHER}>; it goes out in a moment."
    drain(live)
    assert posts(live, OTHER) == 1
    assert delivery_of(live, OTHER).state == DeliveryState.DELIVERED
    history = audit(live, f"D{parked.id}")
    assert f"replay requeued by <@{ADMIN}>" in history and "attempt 1" in history


def test_replaying_something_delivered_needs_explicit_confirmation(live: Live) -> None:
    setup_books(live)
    delivered = delivery_of(live, OTHER)
    answer = live.slash(f"replay D{delivered.id}").json()
    assert "already delivered" in answer["text"]
    drain(live)
    assert posts(live, OTHER) == 1  # nothing happened without the confirmation

    assert click(live, "freshbooks_replay_cancel", "cancel").status_code == 200
    assert "cancelled" in live.slack.wait_for_responses(1)[-1]["text"]

    value = button(answer, "freshbooks_replay_confirm")
    assert click(live, "freshbooks_replay_confirm", value, user=MEMBER).status_code == 200
    assert "admins" in live.slack.wait_for_responses(2)[-1]["text"]
    drain(live)
    assert posts(live, OTHER) == 1

    assert click(live, "freshbooks_replay_confirm", value).status_code == 200
    assert "queued again" in live.slack.wait_for_responses(3)[-1]["text"]
    drain(live)
    assert posts(live, OTHER) == 2  # a second copy, because a person asked for it
    keys = [m["metadata"]["event_payload"] for m in live.slack.channels[OTHER].messages]
    assert keys[0] != keys[1]  # a new key: the first message is never mistaken for the repost


def test_replay_to_another_channel_creates_one_delivery_there(live: Live) -> None:
    setup_books(live)
    delivered = delivery_of(live, OTHER)
    text = live.slash(f"replay D{delivered.id} to <#{SPARE}|spare>").json()["text"]
    assert text.startswith(f"Queued the event of D{delivered.id} for <#{SPARE}>")
    again = live.slash(f"replay D{delivered.id} to <#{SPARE}|spare>").json()["text"]
    assert "already waiting" in again
    drain(live)
    assert posts(live, SPARE) == 1
    assert "already delivered" in live.slash(f"replay D{delivered.id} to <#{SPARE}|spare>").json()["text"]


def fail(delivery: Delivery) -> None:
    """As if Slack had refused the post (a failure that surely did not land)."""
    delivery.state, delivery.sent_at, delivery.last_error_code = DeliveryState.FAILED, None, "invalid_blocks"


def test_bulk_replay_counts_asks_and_covers_only_what_it_counted(live: Live) -> None:
    setup_books(live)
    with live.services.db.session() as session:
        ids = list(session.scalars(select(Delivery.id).order_by(Delivery.id)))
        for delivery_id in ids[:2]:
            fail(session.get_one(Delivery, delivery_id))
    answer = live.slash("replay failed").json()
    assert answer["text"].startswith("2 failed or parked deliveries to their channels will be sent again")
    value = button(answer, "freshbooks_replay_confirm")
    # A failure after the count is not part of what was confirmed.
    with live.services.db.session() as session:
        session.get_one(Delivery, ids[2]).state = DeliveryState.PARKED
    assert click(live, "freshbooks_replay_confirm", value).status_code == 200
    assert live.slack.wait_for_responses(1)[-1]["text"].startswith("Queued 2 of 2 deliveries again")
    with live.services.db.read() as session:
        states = [session.get_one(Delivery, i).state for i in ids]
    assert states == [DeliveryState.PENDING, DeliveryState.PENDING, DeliveryState.PARKED]
    tomorrow = live.clock().astimezone(dt.UTC).date() + dt.timedelta(days=1)
    assert (
        f"Nothing failed or parked since {tomorrow}"
        in live.slash(f"replay failed since {tomorrow}").json()["text"]
    )


def test_replay_refuses_a_channel_it_cannot_post_in(live: Live) -> None:
    setup_books(live)
    live.slack.add_channel(Channel("G0SECRET", name="secret", is_private=True, is_member=False))
    text = live.slash("replay D1 to <#G0SECRET|secret>").json()["text"]
    assert text.startswith("Nothing replayed:") and "private" in text


def test_cli_audit_and_replay_share_the_code_paths(live: Live, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from connector.features.audit.cli import cmd_audit, cmd_replay

    setup_books(live)
    settings = live.settings
    assert cmd_audit(argparse.Namespace(query=["ikea"], team=None, limit=25), settings) == 0
    out = capsys.readouterr().out
    assert "BN101" in out and "IKEA" in out and "delivered" in out
    delivered = delivery_of(live, OTHER)
    args = argparse.Namespace(target=f"D{delivered.id}", to=None, since=None, team=None, yes=False)
    not_a_tty = io.StringIO()
    printed = io.StringIO()
    assert cmd_replay(args, settings, stdin=not_a_tty, out=printed) == 1
    assert "already delivered" in printed.getvalue() and "--yes" in printed.getvalue()
    with live.services.db.session() as session:
        fail(session.get_one(Delivery, delivered.id))
    bulk = argparse.Namespace(target="failed", to=None, since=None, team=None, yes=True)
    assert cmd_replay(bulk, settings, stdin=not_a_tty, out=printed) == 0
    assert "queued 1 of 1 again" in printed.getvalue()
    assert cmd_audit(argparse.Namespace(query=[f"D{delivered.id}"], team=None, limit=25), settings) == 0
    assert "replay requeued by cli:" in capsys.readouterr().out
    with live.services.db.read() as session:
        assert outbox.delivery_ref(session, workspace_id=1, delivery_id=delivered.id) is not None
