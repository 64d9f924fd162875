"""Events FreshBooks does not send, and updates nobody needs: derived from fetched state."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from connector.freshbooks.models import parse_bill, parse_invoice
from connector.pipeline.enrich.derive import derive, invoice_is_material_change, is_overdue
from storage.models import Event
from tests.support.builders import invoice_json, money, payment_json
from tests.support.live import FB_ACCOUNT, Live

# Run again by .ci/run from a leap day just before midnight US/Eastern (tests/support/live.py).
pytestmark = pytest.mark.date_sensitive


def recorded(live: Live) -> list[tuple[str, str, str, bool, str]]:
    with live.services.db.session() as session:
        rows = session.scalars(select(Event).order_by(Event.id)).all()
        return [(e.name, e.object_id, e.object_updated, e.notable, e.source) for e in rows]


# -- pure rules -----------------------------------------------------------------------------------


def test_material_change() -> None:
    before = parse_invoice(invoice_json("7500.00", "2026-11-24 09:00:00"))
    touched = parse_invoice(invoice_json("7500.00", "2026-11-24 09:05:00", notes="typo fixed"))
    assert not invoice_is_material_change(before, touched)
    assert invoice_is_material_change(before, parse_invoice(invoice_json("7000.00", "2026-11-24 09:05:00")))
    assert invoice_is_material_change(
        before, parse_invoice(invoice_json("7500.00", "2026-11-24 09:05:00", due_date="2026-12-31"))
    )
    assert invoice_is_material_change(
        before, parse_invoice(invoice_json("7500.00", "2026-11-24 09:05:00", v3_status="viewed"))
    )
    assert invoice_is_material_change(None, touched)


def test_paid_and_partially_paid() -> None:
    open_ = parse_invoice(invoice_json("7500.00", "2026-11-24 09:00:00"))
    half = parse_invoice(invoice_json("3750.00", "2026-11-24 10:00:00"))
    paid = parse_invoice(invoice_json("0.00", "2026-11-24 11:00:00"))
    assert [d.name for d in derive("invoice.update", half, open_, None)] == ["invoice.partially_paid"]
    assert [d.name for d in derive("invoice.update", paid, half, None)] == ["invoice.paid"]
    assert derive("invoice.update", paid, paid, None) == []
    assert derive("invoice.update", paid, None, None) == []  # no earlier state, no payment: no claim


def test_bill_paid() -> None:
    unpaid = parse_bill(
        {"id": 1, "amount": money("10.00"), "status": "unpaid", "updated_at": "2026-11-24 09:00:00"}
    )
    paid = parse_bill(
        {"id": 1, "amount": money("10.00"), "status": "paid", "updated_at": "2026-11-24 10:00:00"}
    )
    assert [d.name for d in derive("bill.update", paid, unpaid, None)] == ["bill.paid"]
    assert derive("bill.update", paid, paid, None) == []
    assert [d.name for d in derive("bill.update", paid, None, None)] == ["bill.paid"]
    assert derive("bill.create", paid, None, None) == []


def test_overdue_rule() -> None:
    today = dt.date(2026, 12, 2)
    assert is_overdue(parse_invoice(invoice_json("10.00", "2026-11-24 09:05:00")), today)
    assert not is_overdue(parse_invoice(invoice_json("0.00", "2026-11-24 09:05:00")), today)
    assert not is_overdue(parse_invoice(invoice_json("10.00", "2026-11-24 09:05:00")), dt.date(2026, 12, 1))
    assert not is_overdue(
        parse_invoice(invoice_json("10.00", "2026-11-24 09:05:00", v3_status="draft", status=1)), today
    )
    assert not is_overdue(parse_invoice(invoice_json("10.00", "2026-11-24 09:05:00", vis_state=1)), today)


@given(
    before=st.decimals(min_value=0, max_value=10_000, places=2),
    after=st.decimals(min_value=0, max_value=10_000, places=2),
)
def test_paid_derivation_is_consistent(before: Decimal, after: Decimal) -> None:
    previous = parse_invoice(invoice_json(f"{min(before, Decimal(7500)):.2f}", "2026-11-24 09:00:00"))
    current = parse_invoice(invoice_json(f"{min(after, Decimal(7500)):.2f}", "2026-11-24 10:00:00"))
    names = [d.name for d in derive("invoice.update", current, previous, None)]
    was, now = previous.outstanding.amount, current.outstanding.amount  # type: ignore[union-attr]
    assert ("invoice.paid" in names) == (was > 0 and now == 0)
    assert ("invoice.partially_paid" in names) == (0 < now < was)
    assert len(names) <= 1


# -- through the pipeline ---------------------------------------------------------------------


def test_payments_derive_partially_paid_then_paid_once(live: Live) -> None:
    live.connect_and_register("invoice.create", "payment.create", "invoice.update")
    fake = live.fake
    fake.add_object(FB_ACCOUNT, "invoices", invoice_json("7500.00", "2026-11-24 09:00:00"))
    fake.deliver(FB_ACCOUNT, "invoice.create", "987654")
    live.services.inbox_worker.run_once()

    fake.add_object(FB_ACCOUNT, "invoices", invoice_json("3750.00", "2026-11-24 10:00:00"))
    fake.add_object(FB_ACCOUNT, "payments", payment_json(1, "3750.00", "2026-11-24 10:00:01"))
    fake.deliver(FB_ACCOUNT, "payment.create", "1")
    live.services.inbox_worker.run_once()

    fake.add_object(FB_ACCOUNT, "invoices", invoice_json("0.00", "2026-11-24 11:00:00"))
    fake.add_object(FB_ACCOUNT, "payments", payment_json(2, "3750.00", "2026-11-24 11:00:01"))
    fake.deliver(FB_ACCOUNT, "payment.create", "2")
    fake.deliver(FB_ACCOUNT, "invoice.update", "987654")  # FreshBooks also says the invoice changed
    live.services.inbox_worker.run_once()

    names = [(name, object_id, source) for name, object_id, _, _, source in recorded(live)]
    assert names == [
        ("invoice.create", "987654", "webhook"),
        ("payment.create", "1", "webhook"),
        ("invoice.partially_paid", "987654", "derived"),
        ("payment.create", "2", "webhook"),
        ("invoice.paid", "987654", "derived"),
        ("invoice.update", "987654", "webhook"),
    ]


def test_an_update_that_changes_nothing_material_is_not_notable(live: Live) -> None:
    live.connect_and_register("invoice.update")
    live.fake.add_object(FB_ACCOUNT, "invoices", invoice_json("7500.00", "2026-11-24 09:00:00"))
    live.fake.deliver(FB_ACCOUNT, "invoice.update", "987654")
    live.services.inbox_worker.run_once()
    live.fake.add_object(FB_ACCOUNT, "invoices", invoice_json("7500.00", "2026-11-24 09:30:00", notes="x"))
    # By someone else: the same person's byte-identical body within 24 h is a repeat (left to the
    # reconciliation poll, see test_pipeline).
    live.fake.deliver(FB_ACCOUNT, "invoice.update", "987654", user_id="2")
    live.services.inbox_worker.run_once()
    assert [notable for *_, notable, _ in recorded(live)] == [True, False]


def test_a_delete_that_404s_reports_what_was_known(live: Live) -> None:
    live.connect_and_register("invoice.create", "invoice.delete")
    live.fake.add_object(FB_ACCOUNT, "invoices", invoice_json("7500.00", "2026-11-24 09:00:00"))
    live.fake.deliver(FB_ACCOUNT, "invoice.create", "987654")
    live.services.inbox_worker.run_once()
    del live.fake.objects[(FB_ACCOUNT, "invoices", "987654")]
    live.fake.deliver(FB_ACCOUNT, "invoice.delete", "987654")
    live.services.inbox_worker.run_once()
    with live.services.db.session() as session:
        deleted = session.scalars(select(Event).where(Event.name == "invoice.delete")).one()
    payload = live.services.cipher.decrypt_json(deleted.object_enc or "")
    assert (payload["invoice_number"], payload["vis_state"]) == ("ACM0042", 1)
    assert deleted.object_updated == "gone"


def test_out_of_order_webhooks_do_not_roll_state_back(live: Live) -> None:
    live.connect_and_register("invoice.update")
    newer = invoice_json("0.00", "2026-11-24 11:00:00")
    live.fake.add_object(FB_ACCOUNT, "invoices", invoice_json("7500.00", "2026-11-24 09:00:00"))
    live.fake.deliver(FB_ACCOUNT, "invoice.update", "987654")
    live.services.inbox_worker.run_once()
    live.fake.add_object(FB_ACCOUNT, "invoices", newer)
    live.fake.deliver(FB_ACCOUNT, "invoice.update", "987654", user_id="2")  # not a repeat: another person
    live.services.inbox_worker.run_once()
    assert "invoice.paid" in [name for name, *_ in recorded(live)]
    from storage import objects

    with live.services.db.session() as session:
        state = objects.get_state(
            session, live.services.cipher, connection_id=1, kind="invoice", object_id="987654"
        )
    assert state is not None and state["outstanding"]["amount"] == "0.00"
