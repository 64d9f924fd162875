"""The seed's example, end to end over real HTTP: signed webhooks in, fake FreshBooks fetched,
rules from the slash command, messages and threads in the fake Slack."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from tests.support.builders import invoice_json, payment_json
from tests.support.fakes.slack import Channel
from tests.support.live import FB_ACCOUNT, Live, drain

ACCOUNTING, EXEC, TEAM = "C0ACCOUNT", "C0EXECALR", "C0ACCTEAM"


def money(amount: str) -> dict[str, str]:
    return {"amount": amount, "code": "USD"}


def messages(live: Live, channel: str) -> list[dict[str, Any]]:
    return live.slack.channels[channel].messages


def test_routing_threads_and_cards(live: Live) -> None:
    live.slack.add_channel(Channel(ACCOUNTING, name="accounting"))
    live.slack.add_channel(Channel(EXEC, name="exec-alerts", is_member=False))
    live.slack.add_channel(Channel(TEAM, name="accounting-team"))
    live.connect_and_register("invoice.create", "payment.create", "bill.create", "expense.create")

    for text in (
        f"route invoice,payment <#{ACCOUNTING}|accounting>",
        f"route invoice,payment <#{EXEC}|exec-alerts> min 5,000",
        f"route bill <#{TEAM}|accounting-team>",
        f"route expense <#{TEAM}|accounting-team> billable",
    ):
        answer = live.slash(text).json()["text"]
        assert answer.startswith("Rule saved"), answer
    assert live.slack.channels[EXEC].is_member  # joined when the rule was saved

    fake = live.fake
    big = invoice_json("7500.00", "2026-11-24 09:00:00")
    small = {**invoice_json("1200.00", "2026-11-24 09:01:00"), "id": 111, "invoice_number": "ACM0043",
             "amount": money("1200.00"), "paid": money("0.00")}  # fmt: skip
    fake.add_object(FB_ACCOUNT, "invoices", big)
    fake.add_object(FB_ACCOUNT, "invoices", small)
    fake.deliver(FB_ACCOUNT, "invoice.create", "987654")
    fake.deliver(FB_ACCOUNT, "invoice.create", "111")
    drain(live)

    assert [m["text"].split(".")[0] for m in messages(live, ACCOUNTING)] == [
        "Invoice ACM0042 created",
        "Invoice ACM0043 created",
    ]
    assert [m["text"].split(".")[0] for m in messages(live, EXEC)] == ["Invoice ACM0042 created"]

    # The payment on the first invoice pays it in full.
    fake.add_object(FB_ACCOUNT, "invoices", invoice_json("0.00", "2026-11-24 10:00:00", v3_status="paid"))
    fake.add_object(
        FB_ACCOUNT,
        "payments",
        {"id": 5, "amount": money("7500.00"), "invoiceid": 987654, "clientid": 12345, "date": "2026-11-24",
         "type": "Check", "updated": "2026-11-24 10:00:01", "vis_state": 0},
    )  # fmt: skip
    fake.deliver(FB_ACCOUNT, "payment.create", "5")
    bill = {"id": 43221133, "bill_number": "BN101", "status": "unpaid", "currency_code": "USD",
            "amount": money("1500.00"), "outstanding": money("1500.00"), "vendor": {"vendor_name": "IKEA"},
            "due_date": "2026-12-10", "updated_at": "2026-11-24 10:05:00", "vis_state": 0}  # fmt: skip
    fake.add_object(FB_ACCOUNT, "bills", bill)
    fake.deliver(FB_ACCOUNT, "bill.create", "43221133")
    internal = {"id": 23456, "amount": money("54.00"), "vendor": "Serano Bakery", "clientid": 0, "status": 0,
                "date": "2026-11-24", "updated": "2026-11-24 10:06:00", "vis_state": 0}  # fmt: skip
    fake.add_object(FB_ACCOUNT, "expenses", internal)
    fake.deliver(FB_ACCOUNT, "expense.create", "23456")
    drain(live)

    for channel in (ACCOUNTING, EXEC):
        posted = messages(live, channel)
        card = posted[0]
        replies = [m for m in posted if m.get("thread_ts") == card["ts"]]
        titles = [m["text"].split(".")[0] for m in replies]
        assert titles == ["Payment received", "Invoice ACM0042 paid"], channel
        # The card now shows the invoice as paid, nothing outstanding.
        assert "Paid" in card["text"]
        assert "Outstanding: 0.00 USD" in card["text"]
        # Every message carries only the opaque delivery key in its metadata.
        for message in posted:
            assert message["metadata"]["event_type"] == "fbslack_delivery"
            assert set(message["metadata"]["event_payload"]) == {"delivery_key"}
    posts = live.slack.calls_to("chat.postMessage")
    paid = [c for c in posts if str(c[1].get("text", "")).startswith("Invoice ACM0042 paid")]
    assert len(paid) == 2
    assert all(c[1].get("reply_broadcast") is True for c in paid)  # also shown in the channel
    assert all(not c[1].get("reply_broadcast") for c in posts if c not in paid)
    assert [m["text"].split(" from")[0] for m in messages(live, TEAM)] == ["Bill BN101"]
    assert all("Serano" not in m["text"] for m in messages(live, TEAM))  # internal expense skipped
    # Each reply refreshed its card: two replies in each of the two channels.
    updates = live.slack.calls_to("chat.update")
    assert sorted(c[1]["channel"] for c in updates) == sorted([ACCOUNTING, ACCOUNTING, EXEC, EXEC])


def test_amounts_sent_as_json_numbers_are_exact_from_fetch_to_message(live: Live) -> None:
    """FreshBooks documents amounts as strings but may send numbers: 0.1 + 0.2 must pay a 0.30
    invoice in full, and a 20-digit amount must reach Slack digit for digit."""
    live.slack.add_channel(Channel(ACCOUNTING, name="accounting"))
    live.connect_and_register("invoice.create", "invoice.update", "payment.create")
    answer = live.slash(f"route invoice,payment <#{ACCOUNTING}|accounting>").json()["text"]
    assert answer.startswith("Rule saved"), answer

    def number(amount: str) -> dict[str, object]:
        return {"amount": Decimal(amount), "code": "USD"}  # the fake writes a bare JSON number

    def invoice(outstanding: str, updated: str) -> dict[str, object]:
        return {**invoice_json("0.30", updated), "amount": number("0.30"), "outstanding": number(outstanding),
                "paid": number(str(Decimal("0.30") - Decimal(outstanding)))}  # fmt: skip

    def payment(payment_id: int, amount: str, updated: str) -> dict[str, object]:
        return {**payment_json(payment_id, "0", updated), "amount": number(amount)}

    fake = live.fake
    fake.add_object(FB_ACCOUNT, "invoices", invoice("0.30", "2026-11-24 09:00:00"))
    fake.deliver(FB_ACCOUNT, "invoice.create", "987654")
    drain(live)
    fake.add_object(FB_ACCOUNT, "invoices", invoice("0.2", "2026-11-24 09:10:00"))
    fake.add_object(FB_ACCOUNT, "payments", payment(1, "0.1", "2026-11-24 09:10:01"))
    fake.deliver(FB_ACCOUNT, "payment.create", "1")
    drain(live)
    fake.add_object(FB_ACCOUNT, "invoices", invoice("0", "2026-11-24 09:20:00"))
    fake.add_object(FB_ACCOUNT, "payments", payment(2, "0.2", "2026-11-24 09:20:01"))
    fake.deliver(FB_ACCOUNT, "payment.create", "2")
    drain(live)

    titles = [m["text"].split(".")[0] for m in messages(live, ACCOUNTING)]
    assert titles.count("Invoice ACM0042 partially paid") == 1
    assert titles.count("Invoice ACM0042 paid") == 1
    assert "Outstanding: 0.00 USD" in messages(live, ACCOUNTING)[0]["text"]  # the card, refreshed

    big = "12345678901234567.89"  # a float would make it ...568.00
    fake.add_object(FB_ACCOUNT, "invoices", {**invoice("0", "2026-11-24 09:30:00"), "id": 5,
                                             "invoice_number": "BIG1", "amount": number(big),
                                             "outstanding": number(big)})  # fmt: skip
    fake.deliver(FB_ACCOUNT, "invoice.create", "5")
    drain(live)
    (card,) = [m for m in messages(live, ACCOUNTING) if m["text"].startswith("Invoice BIG1")]
    assert "12,345,678,901,234,567.89 USD" in json.dumps(card)


def test_expenses_name_their_category_and_deleted_bill_payments_are_not_listed(live: Live) -> None:
    live.slack.add_channel(Channel(TEAM, name="accounting-team"))
    live.connect_and_register("expense.create", "bill.update")
    for text in (f"route expense <#{TEAM}|accounting-team>", f"route bill <#{TEAM}|accounting-team>"):
        assert live.slash(text).json()["text"].startswith("Rule saved")
    fake = live.fake
    fake.add_category(FB_ACCOUNT, 3012676, "Accident Insurance", parent_id=3012670)
    expense = {"id": 23456, "amount": money("54.00"), "vendor": "Serano Bakery", "categoryid": 3012676,
               "clientid": 0, "status": 0, "date": "2026-11-24", "updated": "2026-11-24 10:06:00",
               "vis_state": 0}  # fmt: skip
    fake.add_object(FB_ACCOUNT, "expenses", expense)
    fake.deliver(FB_ACCOUNT, "expense.create", "23456")

    def paid(payment_id: int, amount: str, vis_state: int) -> dict[str, object]:
        return {"id": payment_id, "billid": 43221133, "amount": money(amount), "paid_date": "2026-11-20",
                "payment_type": "Check", "note": None, "vis_state": vis_state}  # fmt: skip

    bill = {"id": 43221133, "bill_number": "BN101", "status": "partial", "currency_code": "USD",
            "amount": money("1500.00"), "outstanding": money("1000.00"), "paid": money("500.00"),
            "vendor": {"vendor_name": "IKEA"}, "due_date": "2026-12-10", "updated_at": "2026-11-24 10:05:00",
            "bill_payments": [paid(1, "777.00", 1), paid(2, "500.00", 0)], "vis_state": 0}  # fmt: skip
    fake.add_object(FB_ACCOUNT, "bills", bill)
    fake.deliver(FB_ACCOUNT, "bill.update", "43221133")
    drain(live)

    (fetch,) = fake.calls_to("GET", f"/accounting/account/{FB_ACCOUNT}/expenses/expenses/23456")
    assert fetch.query["include[]"] == ["category"]
    expense_message, bill_message = messages(live, TEAM)
    assert "Category: Accident Insurance" in expense_message["text"]
    shown = json.dumps(bill_message["blocks"])
    assert "500.00 USD \\u00b7 Check" in shown
    assert "777.00" not in shown  # the deleted payment
