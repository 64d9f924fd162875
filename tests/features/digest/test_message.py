"""The digest message: Slack's limits hold whatever the books, customer text is escaped, links are
the renderers' links, and the words say what changed."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from connector.features.digest.figures import Change, DigestInputs, compute
from connector.features.digest.message import TOTAL_CHARS_MAX, describe_change, period_label, render_digest
from connector.features.digest.period import Cadence, period_just_ended
from connector.freshbooks.models import parse_bill, parse_expense, parse_invoice, parse_payment
from connector.pipeline.render.formatting import (
    FALLBACK_TEXT_MAX,
    FIELD_TEXT_MAX,
    MAX_BLOCKS,
    MAX_FIELDS,
    SECTION_TEXT_MAX,
    Message,
    RenderContext,
)
from tests.support.books import bill_json, client_json, expense_json, invoice_json, payment_json

NEW_YORK = ZoneInfo("America/New_York")
NOW = dt.datetime(2027, 4, 5, 8, tzinfo=NEW_YORK)
CTX = RenderContext(account_id="p7rQW5", delivery_key="digest-42")
D = Decimal


def assert_within_slack_limits(message: Message) -> None:
    blocks: list[dict[str, Any]] = message.blocks
    assert 1 <= len(blocks) <= MAX_BLOCKS
    assert len(json.dumps(blocks, ensure_ascii=False)) <= TOTAL_CHARS_MAX
    assert 0 < len(message.text) <= FALLBACK_TEXT_MAX
    for block in blocks:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
        if block["type"] == "context":
            assert len(block["elements"]) <= 10
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= SECTION_TEXT_MAX
            fields = block.get("fields", [])
            assert len(fields) <= MAX_FIELDS
            assert all(len(f["text"]) <= FIELD_TEXT_MAX for f in fields)
            assert block["text"]["verbatim"] is True


def texts(message: Message) -> str:
    parts = []
    for block in message.blocks:
        for key in ("text",):
            if key in block:
                parts.append(block[key]["text"])
        parts += [f["text"] for f in block.get("fields", [])]
        parts += [e["text"] for e in block.get("elements", [])]
    return "\n".join(parts)


def day(month: int, dom: int) -> dt.date:
    return dt.date(2027, month, dom)


def small_books() -> DigestInputs:
    payment = payment_json(1, amount="7500.00", currency="USD", date=day(4, 1), client_id=5, invoice_id=42)
    payment["client"] = client_json(5, "Acme & Sons <Ltd>")
    return DigestInputs(
        payments=(
            parse_payment(payment),
            parse_payment(payment_json(2, amount="2500.00", currency="USD", date=day(3, 24))),
        ),
        invoices=(
            parse_invoice(
                invoice_json(
                    42,
                    amount="9000.00",
                    outstanding="1500.00",
                    currency="USD",
                    create_date=day(1, 2),
                    due_date=day(2, 1),
                    client="Acme & Sons <Ltd>",
                    number="ACM0042",
                )
            ),
        ),
        bills=(
            parse_bill(bill_json(7, outstanding="300.00", currency="EUR", due_date=day(4, 7), vendor="IKEA")),
        ),
        expenses=(parse_expense(expense_json(3, amount="45.10", currency="USD", date=day(4, 2))),),
    )


def test_a_small_digest_reads_right() -> None:
    period = period_just_ended(NOW, cadence=Cadence.WEEKLY, zone=NEW_YORK)
    message = render_digest(compute(small_books(), period, NOW), CTX)
    assert_within_slack_limits(message)
    assert message.blocks[0] == {
        "type": "header",
        "text": {
            "type": "plain_text",
            "text": "Weekly cash-flow digest: Mar 29 - Apr 4, 2027",
            "emoji": True,
        },
    }
    body = texts(message)
    assert "*USD*\n7,500.00 USD\n▲ 200% (+5,000.00 USD) on 2,500.00 USD the week before" in body
    # Customer text escaped; the invoice linked as the event messages link it.
    assert (
        "7,500.00 USD from Acme &amp; Sons &lt;Ltd&gt; for "
        "<https://my.freshbooks.com/#/invoice/p7rQW5-42|ACM0042>, Apr 1" in body
    )
    assert (
        "<https://my.freshbooks.com/#/invoice/p7rQW5-42|ACM0042> Acme &amp; Sons &lt;Ltd&gt;: "
        "63 days overdue, 1,500.00 USD owed" in body
    )
    assert "*USD*: 1,500.00 USD (1 invoice)\n61-90 days: 1,500.00 USD" in body
    assert "Bills due in the next 7 days: 300.00 EUR" in body
    assert "<https://my.freshbooks.com/#/bill/7|IKEA> 300.00 EUR, due Apr 7" in body
    assert "Uncategorized: 45.10 USD" in body
    assert "Acme & Sons" not in body
    assert message.metadata == {
        "event_type": "fbslack_delivery",
        "event_payload": {"delivery_key": "digest-42"},
    }
    assert message.text.startswith("Weekly cash-flow digest: Mar 29 - Apr 4, 2027. Collected 7,500.00 USD;")


def test_an_empty_business_says_so() -> None:
    period = period_just_ended(NOW, cadence=Cadence.DAILY, zone=NEW_YORK)
    message = render_digest(compute(DigestInputs((), (), (), ()), period, NOW), CTX)
    assert_within_slack_limits(message)
    body = texts(message)
    for words in ("No payments.", "Nothing is owed.", "No expenses.", "none the day before either"):
        assert words in body
    assert message.blocks[0]["text"]["text"] == "Daily cash-flow digest: Apr 4, 2027"


def test_limits_hold_for_forty_currencies_thousands_of_rows_and_long_names() -> None:
    codes = [f"C{n:02d}" for n in range(40)]
    long_name = "Ünïcode & <Co> " * 40
    payments, invoices, bills, expenses = [], [], [], []
    for n in range(2000):
        code = codes[n % 40]
        raw = payment_json(n + 1, amount=f"{n}.99", currency=code, date=day(4, 1 + n % 4), client_id=1)
        raw["client"] = client_json(1, long_name)
        payments.append(parse_payment(raw))
        invoices.append(
            parse_invoice(
                invoice_json(
                    n + 1,
                    amount="123456789.12",
                    outstanding="123456789.12",
                    currency=code,
                    create_date=day(1, 1),
                    due_date=day(1, 1 + n % 28),
                    client=long_name,
                    number=long_name,
                )
            )
        )
        bills.append(
            parse_bill(
                bill_json(
                    n + 1, outstanding="99.00", currency=code, due_date=day(4, 5 + n % 14), vendor=long_name
                )
            )
        )
        raw_expense = expense_json(n + 1, amount="12.00", currency=code, date=day(4, 2), category_id=n)
        raw_expense["category"] = {"category": f"{long_name}{n}", "categoryid": n, "id": n, "parentid": 0}
        expenses.append(parse_expense(raw_expense))
    period = period_just_ended(NOW, cadence=Cadence.WEEKLY, zone=NEW_YORK)
    digest = compute(
        DigestInputs(tuple(payments), tuple(invoices), tuple(bills), tuple(expenses)), period, NOW
    )
    message = render_digest(digest, CTX)
    assert_within_slack_limits(message)
    body = texts(message)
    assert "more currencies, see FreshBooks" in body
    assert "… and " in body


def test_changes_in_words() -> None:
    before = "the day before"
    assert describe_change(Change(D(150), D(100)), currency="USD", before=before) == (
        "▲ 50% (+50.00 USD) on 100.00 USD the day before"
    )
    assert describe_change(Change(D("66.5"), D(100)), currency="EUR", before=before) == (
        "▼ 34% (-33.50 EUR) on 100.00 EUR the day before"
    )
    assert describe_change(Change(D(3), D(0)), currency=None, before=before) == "▲ from none the day before"
    assert (
        describe_change(Change(D(0), D(2)), currency=None, before=before) == "▼ 100% (-2) on 2 the day before"
    )
    assert describe_change(Change(D(4), D(4)), currency=None, before=before) == "same as the day before"
    assert describe_change(Change(D(0), D(0)), currency=None, before=before) == "none the day before either"


def test_period_labels() -> None:
    new_year = period_just_ended(
        dt.datetime(2027, 1, 4, 9, tzinfo=NEW_YORK), cadence=Cadence.WEEKLY, zone=NEW_YORK
    )
    assert period_label(new_year) == "Dec 28, 2026 - Jan 3, 2027"
    assert period_label(new_year.previous()) == "Dec 21 - Dec 27, 2026"
