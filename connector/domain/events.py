"""FreshBooks event names: which we subscribe to and report, and which we know but ignore."""

from __future__ import annotations

import enum

VERIFY_EVENT = "callback.verify"


class ObjectKind(enum.StrEnum):
    INVOICE = "invoice"
    PAYMENT = "payment"
    BILL = "bill"
    EXPENSE = "expense"


# The callbacks the connector registers for every connection (reference §4).
SUPPORTED_EVENTS: dict[str, ObjectKind] = {
    "invoice.create": ObjectKind.INVOICE,
    "invoice.update": ObjectKind.INVOICE,
    "invoice.sendByEmail": ObjectKind.INVOICE,
    "invoice.delete": ObjectKind.INVOICE,
    "payment.create": ObjectKind.PAYMENT,
    "payment.update": ObjectKind.PAYMENT,
    "payment.delete": ObjectKind.PAYMENT,
    "bill.create": ObjectKind.BILL,
    "bill.update": ObjectKind.BILL,
    "bill.delete": ObjectKind.BILL,
    "expense.create": ObjectKind.EXPENSE,
    "expense.update": ObjectKind.EXPENSE,
    "expense.delete": ObjectKind.EXPENSE,
}

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
