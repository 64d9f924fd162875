"""Render stage: fixture in, exact Slack message out; plus the helpers and the escaping guarantees.

Goldens live in tests/fixtures/freshbooks/<event>__<variant>.json. After a deliberate change to the
messages, regenerate them with `UPDATE_GOLDENS=1 pytest tests/pipeline/render/test_render.py` and review
the diff.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import os
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slack_sdk.models.blocks import Block

from connector.domain.events import ALL_EVENT_NAMES, CATALOGUE, ObjectKind
from connector.domain.money import Money
from connector.freshbooks.models import (
    Bill,
    Expense,
    FreshBooksObject,
    Invoice,
    Payment,
    parse_bill,
    parse_expense,
    parse_invoice,
    parse_object,
    parse_payment,
)
from connector.pipeline.render import descriptions
from connector.pipeline.render import formatting as r
from connector.pipeline.render.cards import render_card
from connector.pipeline.render.formatting import Message, RenderContext
from connector.pipeline.render.messages import RENDERERS, UnknownEvent, render
from tests.support.paths import FIXTURES as FIXTURES_DIR

FIXTURE_DIR = FIXTURES_DIR / "freshbooks"
FIXTURES = sorted(FIXTURE_DIR.glob("*.json"))
UPDATE_GOLDENS = os.environ.get("UPDATE_GOLDENS") == "1"
CTX = RenderContext(account_id="ACM123", delivery_key="dlv_test_0001")
# An escape-safe mrkdwn string: no bare < or >, and every & starts one of Slack's three escapes.
UNSAFE = re.compile(r"[<>]|&(?!amp;|lt;|gt;)")


def _event_of(path: Path) -> str:
    return path.stem.split("__", 1)[0]


def _load(path: Path) -> tuple[FreshBooksObject | None, RenderContext, dict[str, Any] | None]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    event = _event_of(path)
    raw = doc["object"]
    obj = None if raw is None else parse_object(ObjectKind(event.split(".", 1)[0]), raw)
    return obj, RenderContext(**doc["context"]), doc["expected"]


def _as_expected(message: Message) -> dict[str, Any]:
    return {"text": message.text, "blocks": message.blocks, "metadata": message.metadata}


def _mrkdwn_texts(blocks: list[dict[str, Any]]) -> list[str]:
    """Every mrkdwn text in the blocks (section text and fields, context elements)."""
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn":
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(blocks)
    return found


def assert_valid_message(message: Message, ctx: RenderContext) -> None:
    assert 1 <= len(message.blocks) <= r.MAX_BLOCKS
    assert len(message.text) <= r.FALLBACK_TEXT_MAX
    assert message.metadata == {
        "event_type": "fbslack_delivery",
        "event_payload": {"delivery_key": ctx.delivery_key},
    }
    assert (message.unfurl_links, message.unfurl_media) == (False, False)
    for raw in message.blocks:
        block = Block.parse(raw)
        assert block is not None, raw
        assert block.to_dict() == raw  # to_dict() runs slack_sdk's validators
        if raw["type"] == "section":
            assert len(raw.get("text", {}).get("text", "")) <= r.SECTION_TEXT_MAX
            assert len(raw.get("fields", [])) <= r.MAX_FIELDS
            assert all(len(field["text"]) <= r.FIELD_TEXT_MAX for field in raw.get("fields", []))
    for text in [message.text, *_mrkdwn_texts(message.blocks)]:
        assert not UNSAFE.search(text), text


# -- goldens ----------------------------------------------------------------------------------


def test_every_event_has_a_fixture_and_every_fixture_an_event() -> None:
    covered = {_event_of(path) for path in FIXTURES}
    assert sorted(set(ALL_EVENT_NAMES) - covered) == [], "events without a fixture"
    assert sorted(covered - set(ALL_EVENT_NAMES)) == [], "fixtures for events the app does not render"
    assert all("__" in path.stem for path in FIXTURES), "fixture names are <event>__<variant>.json"


def test_every_catalogue_event_has_a_renderer_and_every_renderer_an_event() -> None:
    keys = [spec.renderer for spec in CATALOGUE]
    assert sorted(set(keys) - set(RENDERERS)) == [], "catalogue events without a renderer"
    assert sorted(set(RENDERERS) - set(keys)) == [], "renderers no catalogue event uses"
    assert RENDERERS["invoice_paid"].__name__ == "render_invoice_paid"


@pytest.mark.parametrize("path", FIXTURES, ids=lambda path: path.stem)
def test_golden(path: Path) -> None:
    obj, ctx, expected = _load(path)
    message = render(_event_of(path), obj, ctx)
    assert_valid_message(message, ctx)
    actual = _as_expected(message)
    if UPDATE_GOLDENS:
        doc = json.loads(path.read_text(encoding="utf-8"))
        doc["expected"] = actual
        path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return
    if actual != expected:
        diff = difflib.unified_diff(
            json.dumps(expected, indent=2, ensure_ascii=False).splitlines(),
            json.dumps(actual, indent=2, ensure_ascii=False).splitlines(),
            "expected",
            "actual",
            lineterm="",
        )
        pytest.fail(f"{path.name} differs (UPDATE_GOLDENS=1 regenerates):\n" + "\n".join(diff), pytrace=False)


def _golden_blocks(name: str) -> tuple[str, str]:
    """The rendered text and all mrkdwn of one fixture, for targeted checks next to the goldens."""
    path = FIXTURE_DIR / f"{name}.json"
    obj, ctx, _ = _load(path)
    message = render(_event_of(path), obj, ctx)
    return message.text, "\n".join(_mrkdwn_texts(message.blocks))


def test_hostile_client_name_is_escaped_not_lost() -> None:
    text, mrkdwn = _golden_blocks("invoice.create__non_ascii_client")
    assert "Café Zoë &amp; Søns &lt;Ltd&gt;" in mrkdwn
    assert "Café Zoë &amp; Søns &lt;Ltd&gt;" in text
    assert "ZOË-0001" in mrkdwn


def test_long_client_name_is_cut_on_a_character_with_an_ellipsis() -> None:
    obj, ctx, _ = _load(FIXTURE_DIR / "invoice.create__long_client_name.json")
    message = render("invoice.create", obj, ctx)
    client = _field_map(message)["Client"]
    assert client.endswith("&lt;H…")  # cut after a whole "&lt;", never inside one
    assert client.count("&amp;") == client.count("Smith")  # no "&" left bare or half-escaped
    assert _field_map(message)["Total"] == "1,234,567.89 USD"
    assert message.text.endswith(
        "Wesson…; Total: 1,234,567.89 USD; Outstanding: 1,234,567.89 USD; Status: Draft; Due: Dec 1, 2026"
    )


def test_long_description_is_cut_to_the_section_limit() -> None:
    _, mrkdwn = _golden_blocks("bill.update__long_description")
    description = next(t for t in mrkdwn.split("\n*Description*\n")[1:])
    assert description.endswith("…")
    assert "Ström &amp; Söner &lt;AB&gt;" in mrkdwn


def test_deleted_object_keeps_its_details_with_a_marker_and_no_link() -> None:
    obj, ctx, _ = _load(FIXTURE_DIR / "invoice.update__deleted_vis_state.json")
    message = render("invoice.update", obj, ctx)
    mrkdwn = "\n".join(_mrkdwn_texts(message.blocks))
    assert "Deleted in FreshBooks" in mrkdwn
    assert "Deleted (was Sent)" in mrkdwn
    assert "7,500.00 USD" in mrkdwn
    assert all(block["type"] != "actions" for block in message.blocks)


def test_delete_without_an_object_says_only_what_is_known() -> None:
    for kind in ObjectKind:
        message = render(f"{kind}.delete", None, CTX)
        assert_valid_message(message, CTX)
        assert message.text == f"{kind.capitalize()} deleted"
        assert [block["type"] for block in message.blocks] == ["section", "context"]
        assert "fields" not in message.blocks[0]


# -- dispatch errors --------------------------------------------------------------------------


def test_unknown_event_is_refused() -> None:
    with pytest.raises(UnknownEvent, match=r"client\.create"):
        render("client.create", None, CTX)
    assert issubclass(UnknownEvent, ValueError)


def test_a_renderer_refuses_the_wrong_kind_of_object() -> None:
    with pytest.raises(TypeError, match=r"invoice\.paid renders invoice objects, got Bill"):
        render("invoice.paid", _bill(), CTX)


def test_only_deletes_may_arrive_without_their_object() -> None:
    with pytest.raises(TypeError, match=r"payment\.create needs the payment"):
        render("payment.create", None, CTX)


# -- helpers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        ("7500.00", "USD", "7,500.00 USD"),
        ("1234567.89", "CAD", "1,234,567.89 CAD"),
        ("0", "EUR", "0.00 EUR"),
        ("-0.00", "EUR", "0.00 EUR"),
        ("-4.40", "CAD", "-4.40 CAD"),
        ("-12500.5", "GBP", "-12,500.50 GBP"),
        ("999.999", "KWD", "999.999 KWD"),  # three-decimal currency: never rounded away
        ("1500", "JPY", "1,500.00 JPY"),
        ("0.01", "USD", "0.01 USD"),
    ],
)
def test_format_money(amount: str, currency: str, shown: str) -> None:
    assert r.format_money(Money(Decimal(amount), currency)) == shown


def test_format_money_never_goes_through_float() -> None:
    # 0.1 + 0.2 as floats is 0.30000000000000004; as Decimals it is exact.
    assert r.format_money(Money(Decimal("0.1") + Decimal("0.2"), "USD")) == "0.30 USD"
    assert r.format_money(Money(Decimal("12345678901234567890.12"), "USD")) == (
        "12,345,678,901,234,567,890.12 USD"
    )


@pytest.mark.parametrize(
    ("day", "shown"),
    [
        (dt.date(2026, 12, 1), "Dec 1, 2026"),
        (dt.date(2021, 4, 16), "Apr 16, 2021"),
        (dt.date(2024, 1, 31), "Jan 31, 2024"),
        (dt.date(2024, 9, 5), "Sep 5, 2024"),
    ],
)
def test_format_date(day: dt.date, shown: str) -> None:
    assert r.format_date(day) == shown


def test_escape() -> None:
    assert r.escape("Café Zoë & Søns <Ltd>") == "Café Zoë &amp; Søns &lt;Ltd&gt;"
    assert r.escape("&amp;") == "&amp;amp;"  # already-escaped looking text is still customer text
    assert r.escape("<!channel> <@U123|x> <https://evil.example|bank>") == (
        "&lt;!channel&gt; &lt;@U123|x&gt; &lt;https://evil.example|bank&gt;"
    )
    assert r.escape("plain *bold* _it_") == "plain *bold* _it_"


def test_truncate() -> None:
    assert r.truncate("short", 10) == "short"
    assert r.truncate("exactly10!", 10) == "exactly10!"
    assert r.truncate("a long sentence", 8) == "a long…"
    assert len(r.truncate("x" * 5000, 150)) == 150


def test_clip_cuts_before_escaping_and_never_splits_an_escape() -> None:
    assert r.clip("A & B", 20) == "A &amp; B"
    # "AB&CD" escapes to "AB&amp;CD" (9): with 7 allowed, "&amp;" cannot fit whole, so it is dropped.
    assert r.clip("AB&CD", 7) == "AB…"
    assert r.clip("AB&CD", 8) == "AB&amp;…"
    for limit in range(1, 40):
        clipped = r.clip("<&>" * 20, limit)
        assert len(clipped) <= limit
        assert not UNSAFE.search(clipped.removesuffix("…"))


def test_one_line() -> None:
    assert r.one_line("  Acme\n\tWidgets  Ltd ") == "Acme Widgets Ltd"


def test_web_urls_table() -> None:
    ctx = RenderContext(account_id="AB/C 1", delivery_key="k")
    assert r.web_url(ObjectKind.INVOICE, 7, ctx) == "https://my.freshbooks.com/#/invoice/AB%2FC%201-7"
    assert r.web_url(ObjectKind.EXPENSE, 8, ctx) == "https://my.freshbooks.com/#/expense/8"
    assert r.web_url(ObjectKind.BILL, 9, ctx) == "https://my.freshbooks.com/#/bill/9"
    assert ObjectKind.PAYMENT not in r.WEB_URLS  # payments link to their invoice


# -- status words and field choices -----------------------------------------------------------


def _invoice(**raw: Any) -> Invoice:
    return parse_invoice({"id": 5, "amount": {"amount": "10.00", "code": "USD"}, **raw})


def _payment(**raw: Any) -> Payment:
    return parse_payment({"id": 6, "amount": {"amount": "10.00", "code": "USD"}, **raw})


def _bill(**raw: Any) -> Bill:
    return parse_bill({"id": 7, "amount": {"amount": "10.00", "code": "USD"}, **raw})


def _expense(**raw: Any) -> Expense:
    return parse_expense({"id": 8, "amount": {"amount": "10.00", "code": "USD"}, **raw})


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ({"v3_status": "partial", "status": 2}, "Partially paid"),
        ({"v3_status": "deposit-due"}, "Deposit due"),  # one FreshBooks adds later
        ({"status": 7}, "Payment failed"),
        ({"status": 99, "payment_status": "auto-paid"}, "Auto-paid"),
        ({"payment_status": "refunded"}, "Refunded"),
        ({}, None),
        ({"vis_state": 1}, "Deleted"),
        ({"vis_state": 1, "status": 1}, "Deleted (was Draft)"),
    ],
)
def test_invoice_status(raw: dict[str, Any], shown: str | None) -> None:
    assert descriptions.invoice_status(_invoice(**raw)) == shown


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ({"status": "overdue"}, "Overdue"),
        ({"status": "on-hold"}, "On hold"),
        ({}, None),
        ({"vis_state": 1}, "Deleted"),
        ({"vis_state": 1, "status": "unpaid"}, "Deleted (was Unpaid)"),
    ],
)
def test_bill_status(raw: dict[str, Any], shown: str | None) -> None:
    assert descriptions.bill_status(_bill(**raw)) == shown


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ({"clientid": 0, "status": 0}, "Internal (not billable)"),
        ({"clientid": 12, "status": 1}, "Billable, not yet invoiced"),
        ({"clientid": 12, "status": 2}, "Billable, invoiced"),
        ({"clientid": 12, "status": 4}, "Billable, recouped"),
        ({"clientid": 12, "status": 0}, "Billable"),
        ({"clientid": 12}, "Billable"),
    ],
)
def test_expense_billing(raw: dict[str, Any], shown: str) -> None:
    assert descriptions.expense_billing(_expense(**raw)) == shown


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ({"type": "Check"}, "Check"),
        ({"type": "Credit Card", "gateway": "Stripe"}, "Credit Card via Stripe"),
        ({"gateway": "Stripe"}, "Stripe"),
        ({"type": "Credit", "from_credit": True}, "Client credit"),
        ({}, None),
    ],
)
def test_payment_method(raw: dict[str, Any], shown: str | None) -> None:
    assert descriptions.payment_method(_payment(**raw)) == shown


def _field_map(message: Message) -> dict[str, str]:
    fields = message.blocks[0].get("fields", [])
    return dict(field["text"].removeprefix("*").split("*\n", 1) for field in fields)


def test_payment_client_falls_back_to_the_invoice_name() -> None:
    invoice = {
        "id": 40,
        "invoice_number": "INV-1",
        "organization": "Acme",
        "amount": {"amount": "5", "code": "USD"},
    }
    message = render("payment.create", _payment(invoice=invoice), CTX)
    assert _field_map(message)["Client"] == "Acme"


def test_payment_for_a_deleted_invoice_has_no_link() -> None:
    invoice = {"id": 40, "vis_state": 1, "amount": {"amount": "5", "code": "USD"}}
    message = render("payment.delete", _payment(invoice=invoice, vis_state=1), CTX)
    assert all(block["type"] != "actions" for block in message.blocks)
    assert_valid_message(message, CTX)


def test_payment_without_any_invoice_has_no_link() -> None:
    message = render("payment.create", _payment(), CTX)
    assert [block["type"] for block in message.blocks] == ["section"]
    assert message.text == "Payment received. Amount: 10.00 USD"


def test_bill_and_expense_without_number_or_vendor() -> None:
    assert render("bill.create", _bill(), CTX).blocks[0]["text"]["text"] == ":receipt: *Bill*"
    assert (
        render("expense.create", _expense(), CTX).blocks[0]["text"]["text"]
        == ":credit_card: *Expense recorded*"
    )


def test_many_bill_payments_are_summarised() -> None:
    _, mrkdwn = _golden_blocks("bill.paid__many_payments")
    assert mrkdwn.count("• 125.00 CAD · ") == r.PAYMENT_LINES_MAX
    assert "• … and 2 more" in mrkdwn


# -- cards ------------------------------------------------------------------------------------


def _card(obj: Invoice | Bill) -> tuple[Message, str, dict[str, str]]:
    message = render_card(obj, CTX)
    assert_valid_message(message, CTX)
    return message, message.blocks[0]["text"]["text"], _field_map(message)


def _button_url(message: Message) -> str | None:
    actions = [block for block in message.blocks if block["type"] == "actions"]
    return actions[0]["elements"][0]["url"] if actions else None


INVOICE_RAW = {
    "id": 1204417,
    "invoice_number": "ACM0042",
    "current_organization": "Northwind Traders",
    "amount": {"amount": "7500.00", "code": "USD"},
    "outstanding": {"amount": "7500.00", "code": "USD"},
    "paid": {"amount": "0.00", "code": "USD"},
    "due_date": "2026-12-01",
    "status": 2,
    "v3_status": "sent",
}


def test_card_for_a_sent_invoice() -> None:
    message, title, fields = _card(parse_invoice(INVOICE_RAW))
    assert title == ":page_facing_up: *Invoice ACM0042*"
    assert fields == {
        "Client": "Northwind Traders",
        "Total": "7,500.00 USD",
        "Outstanding": "7,500.00 USD",
        "Status": "Sent",
        "Due": "Dec 1, 2026",
    }
    assert _button_url(message) == "https://my.freshbooks.com/#/invoice/ACM123-1204417"
    assert message.text.startswith("Invoice ACM0042. Client: Northwind Traders; Total: 7,500.00 USD;")


def test_card_for_a_partially_paid_invoice() -> None:
    raw = {
        **INVOICE_RAW,
        "outstanding": {"amount": "5000.00", "code": "USD"},
        "paid": {"amount": "2500.00", "code": "USD"},
        "status": 8,
        "v3_status": "partial",
    }
    message, title, fields = _card(parse_invoice(raw))
    assert title == ":hourglass_flowing_sand: *Invoice ACM0042*"
    assert (fields["Amount paid"], fields["Outstanding"], fields["Status"]) == (
        "2,500.00 USD",
        "5,000.00 USD",
        "Partially paid",
    )
    assert fields["Due"] == "Dec 1, 2026"
    assert _button_url(message) == "https://my.freshbooks.com/#/invoice/ACM123-1204417"


def test_card_for_a_paid_invoice() -> None:
    raw = {
        **INVOICE_RAW,
        "outstanding": {"amount": "0.00", "code": "USD"},
        "paid": {"amount": "7500.00", "code": "USD"},
        "status": 4,
        "v3_status": "paid",
    }
    _, title, fields = _card(parse_invoice(raw))
    assert title == ":white_check_mark: *Invoice ACM0042*"
    assert (fields["Outstanding"], fields["Status"]) == ("0.00 USD", "Paid")


def test_card_for_an_overdue_and_a_deleted_invoice() -> None:
    _, title, _ = _card(parse_invoice({**INVOICE_RAW, "v3_status": "overdue"}))
    assert title.startswith(":warning: ")
    message, title, fields = _card(parse_invoice({**INVOICE_RAW, "vis_state": 1}))
    assert title.startswith(":wastebasket: ")
    assert fields["Status"] == "Deleted (was Sent)"
    assert _button_url(message) is None


def test_card_for_a_bill() -> None:
    raw = json.loads((FIXTURE_DIR / "objects" / "bill.json").read_text())
    raw |= {
        "status": "partial",
        "due_date": "2026-12-15",
        "outstanding": {"amount": "1000.00", "code": "CAD"},
        "paid": {"amount": "500.00", "code": "CAD"},
    }
    message, title, fields = _card(parse_bill(raw))
    assert title == ":hourglass_flowing_sand: *Bill BN101 from IKEA*"
    assert fields == {
        "Total": "1,500.00 CAD",
        "Amount paid": "500.00 CAD",
        "Outstanding": "1,000.00 CAD",
        "Status": "Partially paid",
        "Due": "Dec 15, 2026",
        "Category": "Equipment",
    }
    assert _button_url(message) == "https://my.freshbooks.com/#/bill/43221133"
    _, unpaid_title, _ = _card(parse_bill({**raw, "status": "unpaid"}))
    assert unpaid_title.startswith(":receipt: ")


# -- properties -------------------------------------------------------------------------------

customer_text = st.text(
    alphabet=st.one_of(
        st.sampled_from("&<>*_~`@!|\n\t #;é€😀"),
        st.characters(codec="utf-8", exclude_categories=("Cs",)),
    ),
    max_size=6000,
)


@settings(max_examples=150, deadline=None)
@given(name=customer_text, note=customer_text)
def test_arbitrary_customer_text_is_always_escaped_and_within_limits(name: str, note: str) -> None:
    money = {"amount": "1.00", "code": "USD"}
    invoice_raw = {"id": 1, "invoice_number": name, "current_organization": name, "amount": money}
    objects: list[tuple[str, FreshBooksObject]] = [
        ("invoice.create", parse_invoice(invoice_raw)),
        ("payment.create", _payment(note=note, client={"id": 2, "organization": name}, invoice=invoice_raw)),
        ("bill.update", _bill(bill_number=name, vendor={"vendor_name": name}, overall_description=note)),
        ("expense.create", _expense(vendor=name, notes=note)),
    ]
    for event, obj in objects:
        assert_valid_message(render(event, obj, CTX), CTX)
        if isinstance(obj, Invoice | Bill):
            assert_valid_message(render_card(obj, CTX), CTX)
