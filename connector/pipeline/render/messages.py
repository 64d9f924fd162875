"""Event messages: typed FreshBooks objects in, Slack messages out (STYLE.md points 2-5).

Pure: no I/O, no clock reads. One renderer per event name in `RENDERERS`; the renderers differ only
in a small `_EventSpec` (marker emoji and verb), share one description per object kind
(render.descriptions) and one layout, `compose`, which thread cards (render.cards) use too.

Everything a customer typed (client and vendor names, invoice and bill numbers, notes) is escaped
for mrkdwn and cut to fit Slack's limits *before* escaping, so an escape sequence is never split.
All mrkdwn text objects are `verbatim`, so Slack does not linkify or expand mentions (such as a
client called "@channel") inside customer text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    MarkdownTextObject,
    SectionBlock,
)

from connector.domain.events import SUPPORTED_EVENTS, ObjectKind
from connector.freshbooks.models import FreshBooksObject
from connector.pipeline.render.descriptions import KIND_OF, View, describe
from connector.pipeline.render.formatting import (
    FIELD_TEXT_MAX,
    MAX_FIELDS,
    NAME_MAX,
    OPEN_IN_FRESHBOOKS_ACTION_ID,
    SECTION_TEXT_MAX,
    SIMULATED_NOTE,
    Message,
    RenderContext,
    clip,
    metadata,
)

# Events the connector computes from state changes (connector.pipeline.enrich.derive); FreshBooks sends
# none of them.
DERIVED_EVENTS: Final = ("invoice.paid", "invoice.partially_paid", "invoice.overdue", "bill.paid")
EVENT_NAMES: tuple[str, ...] = (*SUPPORTED_EVENTS, *DERIVED_EVENTS)


class UnknownEvent(ValueError):
    """An event name with no renderer."""


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


def compose(
    *, emoji: str, subject: str, verb: str, view: View | None, note: str | None, ctx: RenderContext
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


CREATED_EMOJI: Final = {
    ObjectKind.INVOICE: ":page_facing_up:",
    ObjectKind.PAYMENT: ":moneybag:",
    ObjectKind.BILL: ":receipt:",
    ObjectKind.EXPENSE: ":credit_card:",
}
_UPDATED: Final = ":pencil2:"
DELETED: Final = ":wastebasket:"
PAID: Final = ":white_check_mark:"
PARTIAL: Final = ":hourglass_flowing_sand:"
OVERDUE: Final = ":warning:"


def _created(kind: ObjectKind, verb: str) -> _EventSpec:
    return _EventSpec(kind, CREATED_EMOJI[kind], verb)


_SPECS: Final[dict[str, _EventSpec]] = {
    "invoice.create": _created(ObjectKind.INVOICE, "created"),
    "invoice.update": _EventSpec(ObjectKind.INVOICE, _UPDATED, "updated"),
    "invoice.sendByEmail": _EventSpec(ObjectKind.INVOICE, ":email:", "sent to the client by email"),
    "invoice.delete": _EventSpec(ObjectKind.INVOICE, DELETED, "deleted"),
    "invoice.paid": _EventSpec(ObjectKind.INVOICE, PAID, "paid"),
    "invoice.partially_paid": _EventSpec(ObjectKind.INVOICE, PARTIAL, "partially paid"),
    "invoice.overdue": _EventSpec(ObjectKind.INVOICE, OVERDUE, "is overdue"),
    "payment.create": _created(ObjectKind.PAYMENT, "received"),
    "payment.update": _EventSpec(ObjectKind.PAYMENT, _UPDATED, "updated"),
    "payment.delete": _EventSpec(ObjectKind.PAYMENT, DELETED, "deleted"),
    # A new bill reads best as just "Bill BN101 from IKEA".
    "bill.create": _created(ObjectKind.BILL, ""),
    "bill.update": _EventSpec(ObjectKind.BILL, _UPDATED, "updated"),
    "bill.delete": _EventSpec(ObjectKind.BILL, DELETED, "deleted"),
    "bill.paid": _EventSpec(ObjectKind.BILL, PAID, "paid"),
    "expense.create": _created(ObjectKind.EXPENSE, "recorded"),
    "expense.update": _EventSpec(ObjectKind.EXPENSE, _UPDATED, "updated"),
    "expense.delete": _EventSpec(ObjectKind.EXPENSE, DELETED, "deleted"),
}

DELETED_NOTE: Final = f"{DELETED} Deleted in FreshBooks"


def _gone_note(kind: ObjectKind) -> str:
    return f"FreshBooks no longer returns this {kind}, so its details are unknown."


def _render_event(
    event_name: str, spec: _EventSpec, obj: FreshBooksObject | None, ctx: RenderContext
) -> Message:
    if obj is None:
        # Only a delete may arrive without its object (FreshBooks answered 404 to our GET).
        if not event_name.endswith(".delete"):
            raise TypeError(f"{event_name} needs the {spec.kind} it is about")
        return compose(
            emoji=spec.emoji,
            subject=spec.kind.capitalize(),
            verb=spec.verb,
            view=None,
            note=_gone_note(spec.kind),
            ctx=ctx,
        )
    if KIND_OF[type(obj)] is not spec.kind:
        raise TypeError(f"{event_name} renders {spec.kind} objects, got {type(obj).__name__}")
    view = describe(obj, ctx)
    return compose(
        emoji=spec.emoji,
        subject=view.subject,
        verb=spec.verb,
        view=view,
        note=DELETED_NOTE if view.deleted else None,
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
