"""What a message says about one object, per kind: its subject, fields, long texts and link. Pure."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

from connector.domain.events import ObjectKind
from connector.domain.money import Money
from connector.freshbooks.models import Bill, Expense, FreshBooksObject, Invoice, Payment
from connector.pipeline.render.formatting import (
    NAME_MAX,
    PAYMENT_LINES_MAX,
    RenderContext,
    format_date,
    format_money,
    one_line,
    truncate,
    web_url,
)

# -- status words -----------------------------------------------------------------------------

_INVOICE_V3_STATUS: Final = {
    "created": "Created",
    "draft": "Draft",
    "sent": "Sent",
    "viewed": "Viewed",
    "failed": "Payment failed",
    "retry": "Payment retrying",
    "success": "Paid",
    "autopaid": "Auto-paid",
    "paid": "Paid",
    "partial": "Partially paid",
    "disputed": "Disputed",
    "resolved": "Resolved",
    "overdue": "Overdue",
    "deposit-partial": "Deposit partially paid",
    "deposit-paid": "Deposit paid",
    "declined": "Declined",
    "pending": "Pending",
}
_INVOICE_STATUS_CODES: Final = {
    0: "Disputed",
    1: "Draft",
    2: "Sent",
    3: "Viewed",
    4: "Paid",
    5: "Auto-paid",
    6: "Payment retrying",
    7: "Payment failed",
    8: "Partially paid",
}
_PAYMENT_STATUS: Final = {
    "unpaid": "Unpaid",
    "partial": "Partially paid",
    "paid": "Paid",
    "auto-paid": "Auto-paid",
}
_BILL_STATUS: Final = {"unpaid": "Unpaid", "overdue": "Overdue", "partial": "Partially paid", "paid": "Paid"}
# Expense.status: 0 internal, 1 outstanding (billable, not yet invoiced), 2 invoiced, 4 recouped.
_EXPENSE_BILLABLE_STATUS: Final = {1: "not yet invoiced", 2: "invoiced", 4: "recouped"}


def _humanize(code: str) -> str:
    """A status FreshBooks added after this table was written: "deposit-due" -> "Deposit due"."""
    return code.replace("-", " ").replace("_", " ").capitalize()


def invoice_status(invoice: Invoice) -> str | None:
    """v3_status is the most precise; the numeric status and payment_status are fallbacks."""
    if invoice.v3_status:
        word = _INVOICE_V3_STATUS.get(invoice.v3_status) or _humanize(invoice.v3_status)
    elif invoice.status in _INVOICE_STATUS_CODES:
        word = _INVOICE_STATUS_CODES[invoice.status]
    elif invoice.payment_status:
        word = _PAYMENT_STATUS.get(invoice.payment_status) or _humanize(invoice.payment_status)
    else:
        return "Deleted" if invoice.is_deleted else None
    return f"Deleted (was {word})" if invoice.is_deleted else word


def bill_status(bill: Bill) -> str | None:
    word = (_BILL_STATUS.get(bill.status) or _humanize(bill.status)) if bill.status else None
    if bill.is_deleted:
        return f"Deleted (was {word})" if word else "Deleted"
    return word


def expense_billing(expense: Expense) -> str:
    if not expense.billable:
        return "Internal (not billable)"
    state = _EXPENSE_BILLABLE_STATUS.get(expense.status) if expense.status is not None else None
    return f"Billable, {state}" if state else "Billable"


def payment_method(payment: Payment) -> str | None:
    if payment.from_credit:
        return "Client credit"
    if payment.type and payment.gateway:
        return f"{payment.type} via {payment.gateway}"
    return payment.type or payment.gateway


# -- what a message says about one object -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Link:
    label: str
    url: str


@dataclass(frozen=True, slots=True)
class View:
    """One object, described in raw (unescaped) strings; `compose` escapes and fits them."""

    subject: str  # "Invoice ACM0042", "Bill BN101 from IKEA"
    fields: tuple[tuple[str, str], ...]  # (label, value), shown as a two-column grid
    sections: tuple[tuple[str, str], ...]  # (label, long text): notes, descriptions, payment lists
    link: Link | None
    deleted: bool


_OPEN: Final = "Open in FreshBooks"
_OPEN_INVOICE: Final = "Open invoice in FreshBooks"


def _known(*pairs: tuple[str, str | None]) -> tuple[tuple[str, str], ...]:
    """The pairs whose value is known: a missing value drops its field rather than showing a dash."""
    return tuple((label, value) for label, value in pairs if value)


def _name(value: str | None) -> str | None:
    return truncate(one_line(value), NAME_MAX) if value else None


def _money(value: Money | None) -> str | None:
    return format_money(value) if value is not None else None


def _paid_so_far(value: Money | None) -> str | None:
    return format_money(value) if value is not None and value.amount > 0 else None


def _date(value: dt.date | None) -> str | None:
    return format_date(value) if value is not None else None


def _numbered(noun: str, number: str | None) -> str:
    return f"{noun} {_name(number)}" if number else noun


def _invoice_link(invoice_id: int, ctx: RenderContext, label: str) -> Link:
    return Link(label, web_url(ObjectKind.INVOICE, invoice_id, ctx))


def _describe_invoice(invoice: Invoice, ctx: RenderContext) -> View:
    return View(
        subject=_numbered("Invoice", invoice.number),
        fields=_known(
            ("Client", _name(invoice.client_name)),
            ("Total", format_money(invoice.amount)),
            ("Amount paid", _paid_so_far(invoice.paid)),
            ("Outstanding", _money(invoice.outstanding)),
            ("Status", invoice_status(invoice)),
            ("Due", _date(invoice.due_date)),
        ),
        sections=(),
        link=None if invoice.is_deleted else _invoice_link(invoice.id, ctx, _OPEN),
        deleted=invoice.is_deleted,
    )


def _describe_payment(payment: Payment, ctx: RenderContext) -> View:
    # Invoice number and client name come only with include[]=invoice&include[]=client.
    invoice = payment.invoice
    client = payment.client.display_name if payment.client else None
    if client is None and invoice is not None:
        client = invoice.client_name
    invoice_id = invoice.id if invoice else payment.invoice_id
    invoice_gone = invoice is not None and invoice.is_deleted
    return View(
        subject="Payment",
        fields=_known(
            ("Client", _name(client)),
            ("Amount", format_money(payment.amount)),
            ("Invoice", _name(invoice.number) if invoice else None),
            ("Invoice outstanding", _money(invoice.outstanding) if invoice else None),
            ("Method", _name(payment_method(payment))),
            ("Date", _date(payment.date)),
            ("Status", "Deleted" if payment.is_deleted else None),
        ),
        sections=_known(("Note", payment.note)),
        link=None if invoice_id is None or invoice_gone else _invoice_link(invoice_id, ctx, _OPEN_INVOICE),
        deleted=payment.is_deleted,
    )


def _bill_payment_lines(bill: Bill) -> str | None:
    lines = [
        " · ".join(
            part
            for part in (format_money(p.amount), _name(p.payment_type), _date(p.paid_date))
            if part is not None
        )
        for p in bill.payments[:PAYMENT_LINES_MAX]
    ]
    hidden = len(bill.payments) - PAYMENT_LINES_MAX
    if hidden > 0:
        lines.append(f"… and {hidden} more")
    return "\n".join(f"• {line}" for line in lines) or None


def _describe_bill(bill: Bill, ctx: RenderContext) -> View:
    vendor = _name(bill.vendor_name)
    subject = _numbered("Bill", bill.number)
    return View(
        subject=f"{subject} from {vendor}" if vendor else subject,
        fields=_known(
            ("Total", format_money(bill.total_amount or bill.amount)),
            ("Amount paid", _paid_so_far(bill.paid)),
            ("Outstanding", _money(bill.outstanding)),
            ("Status", bill_status(bill)),
            ("Due", _date(bill.due_date)),
            ("Category", _name(bill.category)),
        ),
        sections=_known(("Description", bill.description), ("Payments", _bill_payment_lines(bill))),
        link=None if bill.is_deleted else Link(_OPEN, web_url(ObjectKind.BILL, bill.id, ctx)),
        deleted=bill.is_deleted,
    )


def _describe_expense(expense: Expense, ctx: RenderContext) -> View:
    vendor = _name(expense.vendor)
    return View(
        subject=f"Expense at {vendor}" if vendor else "Expense",
        fields=_known(
            ("Amount", format_money(expense.amount)),
            ("Category", _name(expense.category)),
            ("Date", _date(expense.date)),
            ("Billing", expense_billing(expense)),
            ("Receipt", "Attached" if expense.has_receipt else "None"),
            ("Status", "Deleted" if expense.is_deleted else None),
        ),
        sections=_known(("Notes", expense.notes)),
        link=None if expense.is_deleted else Link(_OPEN, web_url(ObjectKind.EXPENSE, expense.id, ctx)),
        deleted=expense.is_deleted,
    )


def describe(obj: FreshBooksObject, ctx: RenderContext) -> View:
    match obj:
        case Invoice():
            return _describe_invoice(obj, ctx)
        case Payment():
            return _describe_payment(obj, ctx)
        case Bill():
            return _describe_bill(obj, ctx)
        case Expense():
            return _describe_expense(obj, ctx)


KIND_OF: Final[dict[type, ObjectKind]] = {
    Invoice: ObjectKind.INVOICE,
    Payment: ObjectKind.PAYMENT,
    Bill: ObjectKind.BILL,
    Expense: ObjectKind.EXPENSE,
}
