"""Render stage: typed FreshBooks objects in, Slack messages out (STYLE.md points 2-5).

Pure: no I/O, no clock reads. One renderer per event name in `RENDERERS`; the renderers differ only
in a small `_EventSpec` (marker emoji and verb), and share one description per object kind.

Everything a customer typed (client and vendor names, invoice and bill numbers, notes) is escaped
for mrkdwn and cut to fit Slack's limits *before* escaping, so an escape sequence is never split.
All mrkdwn text objects are `verbatim`, so Slack does not linkify or expand mentions (such as a
client called "@channel") inside customer text.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    MarkdownTextObject,
    SectionBlock,
)

from connector.domain.events import SUPPORTED_EVENTS, ObjectKind
from connector.domain.money import Money
from connector.freshbooks.models import Bill, Expense, FreshBooksObject, Invoice, Payment

# Events the connector computes from state changes (connector.pipeline.enrich.derive); FreshBooks sends
# none of them.
DERIVED_EVENTS: Final = ("invoice.paid", "invoice.partially_paid", "invoice.overdue", "bill.paid")
EVENT_NAMES: tuple[str, ...] = (*SUPPORTED_EVENTS, *DERIVED_EVENTS)

METADATA_EVENT_TYPE: Final = "fbslack_delivery"
# Every "Open in FreshBooks" button carries this action_id. Slack still sends a block_actions
# request for a URL button, so the Bolt app must ack it or the user sees a warning icon.
OPEN_IN_FRESHBOOKS_ACTION_ID: Final = "fbslack_open_in_freshbooks"

# Block Kit limits (reference slack.md §5); slack_sdk validates some of them, not field length.
SECTION_TEXT_MAX: Final = 3000
FIELD_TEXT_MAX: Final = 2000
MAX_FIELDS: Final = 10
MAX_BLOCKS: Final = 50
FALLBACK_TEXT_MAX: Final = 4000
# Tighter, for reading at a glance: a name or number longer than this is cut in titles and fields.
NAME_MAX: Final = 200
# Bill payments listed one per line; the rest are summarised as "... and N more".
PAYMENT_LINES_MAX: Final = 10

ELLIPSIS: Final = "…"
SIMULATED_NOTE: Final = "Simulated with fbslack simulate"

# Community-documented FreshBooks web-UI routes, NOT an official API (reference freshbooks.md §6,
# UNCONFIRMED; the bill route is a guess by analogy): check them against a real account. Payments
# have no page of their own and link to their invoice.
WEB_URLS: Final[dict[ObjectKind, str]] = {
    ObjectKind.INVOICE: "https://my.freshbooks.com/#/invoice/{account_id}-{object_id}",
    ObjectKind.EXPENSE: "https://my.freshbooks.com/#/expense/{object_id}",
    ObjectKind.BILL: "https://my.freshbooks.com/#/bill/{object_id}",
}


class UnknownEvent(ValueError):
    """An event name with no renderer."""


@dataclass(frozen=True, slots=True)
class RenderContext:
    account_id: str  # FreshBooks account id, for links
    delivery_key: str  # opaque id, the ONLY thing put in message metadata
    simulated: bool = False  # sent by `fbslack simulate`: says so, so nobody acts on it


@dataclass(frozen=True, slots=True)
class Message:
    text: str  # plain-text fallback (notifications, screen readers), <= 4000 chars
    blocks: list[dict[str, Any]]
    metadata: dict[str, Any]
    unfurl_links: bool = False
    unfurl_media: bool = False


# -- text helpers -----------------------------------------------------------------------------

_ESCAPES: Final = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def escape(text: str) -> str:
    """Escape Slack's three control characters, so customer text cannot form links or mentions."""
    return "".join(_ESCAPES.get(char, char) for char in text)


