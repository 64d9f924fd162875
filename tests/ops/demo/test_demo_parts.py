"""The demo's pure parts: the sandbox business, its changes, the stand-in's threads, the command box."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from connector.domain.events import KIND_OF_EVENT, ObjectKind
from connector.domain.settings import load_settings
from connector.freshbooks.models import Bill, Expense, Invoice, Payment, parse_object
from connector.ops.demo import business as books
from connector.ops.demo.client import demo_base, is_demo_address
from connector.ops.demo.page import page_html, render_state
from connector.ops.demo.runtime import (
    CHANNELS,
    demo_environment,
    link_channels,
    slack_credentials_set,
)
from connector.ops.demo.slack_standin import Ephemeral, threaded
from tests.support.live import clock_start

NOW = clock_start()
KINDS = {
    "invoices": ObjectKind.INVOICE,
    "payments": ObjectKind.PAYMENT,
    "bills": ObjectKind.BILL,
    "expenses": ObjectKind.EXPENSE,
}


def _parsed(business: books.Business, change: books.Change) -> object:
    kind = KIND_OF_EVENT[change.event]
    plural = books.PLURALS[kind]
    raw = business.get(plural, change.object_id)
    assert raw is not None, change
    return parse_object(kind, business.with_includes(plural, raw, {"invoice", "client", "category"}, NOW))


def test_the_seeded_books_parse_and_span_three_currencies() -> None:
    business = books.Business.seeded(NOW)
    currencies = set()
    for (plural, _), raw in business.objects.items():
        parsed = parse_object(KINDS[plural], raw)
        currencies.add(parsed.amount.currency)
    assert currencies == {"USD", "CAD", "EUR"}
    assert {plural for plural, _ in business.objects} == set(KINDS)


def test_the_seeded_books_changed_before_the_day_before() -> None:
    """The reconciliation poll reports changes since the connection was made: none of these."""
    business = books.Business.seeded(NOW)
    cutoff = NOW - dt.timedelta(days=1)
    for (plural, _), raw in business.objects.items():
        parsed = parse_object(KINDS[plural], raw)
        assert parsed.updated is not None and parsed.updated < cutoff, (plural, raw)


@pytest.mark.parametrize("action", list(books.ACTIONS))
def test_every_button_makes_webhooks_for_objects_that_parse(action: str) -> None:
    business = books.Business.seeded(NOW)
    _label, make = books.ACTIONS[action]
    changes = make(business, NOW)
    assert changes
    for change in changes:
        assert change.event in KIND_OF_EVENT
        _parsed(business, change)


def test_paid_and_partly_paid_leave_the_invoice_as_freshbooks_would() -> None:
    business = books.Business.seeded(NOW)
    part = business.pay_part(NOW)
    payment = _parsed(business, part[-1])
    assert isinstance(payment, Payment) and payment.invoice is not None
    assert Decimal(0) < payment.invoice.outstanding.amount < payment.invoice.amount.amount  # type: ignore[union-attr]
    assert payment.client is not None and payment.client.organization
    paid = business.pay_invoice(NOW)
    assert [c.event for c in paid] == ["payment.create", "invoice.update"]
    invoice = _parsed(business, paid[-1])
    assert isinstance(invoice, Invoice) and invoice.outstanding is not None
    assert invoice.outstanding.amount == 0 and invoice.v3_status == "paid"


def test_overdue_moves_a_different_open_invoice_past_due_each_time() -> None:
    business = books.Business.seeded(NOW)
    seen = set()
    for _ in range(8):  # more than the open invoices: new ones are made and sent when needed
        change = business.make_overdue(NOW)[-1]
        invoice = _parsed(business, change)
        assert isinstance(invoice, Invoice) and invoice.due_date is not None
        assert invoice.due_date < NOW.date() and invoice.status == 2
        assert change.object_id not in seen  # a repeated webhook body would be dropped as a duplicate
        seen.add(change.object_id)


def test_bill_paid_and_expenses() -> None:
    business = books.Business.seeded(NOW)
    bill = _parsed(business, business.pay_bill(NOW)[-1])
    assert isinstance(bill, Bill) and bill.status == "paid" and bill.payments
    expenses = [_parsed(business, business.create_expense(NOW)[0]) for _ in range(2)]
    assert all(isinstance(e, Expense) and e.category for e in expenses)
    assert {e.billable for e in expenses if isinstance(e, Expense)} == {True, False}


def test_the_burst_is_thirty_new_invoices() -> None:
    business = books.Business.seeded(NOW)
    changes = business.burst(NOW)
    assert len({c.object_id for c in changes}) == 30
    assert {c.event for c in changes} == {"invoice.create"}


def test_a_typed_channel_is_sent_linked_as_slack_sends_it() -> None:
    channels = {name: cid for cid, name in CHANNELS}
    assert link_channels("route invoice #finance min 5,000", channels) == (
        "route invoice <#CDEMOFIN01|finance> min 5,000"
    )
    assert link_channels("route bill #nowhere", channels) == "route bill #nowhere"  # Slack leaves it as typed
    assert link_channels("audit #3", channels) == "audit #3"


def test_threads_are_shown_under_their_parent() -> None:
    messages = [
        {"ts": "1.000001", "text": "card"},
        {"ts": "1.000002", "text": "other"},
        {"ts": "1.000003", "text": "reply", "thread_ts": "1.000001"},
    ]
    shown = threaded(messages)
    assert [m["text"] for m in shown] == ["card", "other"]
    assert [r["text"] for r in shown[0]["replies"]] == ["reply"]


def test_the_page_state_renders_channels_home_and_answers() -> None:
    snapshot = {
        "version": 3,
        "channels": [
            {
                "id": "CDEMOFIN01",
                "name": "finance",
                "is_dm": False,
                "messages": threaded([{"ts": "1.1", "text": "*Invoice* <script>x</script>"}]),
            }
        ],
        "home": {
            "type": "home",
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "Rules"}}],
        },
        "ephemerals": [
            Ephemeral("c1", "command", {"command": "/freshbooks rules", "text": "See <#CDEMOFIN01>"})
        ],
    }
    state = render_state(snapshot)
    assert state["version"] == 3
    assert (
        "<script>x" not in state["channels"][0]["html"] and "<b>Invoice</b>" in state["channels"][0]["html"]
    )
    assert "Rules" in state["home_html"]
    assert "#finance" in state["answers_html"] and "/freshbooks rules" in state["answers_html"]


def test_the_page_has_a_button_per_event_and_no_external_asset() -> None:
    page = page_html()
    for key in books.ACTIONS:
        assert f'id="fire-{key}"' in page
    assert "http://" not in page and "https://" not in page and "src=" not in page


def test_simulate_knows_the_demo_by_the_address_it_prints() -> None:
    assert is_demo_address("http://127.0.0.1:5000/demo/") and is_demo_address("http://127.0.0.1:5000/demo")
    assert not is_demo_address("http://127.0.0.1:5000") and not is_demo_address("https://fb.example.com/x")
    assert demo_base("http://127.0.0.1:5000/demo/") == "http://127.0.0.1:5000"


def test_slack_credentials_are_noticed_in_the_environment_or_the_settings(tmp_path: Path) -> None:
    clean = load_settings({"DATA_DIR": str(tmp_path)})
    assert not slack_credentials_set({}, clean)
    assert not slack_credentials_set({"SLACK_BOT_TOKEN": "  "}, clean)
    assert slack_credentials_set({"SLACK_SIGNING_SECRET": "s"}, clean)
    configured = load_settings(
        {"DATA_DIR": str(tmp_path), "SLACK_SIGNING_SECRET": "s", "SLACK_BOT_TOKEN": "xoxb-1"}
    )
    assert slack_credentials_set({}, configured)


def test_the_demo_app_runs_on_its_own_database_and_credentials(tmp_path: Path) -> None:
    user = load_settings({"DATA_DIR": str(tmp_path), "DATABASE_URL": "sqlite:////somewhere/real.db"})
    env = demo_environment(
        user,
        url="http://127.0.0.1:9",
        database_url="sqlite:///demo.db",
        slack_api_url="http://127.0.0.1:8/api/",
        freshbooks_url="http://127.0.0.1:7",
        bot_token="xoxb-demo",
        signing_secret="s",
    )
    settings = load_settings(env)
    assert settings.resolved_database_url == "sqlite:///demo.db"
    assert settings.slack_api_url.startswith("http://127.0.0.1:8") and settings.host == "127.0.0.1"
    assert settings.freshbooks_api_url == "http://127.0.0.1:7"
