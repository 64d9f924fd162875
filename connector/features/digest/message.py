"""The digest as a Slack message: Block Kit within Slack's limits, and a fallback text. Pure.

Layout: a header; a context line naming the period and what it is compared with; one section per
figure (cash collected, invoiced, receivables, expenses) whose fields hold one currency each; lists
(largest payments, most overdue invoices with links, bills due and overdue, top expense
categories) as short lines; a closing context note. Slack's limits hold by construction: at most
MAX_FIELDS fields per section (currencies past that are counted in the last field), lists of at
most `lines` lines per section, and every text cut to its limit. A total-size guard (Slack
refuses payloads of mixed blocks from about 13,000 characters, slack-files-and-scheduling.md §8)
shortens the lists until the whole fits in TOTAL_CHARS_MAX.

Customer text (client, vendor and category names, invoice and bill numbers) is cut first and
then escaped, and every mrkdwn text is `verbatim`, as in the event messages (pipeline.render).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Final

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from connector.domain.events import ObjectKind
from connector.domain.money import Money
from connector.features.digest.figures import (
    AgeBucket,
    BillDue,
    Change,
    Digest,
    Flow,
    Trend,
)
from connector.features.digest.period import Cadence, Period
from connector.pipeline.render.formatting import (
    FALLBACK_TEXT_MAX,
    FIELD_TEXT_MAX,
    MAX_BLOCKS,
    MAX_FIELDS,
    SECTION_TEXT_MAX,
    Message,
    RenderContext,
    escape,
    format_date,
    format_money,
    metadata,
    one_line,
    truncate,
    web_url,
)

HEADER_TEXT_MAX: Final = 150
CONTEXT_ELEMENTS_MAX: Final = 10
# Under the ~13,200 characters at which Slack was seen to refuse a message of mixed blocks.
TOTAL_CHARS_MAX: Final = 12_000
LIST_LINES: Final = 10  # lines per list, before the total-size guard shortens them
DIGEST_NAME_MAX: Final = 60  # a name in a digest line: enough to recognise it, short enough to scan

_UP: Final = "▲"
_DOWN: Final = "▼"

_AGE_LABELS: Final = {
    AgeBucket.NOT_DUE: "Not yet due",
    AgeBucket.DAYS_1_30: "1-30 days",
    AgeBucket.DAYS_31_60: "31-60 days",
    AgeBucket.DAYS_61_90: "61-90 days",
    AgeBucket.OVER_90: "Over 90 days",
}


# -- words ------------------------------------------------------------------------------------


def _mrkdwn(text: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=text, verbatim=True)


def _name(value: str | None, fallback: str) -> str:
    """Customer text for a digest line: one line, cut, then escaped."""
    return escape(truncate(one_line(value), DIGEST_NAME_MAX)) if value and value.strip() else fallback


def _link(url: str, label: str) -> str:
    return f"<{url}|{label}>"


def _short_date(day: dt.date) -> str:
    return format_date(day).rsplit(",", 1)[0]  # "Dec 4"


def period_label(period: Period) -> str:
    """`Dec 4, 2026` for a day; `Nov 23 - Nov 29, 2026` for a week (years shown when they differ)."""
    if period.cadence is Cadence.DAILY:
        return format_date(period.first_day)
    first, last = period.first_day, period.last_day
    start = format_date(first) if first.year != last.year else _short_date(first)
    return f"{start} - {format_date(last)}"


def _amount(amount: Decimal, currency: str) -> str:
    return format_money(Money(amount, currency))


def _percent(change: Change) -> str:
    percent = change.percent
    if percent is None:
        return ""
    rounded = abs(percent).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return f" {rounded}%"


def describe_change(change: Change, *, currency: str | None, before: str) -> str:
    """`▲ 12% (+5,300.00 USD) on 43,000.00 USD the day before`; counts without a currency. Pure."""

    def value(amount: Decimal) -> str:
        return _amount(amount, currency) if currency else f"{amount:,}"

    if change.trend is Trend.SAME:
        return f"same as {before}" if change.current else f"none {before} either"
    if change.previous == 0:
        return f"{_UP} from none {before}"
    arrow = _UP if change.trend is Trend.UP else _DOWN
    sign = "+" if change.delta > 0 else "-"
    return (
        f"{arrow}{_percent(change)} ({sign}{value(abs(change.delta))}) on {value(change.previous)} {before}"
    )


def _before(period: Period) -> str:
    return "the day before" if period.cadence is Cadence.DAILY else "the week before"


# -- blocks -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Budget:
    lines: int  # list lines per section


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=_mrkdwn(clip_mrkdwn(text, SECTION_TEXT_MAX)))


def clip_mrkdwn(text: str, limit: int) -> str:
    """Our own (already escaped) mrkdwn, cut at a line end to fit `limit`. Pure."""
    if len(text) <= limit:
        return text
    kept = text[: limit - 2].rsplit("\n", 1)[0]
    return kept + "\n…"


def _fields_section(title: str, fields: Sequence[str]) -> SectionBlock:
    """A titled section with at most MAX_FIELDS fields; any more are counted in the last one."""
    shown = list(fields)
    if len(shown) > MAX_FIELDS:
        hidden = len(shown) - (MAX_FIELDS - 1)
        shown = [*shown[: MAX_FIELDS - 1], f"… and {hidden} more currencies, see FreshBooks"]
    return SectionBlock(
        text=_mrkdwn(title),
        fields=[_mrkdwn(clip_mrkdwn(field, FIELD_TEXT_MAX)) for field in shown] or None,
    )


def _list(title: str, lines: Sequence[str], budget: _Budget, empty: str, emoji: str = "") -> SectionBlock:
    head = f"{emoji} *{title}*" if emoji else f"*{title}*"
    if not lines:
        return _section(f"{head}\n{empty}")
    shown = list(lines[: budget.lines])
    if len(lines) > budget.lines:
        shown.append(f"… and {len(lines) - budget.lines} more")
    return _section(f"{head}\n" + "\n".join(f"• {line}" for line in shown))


def _flow_fields(flow: Flow, *, noun: str, before: str) -> list[str]:
    fields = [
        f"*{noun}*\n{flow.count.current:,}\n{describe_change(flow.count, currency=None, before=before)}"
    ]
    for total in flow.totals:
        fields.append(
            f"*{total.currency}*\n{_amount(total.change.current, total.currency)}\n"
            + describe_change(total.change, currency=total.currency, before=before)
        )
    return fields


def _cash(digest: Digest, ctx: RenderContext, budget: _Budget) -> list[Block]:
    before = _before(digest.period)
    lines = []
    for payment in digest.cash.largest:
        label = _name(payment.client, "Unknown client")
        invoice = ""
        if payment.invoice_id is not None:
            number = _name(payment.invoice_number, "invoice")
            invoice = f" for {_link(web_url(ObjectKind.INVOICE, payment.invoice_id, ctx), number)}"
        lines.append(f"{format_money(payment.amount)} from {label}{invoice}, {_short_date(payment.date)}")
    return [
        _fields_section(
            ":moneybag: *Cash collected*", _flow_fields(digest.cash.flow, noun="Payments", before=before)
        ),
        _list("Largest payments", lines, budget, "No payments."),
    ]


def _invoiced(digest: Digest) -> list[Block]:
    before = _before(digest.period)
    return [
        _fields_section(
            ":page_facing_up: *Invoiced*", _flow_fields(digest.invoiced.flow, noun="Invoices", before=before)
        )
    ]


def _receivables(digest: Digest, ctx: RenderContext, budget: _Budget) -> list[Block]:
    fields = []
    for aging in digest.receivables.aging:
        rows = "\n".join(
            f"{_AGE_LABELS[bucket]}: {_amount(amount, aging.currency)}"
            for bucket, amount in aging.buckets
            if amount
        )
        invoices = "invoice" if aging.count == 1 else "invoices"
        fields.append(
            f"*{aging.currency}*: {_amount(aging.total, aging.currency)} ({aging.count} {invoices})\n{rows}"
        )
    lines = []
    for item in digest.receivables.most_overdue:
        number = _name(item.number, "Invoice")
        days = "1 day" if item.days_overdue == 1 else f"{item.days_overdue:,} days"
        lines.append(
            f"{_link(web_url(ObjectKind.INVOICE, item.invoice_id, ctx), number)} "
            f"{_name(item.client, 'Unknown client')}: {days} overdue, {format_money(item.owed)} owed"
        )
    title = ":hourglass_flowing_sand: *Receivables outstanding*"
    if not fields:
        return [_section(f"{title}\nNothing is owed.")]
    return [
        _fields_section(title, fields),
        _list("Most overdue", lines, budget, "Nothing is overdue."),
    ]


def _bill_lines(bills: Sequence[BillDue], ctx: RenderContext) -> list[str]:
    return [
        f"{_link(web_url(ObjectKind.BILL, bill.bill_id, ctx), _name(bill.vendor, 'Unknown vendor'))} "
        f"{format_money(bill.owed)}, due {_short_date(bill.due_date)}"
        for bill in bills
    ]


def _totals(totals: Sequence[Money]) -> str:
    return " · ".join(format_money(money) for money in totals)


def _bills(digest: Digest, ctx: RenderContext, budget: _Budget) -> list[Block]:
    bills = digest.bills
    if not digest.bills_enabled:
        return [_section(":receipt: *Bills*\nBills are not enabled in this FreshBooks account.")]
    soon_title = "Bills due in the next 7 days" + (
        f": {_totals(bills.due_soon_totals)}" if bills.due_soon else ""
    )
    late_title = "Bills overdue" + (f": {_totals(bills.overdue_totals)}" if bills.overdue else "")
    return [
        _list(soon_title, _bill_lines(bills.due_soon, ctx), budget, "None.", ":receipt:"),
        _list(late_title, _bill_lines(bills.overdue, ctx), budget, "None.", ":warning:"),
    ]


def _expenses(digest: Digest, budget: _Budget) -> list[Block]:
    before = _before(digest.period)
    lines = []
    for spend in digest.expenses.by_category:
        for category in spend.top:
            lines.append(
                f"{_name(category.category, 'Uncategorized')}: {_amount(category.amount, spend.currency)}"
            )
        if spend.other_categories:
            lines.append(f"{spend.other_categories} other categories: {_amount(spend.other, spend.currency)}")
    return [
        _fields_section(
            ":credit_card: *Expenses*", _flow_fields(digest.expenses.flow, noun="Expenses", before=before)
        ),
        _list("Top categories", lines, budget, "No expenses."),
    ]


def _header(digest: Digest) -> str:
    kind = "Daily" if digest.period.cadence is Cadence.DAILY else "Weekly"
    return truncate(f"{kind} cash-flow digest: {period_label(digest.period)}", HEADER_TEXT_MAX)


def _context(digest: Digest) -> str:
    local = digest.as_of.astimezone(digest.period.zone)
    return (
        f"{period_label(digest.period)} ({digest.period.zone}), compared with "
        f"{period_label(digest.previous)}. Receivables and bills as of {format_date(local.date())} "
        f"{local:%H:%M}. Amounts are never added across currencies."
    )


def _blocks(digest: Digest, ctx: RenderContext, budget: _Budget) -> list[Block]:
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=_header(digest), emoji=True)),
        ContextBlock(elements=[_mrkdwn(escape(_context(digest)))]),
        *_cash(digest, ctx, budget),
        *_invoiced(digest),
        DividerBlock(),
        *_receivables(digest, ctx, budget),
        *_bills(digest, ctx, budget),
        DividerBlock(),
        *_expenses(digest, budget),
    ]
    if digest.unreadable:
        blocks.append(
            ContextBlock(
                elements=[
                    _mrkdwn(
                        f":warning: {digest.unreadable} objects FreshBooks returned could not be read "
                        "and are left out of these figures."
                    )
                ]
            )
        )
    return blocks


def _fallback(digest: Digest) -> str:
    def money_list(flow: Flow) -> str:
        return (
            ", ".join(_amount(t.change.current, t.currency) for t in flow.totals if t.change.current)
            or "none"
        )

    owed = ", ".join(_amount(a.total, a.currency) for a in digest.receivables.aging) or "nothing"
    text = (
        f"{_header(digest)}. Collected {money_list(digest.cash.flow)}; "
        f"invoiced {money_list(digest.invoiced.flow)}; outstanding {owed}; "
        f"expenses {money_list(digest.expenses.flow)}."
    )
    return escape(truncate(text, FALLBACK_TEXT_MAX - 200))  # escaping our own text adds little


def _size(blocks: list[dict[str, object]]) -> int:
    return len(json.dumps(blocks, ensure_ascii=False))


def render_digest(digest: Digest, ctx: RenderContext) -> Message:
    """The digest as one Slack message; `ctx.delivery_key` goes in its metadata, nothing else."""
    for lines in (LIST_LINES, 5, 3, 1, 0):
        blocks = [block.to_dict() for block in _blocks(digest, ctx, _Budget(lines))]
        if _size(blocks) <= TOTAL_CHARS_MAX:
            break
    assert len(blocks) <= MAX_BLOCKS  # by construction: at most 17
    return Message(text=_fallback(digest), blocks=blocks, metadata=metadata(ctx))
