"""Event messages: typed FreshBooks objects in, Slack messages out (STYLE.md points 2-5).

Pure: no I/O, no clock reads. One renderer per renderer key of the event catalogue
(connector.domain.events.CATALOGUE) in `RENDERERS`; the renderers differ only in a small `_Look`
(marker emoji and verb), share one description per object kind
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

from connector.domain.events import EVENTS, EventSpec, ObjectKind
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
class _Look:
    verb: str  # follows the subject: "Invoice ACM0042 paid"
    emoji: str | None = None  # the marker of what happened; None: the object kind's (it is new)


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

# Keyed by the catalogue's renderer keys (EventSpec.renderer).
_LOOKS: Final[dict[str, _Look]] = {
    "invoice_create": _Look("created"),
    "invoice_update": _Look("updated", _UPDATED),
    "invoice_sendByEmail": _Look("sent to the client by email", ":email:"),
    "invoice_delete": _Look("deleted", DELETED),
    "invoice_paid": _Look("paid", PAID),
    "invoice_partially_paid": _Look("partially paid", PARTIAL),
    "invoice_overdue": _Look("is overdue", OVERDUE),
    "payment_create": _Look("received"),
    "payment_update": _Look("updated", _UPDATED),
    "payment_delete": _Look("deleted", DELETED),
    # A new bill reads best as just "Bill BN101 from IKEA".
    "bill_create": _Look(""),
    "bill_update": _Look("updated", _UPDATED),
    "bill_delete": _Look("deleted", DELETED),
    "bill_paid": _Look("paid", PAID),
    "expense_create": _Look("recorded"),
    "expense_update": _Look("updated", _UPDATED),
    "expense_delete": _Look("deleted", DELETED),
}

DELETED_NOTE: Final = f"{DELETED} Deleted in FreshBooks"


def _gone_note(kind: ObjectKind) -> str:
    return f"FreshBooks no longer returns this {kind}, so its details are unknown."


def _render_event(event: EventSpec, look: _Look, obj: FreshBooksObject | None, ctx: RenderContext) -> Message:
    kind = event.kind
    emoji = CREATED_EMOJI[kind] if look.emoji is None else look.emoji
    if obj is None:
        # Only a delete may arrive without its object (FreshBooks answered 404 to our GET).
        if not event.name.endswith(".delete"):
            raise TypeError(f"{event.name} needs the {kind} it is about")
        return compose(
            emoji=emoji,
            subject=kind.capitalize(),
            verb=look.verb,
            view=None,
            note=_gone_note(kind),
            ctx=ctx,
        )
    if KIND_OF[type(obj)] is not kind:
        raise TypeError(f"{event.name} renders {kind} objects, got {type(obj).__name__}")
    view = describe(obj, ctx)
    return compose(
        emoji=emoji,
        subject=view.subject,
        verb=look.verb,
        view=view,
        note=DELETED_NOTE if view.deleted else None,
        ctx=ctx,
    )


Renderer = Callable[[EventSpec, FreshBooksObject | None, RenderContext], Message]


def _renderer(key: str, look: _Look) -> Renderer:
    def render_one(event: EventSpec, obj: FreshBooksObject | None, ctx: RenderContext) -> Message:
        return _render_event(event, look, obj, ctx)

    render_one.__name__ = render_one.__qualname__ = f"render_{key}"
    return render_one


# The renderer dispatch table, keyed by the catalogue's renderer keys: a test checks that every
# catalogue event has a renderer here and every renderer an event.
RENDERERS: Final[dict[str, Renderer]] = {key: _renderer(key, look) for key, look in _LOOKS.items()}


def verb_of(event_name: str) -> str:
    """What happened, as a message title says it after the subject ("created", "paid"; "" for a new bill)."""
    event = EVENTS.get(event_name)
    look = _LOOKS.get(event.renderer) if event else None
    if event is None or look is None:
        raise UnknownEvent(f"no renderer for event {event_name!r}")
    return look.verb


def render(event_name: str, obj: FreshBooksObject | None, ctx: RenderContext) -> Message:
    """The Slack message for one event about `obj` (None: a deleted object FreshBooks no longer returns)."""
    event = EVENTS.get(event_name)
    renderer = RENDERERS.get(event.renderer) if event else None
    if event is None or renderer is None:
        raise UnknownEvent(f"no renderer for event {event_name!r}")
    return renderer(event, obj, ctx)
