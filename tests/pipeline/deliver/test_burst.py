"""Bursts collapsed (issue 15 §2): many deliveries waiting for one channel go out as one summary,
the rest in its thread, exactly once per delivery. Over real HTTP against the fake Slack, which
refuses a second post to a channel within a second (429); time is the injected clock."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from sqlalchemy import select

from connector.pipeline.deliver.engine import LEASE
from connector.pipeline.render.formatting import MAX_BLOCKS, METADATA_EVENT_TYPE, SECTION_TEXT_MAX
from storage import outbox
from storage.models import Delivery, DeliveryState
from tests.support.builders import payment_json
from tests.support.desk import ACCOUNTING, SALES, UPDATED, Desk, invoice
from tests.support.fakes.slack import DROP, STORE_THEN_DROP
from tests.support.live import FB_ACCOUNT

pytestmark = pytest.mark.date_sensitive


def top_level(desk: Desk, channel: str = ACCOUNTING) -> list[dict[str, Any]]:
    return [m for m in desk.slack.channels[channel].messages if m.get("thread_ts") in (None, m["ts"])]


def replies(desk: Desk, ts: str, channel: str = ACCOUNTING) -> list[dict[str, Any]]:
    return [m for m in desk.slack.channels[channel].messages if m.get("thread_ts") == ts and m["ts"] != ts]


def shown(message: dict[str, Any]) -> str:
    """Everything a person reads in a message: its blocks' texts (or its fallback text)."""
    texts = [message["text"]]
    for block in message.get("blocks") or []:
        texts += [block.get("text", {}).get("text", "")]
        texts += [element.get("text", "") for element in block.get("elements", [])]
    return "\n".join(texts)


def within_slack_limits(message: dict[str, Any]) -> bool:
    blocks = message["blocks"]
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    return (
        len(blocks) <= MAX_BLOCKS
        and all(len(text) <= SECTION_TEXT_MAX for text in sections)
        and len(json.dumps(blocks)) < 12_000  # Slack refuses ~13,200 (slack-files-and-scheduling.md §8)
    )


def numbers_listed(desk: Desk, channel: str = ACCOUNTING) -> list[str]:
    """Every invoice number shown in the channel, threads included, once per appearance."""
    found: list[str] = []
    for message in desk.slack.channels[channel].messages:
        for block in message.get("blocks") or []:
            text = block.get("text", {}).get("text", "")
            found += [
                line.split("|Invoice ", 1)[1].split(">", 1)[0]
                for line in text.split("\n")
                if "|Invoice " in line
            ]
    return found


def settle(desk: Desk) -> None:
    """The burst has stopped arriving: the next claim sends it, instead of gathering it longer."""
    desk.live.clock.advance(seconds=outbox.BURST_SETTLE.total_seconds())


def route(desk: Desk, text: str) -> None:
    assert desk.live.slash(text).json()["text"].startswith("Rule saved")


def deliver_webhooks(desk: Desk, object_ids: range) -> None:
    for object_id in object_ids:
        desk.live.fake.add_object(FB_ACCOUNT, "invoices", invoice(object_id))
        assert desk.live.fake.deliver(FB_ACCOUNT, "invoice.create", str(object_id)).status_code == 200


def ingest(desk: Desk) -> None:
    """Webhooks to deliveries, with no time passing (they arrive within a second in production)."""
    while desk.live.services.inbox_worker.run_once() + desk.live.services.router.run_once():
        pass


