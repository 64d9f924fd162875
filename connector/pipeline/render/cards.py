"""Thread cards: the first message about an invoice or bill in a channel, updated in place. Pure."""

from __future__ import annotations

from typing import Final

from connector.freshbooks.models import Bill, Invoice
from connector.pipeline.render.descriptions import KIND_OF, describe
from connector.pipeline.render.formatting import Message, RenderContext
from connector.pipeline.render.messages import (
    CREATED_EMOJI,
    DELETED,
    DELETED_NOTE,
    OVERDUE,
    PAID,
    PARTIAL,
    compose,
)

# -- thread cards -----------------------------------------------------------------------------

# The card's marker shows the current state at a glance; its thread holds the history.
_CARD_EMOJI_BY_STATUS: Final = {
    "paid": PAID,
    "autopaid": PAID,
    "success": PAID,
    "partial": PARTIAL,
    "overdue": OVERDUE,
}


def _card_emoji(obj: Invoice | Bill) -> str:
    if obj.is_deleted:
        return DELETED
    status = obj.v3_status if isinstance(obj, Invoice) else obj.status
    return _CARD_EMOJI_BY_STATUS.get(status or "", CREATED_EMOJI[KIND_OF[type(obj)]])


def render_card(obj: Invoice | Bill, ctx: RenderContext) -> Message:
    """The first message about an invoice or bill in a channel, later updated in place to show
    its current status and outstanding balance; event messages follow in its thread."""
    view = describe(obj, ctx)
    return compose(
        emoji=_card_emoji(obj),
        subject=view.subject,
        verb="",
        view=view,
        note=DELETED_NOTE if view.deleted else None,
        ctx=ctx,
    )