def truncate(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, ending in an ellipsis when cut."""
    if len(text) <= limit:
        return text
    return text[: limit - len(ELLIPSIS)].rstrip() + ELLIPSIS


def clip(text: str, limit: int) -> str:
    """`text` escaped for mrkdwn, cut beforehand so the escaped result fits in `limit` characters.

    Cutting the raw text (never the escaped text) keeps every `&amp;` whole.
    """
    escaped = escape(text)
    if len(escaped) <= limit:
        return escaped
    budget = limit - len(ELLIPSIS)
    kept: list[str] = []
    used = 0
    for char in text:
        piece = _ESCAPES.get(char, char)
        if used + len(piece) > budget:
            break
        kept.append(piece)
        used += len(piece)
    return "".join(kept).rstrip() + ELLIPSIS


def one_line(text: str) -> str:
    """Whitespace runs (newlines included) as single spaces: names must not break a bold title."""
    return " ".join(text.split())


def format_money(money: Money) -> str:
    """`7,500.00 USD`: thousands separators, at least two decimals, never rounded, never a float."""
    amount = money.amount
    if amount == 0:
        amount = abs(amount)  # no "-0.00"
    exponent = amount.as_tuple().exponent
    places = max(2, -exponent) if isinstance(exponent, int) else 2
    return f"{amount:,.{places}f} {money.currency}"


_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_date(day: dt.date) -> str:
    """`Dec 1, 2026`, independent of the process locale (strftime's %b is not)."""
    return f"{_MONTHS[day.month - 1]} {day.day}, {day.year}"


def web_url(kind: ObjectKind, object_id: int, ctx: RenderContext) -> str:
    return WEB_URLS[kind].format(account_id=quote(ctx.account_id, safe=""), object_id=object_id)


def metadata(ctx: RenderContext) -> dict[str, Any]:
    """Only the opaque delivery key: message metadata is readable by the whole workspace."""
    return {"event_type": METADATA_EVENT_TYPE, "event_payload": {"delivery_key": ctx.delivery_key}}


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
class _Link:
    label: str
    url: str


@dataclass(frozen=True, slots=True)
class _View:
    """One object, described in raw (unescaped) strings; `_compose` escapes and fits them."""

    subject: str  # "Invoice ACM0042", "Bill BN101 from IKEA"
    fields: tuple[tuple[str, str], ...]  # (label, value), shown as a two-column grid
    sections: tuple[tuple[str, str], ...]  # (label, long text): notes, descriptions, payment lists
    link: _Link | None
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


def _invoice_link(invoice_id: int, ctx: RenderContext, label: str) -> _Link:
    return _Link(label, web_url(ObjectKind.INVOICE, invoice_id, ctx))


def _describe_invoice(invoice: Invoice, ctx: RenderContext) -> _View:
    return _View(
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


def _describe_payment(payment: Payment, ctx: RenderContext) -> _View:
    # Invoice number and client name come only with include[]=invoice&include[]=client.
    invoice = payment.invoice
    client = payment.client.display_name if payment.client else None
    if client is None and invoice is not None:
        client = invoice.client_name
    invoice_id = invoice.id if invoice else payment.invoice_id
    invoice_gone = invoice is not None and invoice.is_deleted
    return _View(
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


def _describe_bill(bill: Bill, ctx: RenderContext) -> _View:
    vendor = _name(bill.vendor_name)
    subject = _numbered("Bill", bill.number)
    return _View(
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
        link=None if bill.is_deleted else _Link(_OPEN, web_url(ObjectKind.BILL, bill.id, ctx)),
        deleted=bill.is_deleted,
    )


def _describe_expense(expense: Expense, ctx: RenderContext) -> _View:
    vendor = _name(expense.vendor)
    return _View(
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
        link=None if expense.is_deleted else _Link(_OPEN, web_url(ObjectKind.EXPENSE, expense.id, ctx)),
        deleted=expense.is_deleted,
    )


def _describe(obj: FreshBooksObject, ctx: RenderContext) -> _View:
    match obj:
        case Invoice():
            return _describe_invoice(obj, ctx)
        case Payment():
            return _describe_payment(obj, ctx)
        case Bill():
            return _describe_bill(obj, ctx)
        case Expense():
            return _describe_expense(obj, ctx)


_KIND_OF: Final[dict[type, ObjectKind]] = {
    Invoice: ObjectKind.INVOICE,
    Payment: ObjectKind.PAYMENT,
    Bill: ObjectKind.BILL,
    Expense: ObjectKind.EXPENSE,
}


# -- composing blocks -------------------------------------------------------------------------


def _mrkdwn(text: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=text, verbatim=True)


def _field(label: str, value: str) -> MarkdownTextObject:
    head = f"*{label}*\n"
    return _mrkdwn(head + clip(value, FIELD_TEXT_MAX - len(head)))


def _section(label: str, body: str) -> SectionBlock:
    head = f"*{label}*\n"
    return SectionBlock(text=_mrkdwn(head + clip(body, SECTION_TEXT_MAX - len(head))))


def _fallback(title: str, fields: Iterable[tuple[str, str]]) -> str:
    """Title and field values, without the long texts. Slack reads it as mrkdwn too: escaped.

    Fits FALLBACK_TEXT_MAX by construction (title about 2 * NAME_MAX, at most MAX_FIELDS values of at
    most NAME_MAX each), so it is never cut after escaping.
    """
    parts = "; ".join(f"{label}: {clip(value, NAME_MAX)}" for label, value in fields)
    return f"{title}. {parts}" if parts else title


def _compose(
    *, emoji: str, subject: str, verb: str, view: _View | None, note: str | None, ctx: RenderContext
) -> Message:
    """The one message layout: title and fields, long texts, a context note, the link button."""
    title = clip(subject, NAME_MAX * 2) + (f" {verb}" if verb else "")
    fields = view.fields[:MAX_FIELDS] if view else ()
    blocks: list[Block] = [
        SectionBlock(
            text=_mrkdwn(f"{emoji} *{title}*"),
            fields=[_field(label, value) for label, value in fields] or None,
        )
    ]
    if view:
        blocks += [_section(label, body) for label, body in view.sections]
    if note:  # our own words, not customer text
        blocks.append(ContextBlock(elements=[_mrkdwn(note)]))
    if ctx.simulated:
        blocks.append(ContextBlock(elements=[_mrkdwn(SIMULATED_NOTE)]))
    if view and view.link:
        button = ButtonElement(
            text=view.link.label, url=view.link.url, action_id=OPEN_IN_FRESHBOOKS_ACTION_ID
        )
        blocks.append(ActionsBlock(elements=[button]))
    # At most 1 + 2 + 2 + 1 blocks, far below MAX_BLOCKS.
    return Message(
        text=_fallback(title, fields) + (f" ({SIMULATED_NOTE})" if ctx.simulated else ""),
        blocks=[block.to_dict() for block in blocks],  # to_dict() runs slack_sdk's validators
        metadata=metadata(ctx),
    )


# -- events -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _EventSpec:
    kind: ObjectKind
    emoji: str  # the marker: the object kind's emoji when it is new, else what happened
    verb: str  # follows the subject: "Invoice ACM0042 paid"


_CREATED_EMOJI: Final = {
    ObjectKind.INVOICE: ":page_facing_up:",
    ObjectKind.PAYMENT: ":moneybag:",
    ObjectKind.BILL: ":receipt:",
    ObjectKind.EXPENSE: ":credit_card:",
}
_UPDATED: Final = ":pencil2:"
_DELETED: Final = ":wastebasket:"
_PAID: Final = ":white_check_mark:"
_PARTIAL: Final = ":hourglass_flowing_sand:"
_OVERDUE: Final = ":warning:"


def _created(kind: ObjectKind, verb: str) -> _EventSpec:
    return _EventSpec(kind, _CREATED_EMOJI[kind], verb)


_SPECS: Final[dict[str, _EventSpec]] = {
    "invoice.create": _created(ObjectKind.INVOICE, "created"),
    "invoice.update": _EventSpec(ObjectKind.INVOICE, _UPDATED, "updated"),
    "invoice.sendByEmail": _EventSpec(ObjectKind.INVOICE, ":email:", "sent to the client by email"),
    "invoice.delete": _EventSpec(ObjectKind.INVOICE, _DELETED, "deleted"),
    "invoice.paid": _EventSpec(ObjectKind.INVOICE, _PAID, "paid"),
    "invoice.partially_paid": _EventSpec(ObjectKind.INVOICE, _PARTIAL, "partially paid"),
    "invoice.overdue": _EventSpec(ObjectKind.INVOICE, _OVERDUE, "is overdue"),
    "payment.create": _created(ObjectKind.PAYMENT, "received"),
    "payment.update": _EventSpec(ObjectKind.PAYMENT, _UPDATED, "updated"),
    "payment.delete": _EventSpec(ObjectKind.PAYMENT, _DELETED, "deleted"),
    # A new bill reads best as just "Bill BN101 from IKEA".
    "bill.create": _created(ObjectKind.BILL, ""),
    "bill.update": _EventSpec(ObjectKind.BILL, _UPDATED, "updated"),
    "bill.delete": _EventSpec(ObjectKind.BILL, _DELETED, "deleted"),
    "bill.paid": _EventSpec(ObjectKind.BILL, _PAID, "paid"),
    "expense.create": _created(ObjectKind.EXPENSE, "recorded"),
    "expense.update": _EventSpec(ObjectKind.EXPENSE, _UPDATED, "updated"),
    "expense.delete": _EventSpec(ObjectKind.EXPENSE, _DELETED, "deleted"),
}

_DELETED_NOTE: Final = f"{_DELETED} Deleted in FreshBooks"


def _gone_note(kind: ObjectKind) -> str:
    return f"FreshBooks no longer returns this {kind}, so its details are unknown."


def _render_event(
    event_name: str, spec: _EventSpec, obj: FreshBooksObject | None, ctx: RenderContext
) -> Message:
    if obj is None:
        # Only a delete may arrive without its object (FreshBooks answered 404 to our GET).
        if not event_name.endswith(".delete"):
            raise TypeError(f"{event_name} needs the {spec.kind} it is about")
        return _compose(
            emoji=spec.emoji,
            subject=spec.kind.capitalize(),
            verb=spec.verb,
            view=None,
            note=_gone_note(spec.kind),
            ctx=ctx,
        )
    if _KIND_OF[type(obj)] is not spec.kind:
        raise TypeError(f"{event_name} renders {spec.kind} objects, got {type(obj).__name__}")
    view = _describe(obj, ctx)
    return _compose(
        emoji=spec.emoji,
        subject=view.subject,
        verb=spec.verb,
        view=view,
        note=_DELETED_NOTE if view.deleted else None,
        ctx=ctx,
    )


def _renderer(event_name: str) -> Callable[[FreshBooksObject | None, RenderContext], Message]:
    spec = _SPECS[event_name]

    def render_one(obj: FreshBooksObject | None, ctx: RenderContext) -> Message:
        return _render_event(event_name, spec, obj, ctx)

    render_one.__name__ = render_one.__qualname__ = f"render_{event_name.replace('.', '_')}"
    return render_one


RENDERERS: dict[str, Callable[[FreshBooksObject | None, RenderContext], Message]] = {
    name: _renderer(name) for name in EVENT_NAMES
}


def render(event_name: str, obj: FreshBooksObject | None, ctx: RenderContext) -> Message:
    """The Slack message for one event about `obj` (None: a deleted object FreshBooks no longer returns)."""
    try:
        renderer = RENDERERS[event_name]
    except KeyError:
        raise UnknownEvent(f"no renderer for event {event_name!r}") from None
    return renderer(obj, ctx)


# -- thread cards -----------------------------------------------------------------------------

# The card's marker shows the current state at a glance; its thread holds the history.
_CARD_EMOJI_BY_STATUS: Final = {
    "paid": _PAID,
    "autopaid": _PAID,
    "success": _PAID,
    "partial": _PARTIAL,
    "overdue": _OVERDUE,
}


def _card_emoji(obj: Invoice | Bill) -> str:
    if obj.is_deleted:
        return _DELETED
    status = obj.v3_status if isinstance(obj, Invoice) else obj.status
    return _CARD_EMOJI_BY_STATUS.get(status or "", _CREATED_EMOJI[_KIND_OF[type(obj)]])


def render_card(obj: Invoice | Bill, ctx: RenderContext) -> Message:
    """The first message about an invoice or bill in a channel, later updated in place to show
    its current status and outstanding balance; event messages follow in its thread."""
    view = _describe(obj, ctx)
    return _compose(
        emoji=_card_emoji(obj),
        subject=view.subject,
        verb="",
        view=view,
        note=_DELETED_NOTE if view.deleted else None,
        ctx=ctx,
    )