def test_a_burst_of_100_invoices_is_visible_within_10_s_in_3_messages_without_a_429(desk: Desk) -> None:
    desk.slack.enforce_channel_rate = True
    route(desk, f"route invoice.create <#{ACCOUNTING}|accounting>")
    started = desk.live.clock()

    deliver_webhooks(desk, range(2001, 2002))  # the first of the run arrives alone
    ingest(desk)
    assert desk.run() == 1
    deliver_webhooks(desk, range(2002, 2101))  # then the other 99, while the channel is paced
    ingest(desk)
    desk.drain()

    numbers = numbers_listed(desk)
    top = top_level(desk)
    assert desk.slack.rate_limited == []
    assert (desk.live.clock() - started).total_seconds() <= 10
    assert len(top) <= 3
    assert sorted(numbers) == sorted(f"ACM{i}" for i in range(2002, 2101))  # each listed once
    assert top[0]["text"].startswith("Invoice ACM2001 created")  # the lone first one, as before
    summary = top[1]
    assert summary["text"].startswith(
        "99 invoices created · 742,500.00 USD: Invoice ACM2002, Invoice ACM2003"
    )
    assert all(within_slack_limits(m) for m in desk.slack.channels[ACCOUNTING].messages)
    thread = replies(desk, summary["ts"])
    assert thread and all(m["text"].startswith("Continued: ") for m in thread)
    with desk.live.services.db.read() as session:
        rows = session.scalars(select(Delivery).where(Delivery.channel_id == ACCOUNTING)).all()
    assert {r.state for r in rows} == {DeliveryState.DELIVERED}
    in_summary = [r for r in rows if r.batch_key is not None]
    assert len(in_summary) == 99
    # Each delivery records the summary's ts: as its own ts, or as the thread its reply is in.
    assert {r.thread_ts or r.slack_ts for r in in_summary} == {summary["ts"]}
    assert {r.slack_ts for r in in_summary} == {summary["ts"], *(m["ts"] for m in thread)}
    # The audit trail finds each invoice and links the message that lists it.
    found = desk.live.slash("audit ACM2050").json()["text"]
    assert "ACM2050" in found and f"/p{summary['ts'].replace('.', '')}|delivered>" in found


def test_a_lone_event_and_a_few_go_out_at_once_on_their_own(desk: Desk) -> None:
    desk.slack.enforce_channel_rate = True
    (lone,) = desk.queue(ACCOUNTING, collapse_at=5)

    desk.run()
    assert desk.texts(ACCOUNTING) == ["Invoice ACM1001 created"]  # the first round: no waiting
    few = desk.queue(ACCOUNTING, 3, collapse_at=5)  # fewer than 5 waiting: one by one
    desk.drain()

    assert desk.texts(ACCOUNTING) == [f"Invoice ACM{i} created" for i in range(1001, 1005)]
    assert [desk.get(i).batch_key for i in [lone, *few]] == [None] * 4
    assert desk.slack.rate_limited == []


@pytest.mark.parametrize(("option", "queued", "summaries"), [("collapse 3", 3, 1), ("collapse off", 8, 0)])
def test_a_rule_sets_its_burst_size_or_turns_collapsing_off(
    desk: Desk, option: str, queued: int, summaries: int
) -> None:
    route(desk, f"route invoice.create <#{ACCOUNTING}|accounting> {option}")
    rules = desk.live.slash("rules").json()["text"]
    deliver_webhooks(desk, range(3001, 3001 + queued))
    ingest(desk)
    desk.drain()

    assert option in rules
    messages = top_level(desk)
    assert len(messages) == (1 if summaries else queued)
    assert sorted(numbers_listed(desk)) == (
        [f"ACM{i}" for i in range(3001, 3001 + queued)] if summaries else []
    )


def test_replies_in_existing_threads_are_not_collapsed(desk: Desk) -> None:
    ids = desk.queue(ACCOUNTING, 2, collapse_at=5)
    desk.drain()
    payments = [
        desk.queue_event(
            ACCOUNTING, "payment", "payment.create", {**payment_json(n, "10.00", UPDATED), "invoiceid": i}
        )
        for n, i in enumerate([1001, 1002] * 3, start=1)
    ]
    desk.drain()

    cards = [desk.get(i).slack_ts for i in ids]
    assert [desk.get(p).thread_ts for p in payments] == [cards[0], cards[1]] * 3
    assert [desk.get(p).batch_key for p in payments] == [None] * 6


