"""`fbslack preview`: one message exactly as it would be posted, with no database, network or account.

The sample object comes from `fbslack simulate`'s pure builders (connector.ops.simulate), is parsed
by the typed models, and is rendered by the renderer delivery uses. A derived event is derived as
the pipeline derives it (connector.pipeline.enrich.derive) from the webhook that reveals it: a
payment for invoice.paid and invoice.partially_paid, a bill update for bill.paid, the overdue
scan's test for invoice.overdue. Pure: `now` is passed in.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Any, Final

from connector.domain.events import ALL_EVENT_NAMES, KIND_OF_EVENT, ObjectKind
from connector.freshbooks.models import EASTERN, FreshBooksObject, Invoice, parse_object
from connector.ops.simulate import (
    MARKER,
    Sample,
    SampleIds,
    parse_amount,
    parse_currency,
    parse_name,
    sample_objects,
)
from connector.pipeline.enrich.derive import derive, is_overdue
from connector.pipeline.render.formatting import Message, RenderContext
from connector.pipeline.render.messages import render

PREVIEW_EVENTS: Final = ALL_EVENT_NAMES
ACCOUNT_ID: Final = "SAMPLE"
DELIVERY_KEY: Final = "preview"
NOTE: Final = "Sample data from fbslack preview"
# Slack's Block Kit Builder opens a payload given URL-encoded after the '#'. Not in the reference
# docs: it is the form bolt-python's own documentation links with, and Laravel's
# SlackMessage::toBlockKitBuilderUrl builds. Without a team in the path it asks which workspace.
BUILDER_URL: Final = "https://app.slack.com/block-kit-builder#"
# Fixed ids, so the same request previews the same message (simulate draws random ones).
IDS: Final = SampleIds(object_id="100042", related_id="100043", party_id="100044")
OVERDUE_BY_DAYS: Final = 14
CENT: Final = Decimal("0.01")

# The webhook event whose sample reveals each derived event.
_SOURCE_OF_DERIVED: Final = {
    "invoice.paid": "payment.create",
    "invoice.partially_paid": "payment.create",
    "invoice.overdue": "invoice.sendByEmail",
    "bill.paid": "bill.update",
}


class PreviewError(ValueError):
    """Input the user can fix; the message says what (and lists the events for an unknown one)."""


@dataclass(frozen=True, slots=True)
class Preview:
    event: str
    message: Message

    def payload(self) -> dict[str, Any]:
        """What delivery passes to chat.postMessage, less the channel and thread."""
        return {
            "text": self.message.text,
            "blocks": self.message.blocks,
            "metadata": self.message.metadata,
            "unfurl_links": self.message.unfurl_links,
            "unfurl_media": self.message.unfurl_media,
        }


def request(
    event: str, *, amount: str | None = None, client: str | None = None, currency: str | None = None
) -> Sample:
    """The command line's words as a Sample, or a PreviewError naming the bad one."""
    if event not in KIND_OF_EVENT:
        raise PreviewError(f"unknown event {event[:64]!r}; events: {', '.join(PREVIEW_EVENTS)}")
    try:
        parsed_amount = parse_amount(amount) if amount is not None else None
        party = parse_name(client) if client is not None else None
        code = parse_currency(currency) if currency is not None else None
    except ValueError as exc:
        raise PreviewError(str(exc)) from None
    source = Sample.of(_SOURCE_OF_DERIVED.get(event, event), amount=parsed_amount, party=party, currency=code)
    if event == "invoice.partially_paid" and _part(source.amount) == 0:
        raise PreviewError(f"an invoice of {source.amount} {source.currency} cannot be partly paid")
    return Sample(event=event, amount=source.amount, party=source.party, currency=source.currency)


def _part(total: Decimal) -> Decimal:
    """What a partial payment pays of `total`: half, to the cent below."""
    return (total / 2).quantize(CENT, rounding=ROUND_DOWN)


