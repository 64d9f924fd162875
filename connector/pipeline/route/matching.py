"""Route matching: which rules an event satisfies, and so which Slack channels hear about it.

Pure: no I/O, no clock. Evaluation is `targets(event, rules)`; `facts_of` turns a typed FreshBooks
object into the few facts rules look at.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from connector.domain.events import KIND_OF_EVENT, ObjectKind
from connector.domain.money import Money
from connector.domain.rules import Rule, Target, collapse_of
from connector.freshbooks.models import Bill, Expense, FreshBooksObject, Invoice, Payment

KINDS: tuple[str, ...] = tuple(kind.value for kind in ObjectKind)
ALL = "all"  # the pattern every event matches

# -- the facts a rule looks at ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoutableEvent:
    name: str  # e.g. "invoice.paid"
    kind: str  # "invoice" | "payment" | "bill" | "expense"
    amount: Money | None  # in the event's own currency; None when unknown (e.g. a deleted object)
    billable: bool | None  # expenses: True if tied to a client; None for other kinds
    counterparty: str | None  # client name (invoice/payment) or vendor name (bill/expense)


@dataclass(frozen=True, slots=True)
class _Facts:
    amount: Money | None = None
    billable: bool | None = None
    counterparty: str | None = None


_UNKNOWN = _Facts()


def _invoice_facts(obj: FreshBooksObject) -> _Facts:
    return _Facts(obj.amount, None, obj.client_name) if isinstance(obj, Invoice) else _UNKNOWN


def _payment_facts(obj: FreshBooksObject) -> _Facts:
    if not isinstance(obj, Payment):
        return _UNKNOWN
    # A payment carries no client name; it comes from the included client, else the included invoice.
    name = obj.client.display_name if obj.client else None
    if name is None and obj.invoice is not None:
        name = obj.invoice.client_name
    return _Facts(obj.amount, None, name)


def _bill_facts(obj: FreshBooksObject) -> _Facts:
    # `amount` is required by parse_bill, so the `total_amount` fallback never comes into play.
    return _Facts(obj.amount, None, obj.vendor_name) if isinstance(obj, Bill) else _UNKNOWN


def _expense_facts(obj: FreshBooksObject) -> _Facts:
    return _Facts(obj.amount, obj.billable, obj.vendor) if isinstance(obj, Expense) else _UNKNOWN


_FACTS: dict[str, Callable[[FreshBooksObject], _Facts]] = {
    ObjectKind.INVOICE.value: _invoice_facts,
    ObjectKind.PAYMENT.value: _payment_facts,
    ObjectKind.BILL.value: _bill_facts,
    ObjectKind.EXPENSE.value: _expense_facts,
}


def facts_of(event_name: str, obj: FreshBooksObject | None) -> RoutableEvent:
    """What rules need to know about an event. No object, or one of another kind, means unknown facts.

    Raises ValueError for a name outside ALL_EVENT_NAMES: routing an event nobody can subscribe to is a bug.
    """
    kind = KIND_OF_EVENT.get(event_name)
    if kind is None:
        raise ValueError(f"not a routable event name: {event_name!r}")
    facts = _UNKNOWN if obj is None else _FACTS[kind](obj)
    return RoutableEvent(
        name=event_name,
        kind=kind.value,
        amount=facts.amount,
        billable=facts.billable,
        counterparty=facts.counterparty,
    )


# -- rules and their evaluation -----------------------------------------------------------------


def _normalise_name(name: str) -> str:
    """The form client and vendor names are compared in: trimmed, inner whitespace collapsed, casefolded."""
    return " ".join(name.split()).casefold()


def pattern_matches(pattern: str, event_name: str) -> bool:
    """`all`, a bare kind (matching its derived events too) or an exact name; `pattern` is normalised."""
    if pattern == ALL:
        return True
    if pattern in KINDS:
        return event_name.startswith(f"{pattern}.")
    return pattern == event_name


def _amount_matches(rule: Rule, amount: Money | None) -> bool:
    if rule.currency is None and rule.min_amount is None and rule.max_amount is None:
        return True
    if amount is None:
        return False
    if rule.currency is not None and amount.currency.upper() != rule.currency:
        return False
    # Bounds are read in the event's own currency: no conversion, by design.
    if rule.min_amount is not None and amount.amount < rule.min_amount:
        return False
    return rule.max_amount is None or amount.amount <= rule.max_amount


def rule_matches(rule: Rule, event: RoutableEvent) -> bool:
    """Does `rule` send `event` to its channel?"""
    if rule.paused or not any(pattern_matches(p, event.name) for p in rule.patterns):
        return False
    if not _amount_matches(rule, event.amount):
        return False
    # `billable` only filters expenses: an expense not tied to a client (or not known to be) is internal.
    if rule.billable_only and event.kind == ObjectKind.EXPENSE and event.billable is not True:
        return False
    if rule.counterparty is None:
        return True
    wanted = _normalise_name(rule.counterparty)
    return event.counterparty is not None and _normalise_name(event.counterparty) == wanted


def targets(event: RoutableEvent, rules: Iterable[Rule]) -> list[Target]:
    """One target per channel, ordered by the lowest id of the rules that matched it."""
    by_channel: dict[str, list[Rule]] = {}
    for rule in sorted(rules, key=lambda r: r.id):
        if rule_matches(rule, event):
            matched = by_channel.setdefault(rule.channel_id, [])
            if all(rule.id != seen.id for seen in matched):
                matched.append(rule)
    return [
        Target(
            channel_id,
            tuple(rule.id for rule in matched),
            collapse_at=collapse_of(matched),
            urgent=any(rule.urgent for rule in matched),
        )
        for channel_id, matched in by_channel.items()
    ]
