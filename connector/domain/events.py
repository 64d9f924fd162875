"""THE FreshBooks event catalogue: every event we report, once, and the events we know but ignore.

Like Zulip's EVENT_FUNCTION_MAPPER + IGNORED_EVENTS: `CATALOGUE` declares each reported event with its
object kind, where it comes from (a FreshBooks webhook, or derived by us from state changes) and the
key of its renderer in connector.pipeline.render.messages.RENDERERS. Every other view (the callbacks
to register, the derived events, the routable names, the kind of a name) is computed from it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

VERIFY_EVENT = "callback.verify"


class ObjectKind(enum.StrEnum):
    INVOICE = "invoice"
    PAYMENT = "payment"
    BILL = "bill"
    EXPENSE = "expense"


class EventSource(enum.StrEnum):
    WEBHOOK = "webhook"  # FreshBooks sends it; we register a callback for it (reference §4)
    DERIVED = "derived"  # FreshBooks never sends it; connector.pipeline.enrich computes it from state


@dataclass(frozen=True, slots=True)
class EventSpec:
    name: str  # e.g. "invoice.paid"
    kind: ObjectKind
    source: EventSource
    renderer: str  # the key of its renderer in connector.pipeline.render.messages.RENDERERS


def _webhook(name: str, kind: ObjectKind) -> EventSpec:
    return EventSpec(name, kind, EventSource.WEBHOOK, name.replace(".", "_"))


def _derived(name: str, kind: ObjectKind) -> EventSpec:
    return EventSpec(name, kind, EventSource.DERIVED, name.replace(".", "_"))


_I, _P, _B, _E = ObjectKind.INVOICE, ObjectKind.PAYMENT, ObjectKind.BILL, ObjectKind.EXPENSE

# Webhook events first, then derived ones: the order the rule modal and the rule syntax help list them.
CATALOGUE: tuple[EventSpec, ...] = (
    _webhook("invoice.create", _I),
    _webhook("invoice.update", _I),
    _webhook("invoice.sendByEmail", _I),
    _webhook("invoice.delete", _I),
    _webhook("payment.create", _P),
    _webhook("payment.update", _P),
    _webhook("payment.delete", _P),
    _webhook("bill.create", _B),
    _webhook("bill.update", _B),
    _webhook("bill.delete", _B),
    _webhook("expense.create", _E),
    _webhook("expense.update", _E),
    _webhook("expense.delete", _E),
    _derived("invoice.paid", _I),
    _derived("invoice.partially_paid", _I),
    _derived("invoice.overdue", _I),
    _derived("bill.paid", _B),
)

EVENTS: dict[str, EventSpec] = {spec.name: spec for spec in CATALOGUE}

# The callbacks the connector registers for every connection (reference §4).
SUPPORTED_EVENTS: dict[str, ObjectKind] = {
    spec.name: spec.kind for spec in CATALOGUE if spec.source is EventSource.WEBHOOK
}
# Events FreshBooks never sends; connector.pipeline.enrich (derive, reconcile) computes them from state.
DERIVED_EVENTS: dict[str, ObjectKind] = {
    spec.name: spec.kind for spec in CATALOGUE if spec.source is EventSource.DERIVED
}
# Every event a rule can route and a message can render: webhook events, then derived ones.
KIND_OF_EVENT: dict[str, ObjectKind] = {**SUPPORTED_EVENTS, **DERIVED_EVENTS}
ALL_EVENT_NAMES: tuple[str, ...] = tuple(KIND_OF_EVENT)

_IGNORED_RESOURCES = (
    "bill_vendor",
    "category",
    "client",
    "credit_note",
    "estimate",
    "item",
    "project",
    "recurring",
    "service",
    "tax",
    "time_entry",
)

# Real FreshBooks events we never subscribe to. If one arrives (a callback someone registered by
# hand), it is authentic: keep it in the inbox as ignored and answer 200 so FreshBooks stops
# retrying, rather than calling it malformed.
IGNORED_EVENTS: frozenset[str] = frozenset(
    {f"{res}{suffix}" for res in _IGNORED_RESOURCES for suffix in ("", ".create", ".update", ".delete")}
    | {"estimate.sendByEmail", "invoice", "payment", "bill", "expense"}
)


def is_known(name: str) -> bool:
    return name in SUPPORTED_EVENTS or name in IGNORED_EVENTS
