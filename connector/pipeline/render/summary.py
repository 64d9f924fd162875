"""Burst summaries: many events for one channel in one message, the rest in its thread.

Pure. A summary's first message says what happened ("12 invoices created · 48,300.00 USD", one
total per currency, never adding currencies) and lists each item (number, client or vendor,
amount, link); what does not fit Slack's limits (50 blocks, 3000 characters a section, and a
total well under the ~13,000 characters at which Slack answers msg_blocks_too_long) is listed
in replies in its thread, page by page (`paginate`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from slack_sdk.models.blocks import Block, ContextBlock, MarkdownTextObject, SectionBlock

from connector.domain.events import EVENTS, ObjectKind
from connector.domain.money import Money
from connector.freshbooks.models import Bill, Expense, FreshBooksObject, Invoice, Payment
from connector.pipeline.render.descriptions import describe
from connector.pipeline.render.formatting import (
    FALLBACK_TEXT_MAX,
    MAX_BLOCKS,
    SECTION_TEXT_MAX,
    SIMULATED_NOTE,
    Message,
    RenderContext,
    clip,
    format_money,
    metadata,
    one_line,
    truncate,
)
from connector.pipeline.render.messages import verb_of

SUMMARY_EMOJI: Final = ":bookmark_tabs:"
# Characters of item lines per message: with the head and the JSON around them, far from the
# ~13,000 at which Slack refuses a message of mixed blocks (slack-files-and-scheduling.md §8).
PAGE_CHARS: Final = 9000
# Item-line sections per message (each at most SECTION_TEXT_MAX), leaving room for the head.
PAGE_SECTIONS: Final = MAX_BLOCKS - 5
ITEM_NAME_MAX: Final = 80  # a client or vendor name in an item line
ITEM_LINE_MAX: Final = 400


@dataclass(frozen=True, slots=True)
class Item:
    """One delivery listed in a summary."""

    event_name: str
    obj: FreshBooksObject | None
    simulated: bool = False


_PLURALS: Final = {
    ObjectKind.INVOICE: "invoices",
    ObjectKind.PAYMENT: "payments",
    ObjectKind.BILL: "bills",
    ObjectKind.EXPENSE: "expenses",
}


def amount_of(obj: FreshBooksObject | None) -> Money | None:
    """The amount an item line shows and the headline adds up (per currency)."""
    match obj:
        case Invoice() | Payment() | Expense():
            return obj.amount
        case Bill():
            return obj.total_amount or obj.amount
    return None


def _counterparty(obj: FreshBooksObject | None) -> str | None:
    match obj:
        case Invoice():
            return obj.client_name
        case Payment():
            if obj.client is not None:
                return obj.client.display_name
            return obj.invoice.client_name if obj.invoice is not None else None
    return None  # a bill's vendor and an expense's are in their subject already


def _noun(event_name: str, count: int) -> str:
    kind = EVENTS[event_name].kind
    return _PLURALS[kind] if count != 1 else str(kind)


def headline(items: Sequence[Item]) -> str:
    """ "12 invoices created · 48,300.00 USD": per event, in order of first appearance, with one
    total per currency (sorted by code). Different events are never added together."""
    groups: dict[str, list[Item]] = {}
    for item in items:
        groups.setdefault(item.event_name, []).append(item)
    parts = []
    for name, group in groups.items():
        verb = verb_of(name)
        totals: dict[str, Decimal] = defaultdict(Decimal)
        for item in group:
            money = amount_of(item.obj)
            if money is not None:
                totals[money.currency] += money.amount
        words = " ".join(w for w in (str(len(group)), _noun(name, len(group)), verb) if w)
        sums = [format_money(Money(totals[code], code)) for code in sorted(totals)]
        parts.append(" · ".join([words, *sums]))
    return "; ".join(parts)


def _subject(item: Item, ctx: RenderContext) -> str:
    if item.obj is None:
        return f"{str(EVENTS[item.event_name].kind).capitalize()} (no longer in FreshBooks)"
    return clip(one_line(describe(item.obj, ctx).subject), ITEM_NAME_MAX)


def item_line(item: Item, ctx: RenderContext, *, with_verb: bool) -> str:
    """ "• <link|Invoice ACM0042> · Northwind · 7,500.00 USD" (mrkdwn, customer text escaped)."""
    if item.obj is None:
        kind = EVENTS[item.event_name].kind
        subject = clip(f"{str(kind).capitalize()} (no longer in FreshBooks)", ITEM_LINE_MAX)
    else:
        view = describe(item.obj, ctx)
        label = clip(one_line(view.subject), ITEM_NAME_MAX * 2)
        subject = f"<{view.link.url}|{label}>" if view.link else label
    parts = [subject]
    counterparty = _counterparty(item.obj)
    if counterparty:
        parts.append(clip(one_line(counterparty), ITEM_NAME_MAX))
    money = amount_of(item.obj)
    if money is not None:
        parts.append(format_money(money))
    verb = verb_of(item.event_name)
    if with_verb and verb:
        parts.append(f"_{verb}_")
    if item.simulated:
        parts.append("(simulated)")
    return truncate("• " + " · ".join(parts), ITEM_LINE_MAX)


def _sections(lines: Sequence[str]) -> list[list[str]]:
    """Lines grouped into sections of at most SECTION_TEXT_MAX characters."""
    sections: list[list[str]] = []
    size = 0
    for line in lines:
        if sections and size + 1 + len(line) <= SECTION_TEXT_MAX:
            sections[-1].append(line)
            size += 1 + len(line)
        else:
            sections.append([line])
            size = len(line)
    return sections


def paginate(lines: Sequence[str]) -> list[list[int]]:
    """Indexes of `lines`, split into messages that each fit PAGE_CHARS and PAGE_SECTIONS."""
    pages: list[list[int]] = []
    chars = 0
    for index, line in enumerate(lines):
        if pages:
            candidate = [lines[i] for i in pages[-1]] + [line]
            if chars + len(line) + 1 <= PAGE_CHARS and len(_sections(candidate)) <= PAGE_SECTIONS:
                pages[-1].append(index)
                chars += len(line) + 1
                continue
        pages.append([index])
        chars = len(line)
    return pages


def _mrkdwn(text: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=text, verbatim=True)


def render_summary(
    items: Sequence[Item], *, total: Sequence[Item], ctx: RenderContext, continued: bool
) -> Message:
    """One message of a summary: `items` are the ones it lists, `total` all the summary covers
    (the headline counts them). `continued`: a reply in the summary's thread with more of them.
    `ctx.delivery_key` is the message's own metadata key."""
    with_verb = len({item.event_name for item in total}) > 1
    lines = [item_line(item, ctx, with_verb=with_verb) for item in items]
    head = headline(total)
    blocks: list[Block] = []
    if continued:
        blocks.append(
            ContextBlock(elements=[_mrkdwn(f"Continued: {len(items)} more of the {clip(head, 500)}")])
        )
    else:
        blocks.append(SectionBlock(text=_mrkdwn(f"{SUMMARY_EMOJI} *{clip(head, SECTION_TEXT_MAX - 40)}*")))
        rest = len(total) - len(items)
        where = f"; {rest} more in the thread" if rest > 0 else ""
        note = f"A burst of {len(total)} updates at once, summarised in one message{where}."
        blocks.append(ContextBlock(elements=[_mrkdwn(note)]))
    blocks += [SectionBlock(text=_mrkdwn("\n".join(section))) for section in _sections(lines)]
    if any(item.simulated for item in items):
        blocks.append(ContextBlock(elements=[_mrkdwn(SIMULATED_NOTE)]))
    # The fallback text (notifications, screen readers, the demo) names what it lists, too.
    text = (
        ("Continued: " if continued else "") + head + ": " + ", ".join(_subject(item, ctx) for item in items)
    )
    return Message(
        text=truncate(text, FALLBACK_TEXT_MAX),
        blocks=[block.to_dict() for block in blocks],
        metadata=metadata(ctx),
    )