def _noted(value: Any) -> Any:
    """`value` with simulate's marker replaced by ours wherever a note or description holds it."""
    if value == MARKER:
        return NOTE
    if isinstance(value, dict):
        return {key: _noted(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_noted(item) for item in value]
    return value


def _raw(event: str, sample: Sample, now: dt.datetime) -> list[dict[str, Any]]:
    """simulate's sample objects for `event` (a webhook event): the object first, then what it embeds."""
    webhook = Sample(event=event, amount=sample.amount, party=sample.party, currency=sample.currency)
    return [_noted(item.raw) for item in sample_objects(webhook, IDS, account_id=ACCOUNT_ID, now=now)]


def _money(amount: Decimal, currency: str) -> dict[str, str]:
    return {"amount": f"{amount:.2f}", "code": currency}


def _parse(kind: ObjectKind, raw: dict[str, Any]) -> FreshBooksObject:
    return parse_object(kind, raw)


def _derived(
    event: str,
    source: str,
    current: FreshBooksObject,
    previous: FreshBooksObject | None,
    previous_invoice: Invoice | None,
) -> FreshBooksObject:
    found = [d for d in derive(source, current, previous, previous_invoice) if d.name == event]
    if not found:  # the sample no longer reveals the event: a bug here, not the user's input
        raise AssertionError(f"the {source} sample does not derive {event}")
    return found[0].object


def _invoice_paid(sample: Sample, now: dt.datetime) -> FreshBooksObject:
    payment_raw = _raw("payment.create", sample, now)[0]
    # Our last state of the invoice: sent, nothing paid yet (the payment's include shows it after).
    unpaid = _parse(
        ObjectKind.INVOICE,
        payment_raw["invoice"]
        | {
            "outstanding": _money(sample.amount, sample.currency),
            "paid": _money(Decimal(0), sample.currency),
            "status": 2,
            "v3_status": "sent",
            "display_status": "sent",
            "payment_status": "unpaid",
            "date_paid": None,
        },
    )
    assert isinstance(unpaid, Invoice)
    if sample.event == "invoice.partially_paid":
        part = _part(sample.amount)
        payment_raw["amount"] = _money(part, sample.currency)
        payment_raw["invoice"] |= {
            "paid": _money(part, sample.currency),
            "outstanding": _money(sample.amount - part, sample.currency),
            "status": 8,
            "v3_status": "partial",
            "display_status": "partial",
            "payment_status": "partial",
            "date_paid": None,
        }
    payment = _parse(ObjectKind.PAYMENT, payment_raw)
    return _derived(sample.event, "payment.create", payment, None, unpaid)


def _bill_paid(sample: Sample, now: dt.datetime) -> FreshBooksObject:
    unpaid_raw = _raw("bill.update", sample, now)[0]
    today = now.astimezone(EASTERN).date()
    paid_raw = unpaid_raw | {
        "status": "paid",
        "outstanding": _money(Decimal(0), sample.currency),
        "paid": _money(sample.amount, sample.currency),
        "bill_payments": [
            {
                "id": 1,
                "billid": int(IDS.object_id),
                "amount": _money(sample.amount, sample.currency),
                "paid_date": today.isoformat(),
                "payment_type": "Bank Transfer",
                "note": None,
                "vis_state": 0,
            }
        ],
    }
    unpaid = _parse(ObjectKind.BILL, unpaid_raw)
    return _derived("bill.paid", "bill.update", _parse(ObjectKind.BILL, paid_raw), unpaid, None)


def _invoice_overdue(sample: Sample, now: dt.datetime) -> FreshBooksObject:
    today = now.astimezone(EASTERN).date()
    raw = _raw("invoice.sendByEmail", sample, now)[0]
    raw["create_date"] = (today - dt.timedelta(days=30 + OVERDUE_BY_DAYS)).isoformat()
    raw["due_date"] = (today - dt.timedelta(days=OVERDUE_BY_DAYS)).isoformat()
    invoice = _parse(ObjectKind.INVOICE, raw)
    assert isinstance(invoice, Invoice)
    if not is_overdue(invoice, today):  # what the overdue scan asks before it records the event
        raise AssertionError("the overdue sample is not overdue")
    return invoice


_DERIVED: Final[dict[str, Callable[[Sample, dt.datetime], FreshBooksObject]]] = {
    "invoice.paid": _invoice_paid,
    "invoice.partially_paid": _invoice_paid,
    "invoice.overdue": _invoice_overdue,
    "bill.paid": _bill_paid,
}


def sample_object(sample: Sample, now: dt.datetime) -> FreshBooksObject:
    """The typed object the event's message is about, as the pipeline would hand it to render."""
    builder = _DERIVED.get(sample.event)
    if builder is not None:
        return builder(sample, now)
    return _parse(KIND_OF_EVENT[sample.event], _raw(sample.event, sample, now)[0])


def preview(sample: Sample, now: dt.datetime) -> Preview:
    """The message delivery would post for the sample event (no thread: a channel's first message)."""
    ctx = RenderContext(account_id=ACCOUNT_ID, delivery_key=DELIVERY_KEY)
    return Preview(sample.event, render(sample.event, sample_object(sample, now), ctx))


def builder_url(blocks: list[dict[str, Any]]) -> str:
    """A link that opens `blocks` in Slack's Block Kit Builder."""
    doc = json.dumps({"blocks": blocks}, separators=(",", ":"), ensure_ascii=False)
    return BUILDER_URL + urllib.parse.quote(doc, safe="")


def format_json(result: Preview) -> str:
    return json.dumps(result.payload(), indent=2, ensure_ascii=False)


def format_text(result: Preview) -> str:
    """For a person: the fallback text, the Block Kit JSON and the Builder link."""
    blocks = json.dumps({"blocks": result.message.blocks}, indent=2, ensure_ascii=False)
    return (
        f"{result.event}, as it would be posted (sample data, nothing was sent)\n\n"
        f"Fallback text (notifications, screen readers):\n{result.message.text}\n\n"
        f"Block Kit JSON:\n{blocks}\n\n"
        f"Open it in Slack's Block Kit Builder:\n{builder_url(result.message.blocks)}"
    )
