"""What a fetched object means, compared with what we knew before. Pure: typed objects in, facts out.

FreshBooks has no "paid" or "overdue" event and sends `invoice.update` for many changes nobody
needs to hear about (reference §4, §10 gotcha 5). These functions decide which events are worth a
message and which events to derive from the state change itself.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from connector.domain.events import ObjectKind
from connector.freshbooks.models import Bill, FreshBooksObject, Invoice, Payment


@dataclass(frozen=True, slots=True)
class Derived:
    """An event computed from state: `object` is the object it is about (an invoice for a payment)."""

    name: str
    kind: ObjectKind
    object: Invoice | Bill


def _outstanding(invoice: Invoice) -> object:
    return invoice.outstanding.amount if invoice.outstanding else None


def invoice_is_material_change(previous: Invoice | None, current: Invoice) -> bool:
    """Would a person care? Status, amount, outstanding balance or due date changed."""
    if previous is None:
        return True  # nothing to compare with: say it
    return (
        previous.v3_status != current.v3_status
        or previous.status != current.status
        or previous.amount != current.amount
        or _outstanding(previous) != _outstanding(current)
        or previous.due_date != current.due_date
        or previous.is_deleted != current.is_deleted
    )


def is_notable(event_name: str, previous: FreshBooksObject | None, current: FreshBooksObject | None) -> bool:
    if event_name == "invoice.update" and isinstance(current, Invoice):
        return invoice_is_material_change(previous if isinstance(previous, Invoice) else None, current)
    return True


def _invoice_payment_state(previous: Invoice | None, current: Invoice, *, from_payment: bool) -> str | None:
    if current.is_deleted or current.outstanding is None or current.amount.amount <= 0:
        return None
    now_due = current.outstanding.amount
    if previous is None:
        # With no earlier state only a payment tells us money just came in.
        if not from_payment:
            return None
        if now_due == 0:
            return "invoice.paid"
        return "invoice.partially_paid" if now_due < current.amount.amount else None
    before = previous.outstanding.amount if previous.outstanding else current.amount.amount
    if before > 0 and now_due == 0:
        return "invoice.paid"
    if 0 < now_due < before:
        return "invoice.partially_paid"
    return None


def _bill_payment_state(previous: Bill | None, current: Bill, event_name: str) -> str | None:
    if current.is_deleted or current.status != "paid":
        return None
    if previous is None:
        return "bill.paid" if event_name == "bill.update" else None
    return "bill.paid" if previous.status != "paid" else None


def derive(
    event_name: str,
    current: FreshBooksObject | None,
    previous: FreshBooksObject | None,
    previous_invoice: Invoice | None,
) -> list[Derived]:
    """Events implied by the change from `previous` to `current`.

    `previous_invoice` is our last state of the invoice a payment is for (payments are fetched
    with their invoice included, so a payment can reveal that its invoice is now paid).
    """
    if isinstance(current, Invoice):
        name = _invoice_payment_state(
            previous if isinstance(previous, Invoice) else None, current, from_payment=False
        )
        return [Derived(name, ObjectKind.INVOICE, current)] if name else []
    if isinstance(current, Payment) and current.invoice is not None and not current.is_deleted:
        name = _invoice_payment_state(previous_invoice, current.invoice, from_payment=True)
        return [Derived(name, ObjectKind.INVOICE, current.invoice)] if name else []
    if isinstance(current, Bill):
        name = _bill_payment_state(previous if isinstance(previous, Bill) else None, current, event_name)
        return [Derived(name, ObjectKind.BILL, current)] if name else []
    return []


def is_overdue(invoice: Invoice, today: dt.date) -> bool:
    """Open (money still owed, not deleted, not a draft) and past its due date."""
    if invoice.is_deleted or invoice.due_date is None or invoice.outstanding is None:
        return False
    if invoice.v3_status in ("draft", "created") or invoice.status == 1:
        return False
    return invoice.outstanding.amount > 0 and invoice.due_date < today


def is_newer(candidate: FreshBooksObject, known: FreshBooksObject | None) -> bool:
    """Webhooks arrive out of order: only a newer (or equally new) version replaces what we know."""
    if known is None or known.updated is None or candidate.updated is None:
        return True
    return candidate.updated >= known.updated