def test_replaying_one_collapsed_delivery_posts_it_alone(desk: Desk) -> None:
    ids = desk.queue(ACCOUNTING, 6, collapse_at=5)
    desk.drain()
    summary_ts = desk.get(ids[0]).slack_ts
    assert len(top_level(desk)) == 1 and desk.get(ids[3]).slack_ts == summary_ts

    with desk.live.services.db.session() as session:
        assert outbox.requeue_for_replay(
            session,
            workspace_id=desk.workspace_id,
            delivery_id=ids[3],
            allow_delivered=True,
            now=desk.live.clock(),
        )
    more = desk.queue(
        ACCOUNTING, 5, collapse_at=5
    )  # a burst waiting at the same time does not swallow the replay
    desk.drain()

    replayed = desk.get(ids[3])
    assert (replayed.state, replayed.batch_key) == (DeliveryState.DELIVERED, None)
    [alone] = [m for m in desk.slack.channels[ACCOUNTING].messages if m["ts"] == replayed.slack_ts]
    assert alone["text"].startswith("Invoice ACM1004 created")
    assert alone["metadata"]["event_payload"]["delivery_key"] == replayed.delivery_key
    assert alone["thread_ts"] == summary_ts  # the invoice's thread is the summary's
    assert {desk.get(i).batch_key for i in more} != {None}  # the other five made their own summary


def test_a_later_payment_replies_in_the_summarys_thread_naming_the_invoice(desk: Desk) -> None:
    ids = desk.queue(ACCOUNTING, 5, collapse_at=5)
    desk.drain()
    summary = top_level(desk)[0]
    payment = {**payment_json(77, "2500.00", UPDATED), "invoiceid": 1003}

    delivery_id = desk.queue_event(ACCOUNTING, "payment", "payment.create", payment)
    desk.drain()

    posted = desk.get(delivery_id)
    [reply] = replies(desk, summary["ts"])
    assert posted.thread_ts == summary["ts"] == desk.get(ids[2]).slack_ts
    assert reply["ts"] == posted.slack_ts
    assert "Invoice: ACM1003" in reply["text"]
    assert desk.slack.calls_to("chat.update") == []  # a summary is never rewritten as one invoice's card
    assert top_level(desk)[0]["text"].startswith("5 invoices created · 37,500.00 USD: ")


@pytest.mark.parametrize(
    ("answer", "landed"), [(STORE_THEN_DROP, True), (DROP, False)], ids=["landed", "lost"]
)
def test_a_summary_whose_answer_was_lost_is_looked_for_and_never_posted_twice(
    desk: Desk, answer: Any, landed: bool
) -> None:
    ids = desk.queue(ACCOUNTING, 7, collapse_at=5)
    settle(desk)
    desk.slack.script("chat.postMessage", answer)

    desk.run()
    doubt = [desk.get(i) for i in ids]
    desk.advance_to_next_attempt(ids[0])
    desk.drain()

    assert {d.state for d in doubt} == {DeliveryState.IN_DOUBT}
    assert {d.batch_key for d in doubt} == {doubt[0].delivery_key}
    messages = desk.slack.channels[ACCOUNTING].messages
    assert len(messages) == 1
    assert desk.slack.posts_by_metadata("delivery_key")[doubt[0].delivery_key] == (1 if landed else 2)
    assert {desk.get(i).state for i in ids} == {DeliveryState.DELIVERED}
    assert {desk.get(i).slack_ts for i in ids} == {messages[0]["ts"]}
    assert sorted(numbers_listed(desk)) == sorted(f"ACM{i}" for i in range(1001, 1008))


