"""Routing: typed objects -> facts, rules -> targets (pure matching; the command syntax is tested in
tests/features/rules/test_syntax.py)."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from connector.domain.events import ALL_EVENT_NAMES, DERIVED_EVENTS, SUPPORTED_EVENTS, ObjectKind
from connector.domain.money import Money
from connector.domain.rules import Rule, Target
from connector.freshbooks.models import parse_bill, parse_expense, parse_invoice, parse_payment
from connector.pipeline.route.matching import (
    KINDS,
    RoutableEvent,
    facts_of,
    pattern_matches,
    rule_matches,
    targets,
)
from tests.support.paths import FIXTURES as FIXTURES_DIR

FIXTURES = FIXTURES_DIR / "freshbooks" / "objects"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return data


def cad(amount: str) -> Money:
    return Money(Decimal(amount), "CAD")


def event(
    name: str = "invoice.create",
    amount: Money | None = None,
    billable: bool | None = None,
    counterparty: str | None = None,
) -> RoutableEvent:
    return RoutableEvent(name, name.split(".", maxsplit=1)[0], amount, billable, counterparty)


def rule(rule_id: int = 1, *patterns: str, channel: str = "C1", **kwargs: Any) -> Rule:
    return Rule(id=rule_id, patterns=patterns or ("all",), channel_id=channel, **kwargs)


# -- event names ----------------------------------------------------------------------------------


def test_all_event_names_are_the_supported_and_derived_ones() -> None:
    assert len(ALL_EVENT_NAMES) == 17
    derived = {"invoice.paid", "invoice.partially_paid", "invoice.overdue", "bill.paid"}
    assert set(DERIVED_EVENTS) == derived
    assert (*SUPPORTED_EVENTS, *DERIVED_EVENTS) == ALL_EVENT_NAMES  # webhook events first: the UI order
    assert tuple(kind.value for kind in ObjectKind) == KINDS
    assert all(name.split(".")[0] in KINDS for name in ALL_EVENT_NAMES)


# -- facts_of ---------------------------------------------------------------------------------------


def test_invoice_facts() -> None:
    facts = facts_of("invoice.create", parse_invoice(load("invoice")))
    assert facts == RoutableEvent("invoice.create", "invoice", cad("41.94"), None, "Gordon Shumway")


def test_derived_invoice_event_reads_the_invoice_and_its_current_client_name() -> None:
    facts = facts_of("invoice.paid", parse_invoice(load("invoice_paid")))
    assert facts == RoutableEvent("invoice.paid", "invoice", cad("41.94"), None, "Melmac Imports")


def test_deleted_invoice_still_known_keeps_its_amount() -> None:
    facts = facts_of("invoice.delete", parse_invoice(load("invoice_deleted")))
    assert facts.amount == Money(Decimal("150.00"), "USD")
    assert facts.counterparty == "Willie Tanner"


def test_payment_facts_use_the_included_client() -> None:
    facts = facts_of("payment.create", parse_payment(load("payment_with_includes")))
    assert facts == RoutableEvent("payment.create", "payment", cad("20.00"), None, "Gordon Shumway")


def test_payment_without_client_falls_back_to_the_invoice_client_name() -> None:
    raw = load("payment_with_includes")
    raw.pop("client")
    raw["invoice"]["current_organization"] = "Melmac Imports"
    facts = facts_of("payment.update", parse_payment(raw))
    assert facts.counterparty == "Melmac Imports"


def test_payment_without_includes_has_no_counterparty() -> None:
    raw = load("payment_with_includes")
    raw.pop("client")
    raw.pop("invoice")
    facts = facts_of("payment.create", parse_payment(raw))
    assert facts.amount == cad("20.00")
    assert facts.counterparty is None


def test_bill_facts_and_derived_bill_paid() -> None:
    bill = parse_bill(load("bill"))
    assert facts_of("bill.create", bill) == RoutableEvent("bill.create", "bill", cad("1500.00"), None, "IKEA")
    assert facts_of("bill.paid", bill) == RoutableEvent("bill.paid", "bill", cad("1500.00"), None, "IKEA")


def test_expense_facts() -> None:
    billable = facts_of("expense.create", parse_expense(load("expense_billable")))
    assert billable == RoutableEvent("expense.create", "expense", cad("312.45"), True, "Air Canada")
    internal = facts_of("expense.update", parse_expense(load("expense_internal")))
    assert internal == RoutableEvent("expense.update", "expense", cad("54.00"), False, "Serano Bakery")


@pytest.mark.parametrize("name", ["invoice.delete", "payment.delete", "bill.delete", "expense.delete"])
def test_no_object_means_unknown_facts(name: str) -> None:
    facts = facts_of(name, None)
    assert facts == RoutableEvent(name, name.split(".", maxsplit=1)[0], None, None, None)


def test_object_of_another_kind_means_unknown_facts() -> None:
    facts = facts_of("invoice.paid", parse_expense(load("expense_billable")))
    assert facts == RoutableEvent("invoice.paid", "invoice", None, None, None)


@pytest.mark.parametrize("name", ["invoice", "client.create", "Invoice.create", ""])
def test_unroutable_name_is_a_bug(name: str) -> None:
    with pytest.raises(ValueError, match="not a routable event name"):
        facts_of(name, None)


# -- pattern_matches --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("all", "bill.paid", True),
        ("invoice", "invoice.create", True),
        ("invoice", "invoice.paid", True),
        ("invoice", "payment.create", False),
        ("bill", "bill.paid", True),
        ("invoice.paid", "invoice.paid", True),
        ("invoice.paid", "invoice.partially_paid", False),
        ("invoice.create", "invoice.update", False),
        ("invoice.sendByEmail", "invoice.sendByEmail", True),
    ],
)
def test_pattern_matches(pattern: str, name: str, expected: bool) -> None:
    assert pattern_matches(pattern, name) is expected


# -- rule_matches -----------------------------------------------------------------------------------


def test_patterns_select_events() -> None:
    r = rule(1, "invoice.create", "bill")
    assert rule_matches(r, event("invoice.create"))
    assert rule_matches(r, event("bill.paid"))
    assert not rule_matches(r, event("invoice.paid"))


def test_paused_rule_never_matches() -> None:
    assert not rule_matches(rule(paused=True), event())


def test_amount_bounds_are_inclusive() -> None:
    r = rule(min_amount=Decimal("100"), max_amount=Decimal("200"))
    assert rule_matches(r, event(amount=cad("100")))
    assert rule_matches(r, event(amount=cad("200.00")))
    assert not rule_matches(r, event(amount=cad("99.99")))
    assert not rule_matches(r, event(amount=cad("200.01")))


def test_open_ended_bounds() -> None:
    assert rule_matches(rule(min_amount=Decimal("5000")), event(amount=cad("1000000")))
    assert rule_matches(rule(max_amount=Decimal("5000")), event(amount=cad("-20")))


@pytest.mark.parametrize(
    "r", [rule(min_amount=Decimal("0")), rule(max_amount=Decimal("10")), rule(currency="CAD")]
)
def test_amount_filters_skip_events_without_an_amount(r: Rule) -> None:
    assert not rule_matches(r, event(amount=None))


def test_rule_without_amount_filters_matches_events_without_an_amount() -> None:
    assert rule_matches(rule(), event(amount=None))


def test_currency_must_agree_and_bounds_stay_in_the_event_currency() -> None:
    r = rule(currency="USD", min_amount=Decimal("5000"))
    assert rule_matches(r, event(amount=Money(Decimal("5000"), "USD")))
    assert rule_matches(r, event(amount=Money(Decimal("5000"), "usd")))
    assert not rule_matches(r, event(amount=Money(Decimal("9000"), "CAD")))
    # Without a currency, the bound is read in whatever currency the event is in: no conversion.
    assert rule_matches(rule(min_amount=Decimal("5000")), event(amount=Money(Decimal("5000"), "JPY")))


def test_billable_skips_internal_and_unknown_expenses() -> None:
    r = rule(1, "expense", billable_only=True)
    assert rule_matches(r, event("expense.create", cad("10"), billable=True))
    assert not rule_matches(r, event("expense.create", cad("10"), billable=False))
    assert not rule_matches(r, event("expense.delete", None, billable=None))


def test_billable_has_no_effect_on_other_kinds() -> None:
    r = rule(1, "all", billable_only=True)
    assert rule_matches(r, event("invoice.create"))
    assert rule_matches(r, event("bill.paid"))


def test_counterparty_is_case_and_whitespace_insensitive() -> None:
    r = rule(counterparty="  Café   Zoë & Søns ")
    assert rule_matches(r, event(counterparty="café zoë & SØNS"))
    assert rule_matches(r, event(counterparty="Café\tZoë &  Søns"))
    assert not rule_matches(r, event(counterparty="Café Zoë"))


def test_counterparty_rule_skips_events_without_one() -> None:
    assert not rule_matches(rule(counterparty="IKEA"), event("bill.delete", counterparty=None))


# -- targets ------------------------------------------------------------------------------------------


def test_targets_dedupe_channels_and_order_by_first_rule_id() -> None:
    rules = [
        rule(7, "invoice", channel="C2"),
        rule(3, "all", channel="C1"),
        rule(5, "invoice.create", channel="C2"),
        rule(4, "bill", channel="C3"),
        rule(2, "invoice.create", channel="C9", paused=True),
        rule(1, "invoice", channel="C2", min_amount=Decimal("100")),
    ]
    assert targets(event(amount=cad("50")), rules) == [Target("C1", (3,)), Target("C2", (5, 7))]
    assert targets(event(amount=cad("500")), rules) == [Target("C2", (1, 5, 7)), Target("C1", (3,))]


def test_targets_of_nothing() -> None:
    assert targets(event(), []) == []
    assert targets(event(), [rule(1, "bill")]) == []


# -- parse_patterns -----------------------------------------------------------------------------------


# -- parse_amount --------------------------------------------------------------------------------------


# -- parse_route_command --------------------------------------------------------------------------------


# -- properties ---------------------------------------------------------------------------------------

CURRENCIES = ("CAD", "USD", "EUR")
CHANNELS = ("C1", "C2", "C3", "C4")
PATTERNS = ("all", *KINDS, *ALL_EVENT_NAMES)

cents = st.integers(min_value=-(10**9), max_value=10**9).map(lambda n: Decimal(n).scaleb(-2))
money = st.builds(Money, cents, st.sampled_from(CURRENCIES))
names = st.sampled_from([None, "Acme", " acme ", "IKEA", "Gordon Shumway"])


@st.composite
def routable_events(draw: st.DrawFn) -> RoutableEvent:
    name = draw(st.sampled_from(ALL_EVENT_NAMES))
    kind = name.split(".")[0]
    billable = draw(st.none() | st.booleans()) if kind == "expense" else None
    return RoutableEvent(name, kind, draw(st.none() | money), billable, draw(names))


rules = st.builds(
    Rule,
    id=st.integers(min_value=1, max_value=10_000),
    patterns=st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=3).map(tuple),
    channel_id=st.sampled_from(CHANNELS),
    min_amount=st.none() | cents,
    max_amount=st.none() | cents,
    currency=st.none() | st.sampled_from(CURRENCIES),
    billable_only=st.booleans(),
    counterparty=names,
    paused=st.booleans(),
)
rule_sets = st.lists(rules, max_size=8, unique_by=lambda r: r.id)


def channels(found: list[Target]) -> set[str]:
    return {t.channel_id for t in found}


@given(routable_events(), rule_sets)
def test_targets_never_repeat_a_channel(e: RoutableEvent, rs: list[Rule]) -> None:
    found = targets(e, rs)
    assert len(found) == len(channels(found))


@given(routable_events(), rule_sets, rules)
def test_a_paused_rule_never_contributes(e: RoutableEvent, rs: list[Rule], extra: Rule) -> None:
    assume(extra.id not in {r.id for r in rs})
    paused = dataclasses.replace(extra, paused=True)
    assert not rule_matches(paused, e)
    assert targets(e, [*rs, paused]) == targets(e, rs)


@given(routable_events(), rule_sets, rules)
def test_adding_a_rule_never_removes_a_target(e: RoutableEvent, rs: list[Rule], extra: Rule) -> None:
    assume(extra.id not in {r.id for r in rs})
    before = {(t.channel_id, i) for t in targets(e, rs) for i in t.rule_ids}
    after = {(t.channel_id, i) for t in targets(e, [*rs, extra]) for i in t.rule_ids}
    assert before <= after


@given(routable_events(), st.sampled_from(CURRENCIES))
def test_min_equal_max_equal_amount_matches_iff_currency_agrees(e: RoutableEvent, currency: str) -> None:
    assume(e.amount is not None)
    assert e.amount is not None
    r = Rule(1, ("all",), "C1", min_amount=e.amount.amount, max_amount=e.amount.amount, currency=currency)
    assert rule_matches(r, e) is (e.amount.currency == currency)


@given(st.sampled_from(ALL_EVENT_NAMES))
def test_all_matches_every_name_and_a_kind_exactly_its_names(name: str) -> None:
    assert pattern_matches("all", name)
    for kind in KINDS:
        assert pattern_matches(kind, name) is name.startswith(f"{kind}.")


@given(routable_events(), rule_sets)
def test_channels_are_the_union_of_individually_matching_rules(e: RoutableEvent, rs: list[Rule]) -> None:
    found = targets(e, rs)
    assert channels(found) == {r.channel_id for r in rs if rule_matches(r, e)}
    for t in found:
        assert t.rule_ids == tuple(
            sorted(r.id for r in rs if r.channel_id == t.channel_id and rule_matches(r, e))
        )
    firsts = [t.rule_ids[0] for t in found]
    assert firsts == sorted(firsts)
