"""Render helpers every message shares: Slack's limits, the render context, escaping, money, dates, links.

Pure. Customer text is cut to fit *before* escaping, so an escape sequence is never split.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

from connector.domain.events import ObjectKind
from connector.domain.money import Money

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