@pytest.mark.parametrize("landed", [True, False], ids=["landed", "not-landed"])
def test_a_crash_mid_summary_is_reconciled_after_the_lease(desk: Desk, landed: bool) -> None:
    ids = desk.queue(ACCOUNTING, 6, collapse_at=5)
    settle(desk)
    with desk.live.services.db.session() as session:  # another process claims, marks, posts, dies
        [claim] = outbox.claim_due(session, owner="crashed", now=desk.live.clock(), lease=LEASE, limit=1)
        assert [m.delivery_id for m in claim.batch] == ids
        assert outbox.mark_batch_sent(
            session,
            delivery_ids=ids,
            owner="crashed",
            now=desk.live.clock(),
            batch_key=claim.delivery_key,
            thread_ts=None,
        )
    if landed:
        marker = {"event_type": METADATA_EVENT_TYPE, "event_payload": {"delivery_key": claim.delivery_key}}
        desk.web().chat_postMessage(channel=ACCOUNTING, text="6 invoices created", metadata=marker)

    for _ in range(50):  # 55 s: still leased by the dead process
        assert desk.run() == 0
    desk.live.clock.advance(seconds=LEASE.total_seconds())
    desk.drain()

    messages = desk.slack.channels[ACCOUNTING].messages
    assert len(messages) == 1
    assert {desk.get(i).state for i in ids} == {DeliveryState.DELIVERED}
    assert {desk.get(i).slack_ts for i in ids} == {messages[0]["ts"]}


def test_a_thread_page_in_doubt_is_looked_for_in_the_summarys_thread(desk: Desk) -> None:
    ids = desk.queue(ACCOUNTING, 120, collapse_at=5)  # more than one message lists
    settle(desk)
    desk.run()  # the summary
    page = [i for i in ids if desk.get(i).state == DeliveryState.PENDING]
    assert page and {desk.get(i).thread_ts for i in page} == {desk.get(ids[0]).slack_ts}
    desk.slack.script("chat.postMessage", STORE_THEN_DROP)

    desk.run()  # its thread reply: stored, the answer lost
    desk.advance_to_next_attempt(page[0])
    desk.drain()

    summary_ts = desk.get(ids[0]).slack_ts
    assert len(replies(desk, summary_ts)) == 1
    assert [c[1]["ts"] for c in desk.slack.calls_to("conversations.replies")] == [summary_ts]
    assert {desk.get(i).state for i in ids} == {DeliveryState.DELIVERED}
    assert sorted(numbers_listed(desk)) == sorted(f"ACM{i}" for i in range(1001, 1121))


def test_a_summary_never_adds_currencies_and_names_each_event(desk: Desk) -> None:
    for n, currency in enumerate(["USD", "CAD", "USD", "EUR", "CAD"], start=1):
        obj = invoice(4000 + n)
        obj["amount"] = {"amount": f"{n}000.00", "code": currency}
        obj["currency_code"] = currency
        desk.queue_event(ACCOUNTING, "invoice", "invoice.create", obj, collapse_at=5)
    desk.queue_event(SALES, "invoice", "invoice.create", invoice(4100), collapse_at=5)
    desk.drain()

    [summary] = top_level(desk)
    assert summary["text"].startswith("5 invoices created · 7,000.00 CAD · 4,000.00 EUR · 4,000.00 USD: ")
    assert len(top_level(desk, SALES)) == 1  # another channel is not part of it


def test_a_burst_still_arriving_is_gathered_a_moment_but_never_long(desk: Desk) -> None:
    desk.queue(ACCOUNTING, 5, collapse_at=5)
    assert desk.live.services.engine.run_once() == 0  # the newest arrived just now: gathered
    for _ in range(6):  # one more every 0.9 s: still arriving, until the oldest has waited 5 s
        desk.live.clock.advance(seconds=0.9)
        desk.queue(ACCOUNTING, 1, collapse_at=5)
        if desk.live.services.engine.run_once():
            break

    waited = desk.live.clock() - desk.get(1).created_at
    [summary] = top_level(desk)
    assert outbox.BURST_MAX_HOLD <= waited < outbox.BURST_MAX_HOLD + dt.timedelta(seconds=1)
    assert summary["text"].startswith("11 invoices created")  # 5, then one every 0.9 s for 5.4 s
