"""The `/freshbooks route` command syntax: patterns, amounts, the whole command, and its echoes."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.domain.events import ALL_EVENT_NAMES
from connector.domain.rules import RouteSpec
from connector.features.rules.syntax import (
    MAX_AMOUNT_DIGITS,
    USAGE,
    RouteSyntaxError,
    parse_amount,
    parse_patterns,
    parse_route_command,
)
from connector.pipeline.route.matching import KINDS

PATTERNS = ("all", *KINDS, *ALL_EVENT_NAMES)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("invoice.create", ("invoice.create",)),
        ("INVOICE.SENDBYEMAIL", ("invoice.sendByEmail",)),
        ("invoices,Bills, payments , expenses", ("invoice", "bill", "payment", "expense")),
        ("invoice.create,bill", ("invoice.create", "bill")),
        ("invoice.create,invoice.create", ("invoice.create",)),
        ("invoice.paid,invoice,bill.paid", ("invoice", "bill.paid")),
        ("bill,ALL", ("all",)),
        ("invoice,", ("invoice",)),
        ("Invoice.Partially_Paid", ("invoice.partially_paid",)),
    ],
)
def test_parse_patterns(text: str, expected: tuple[str, ...]) -> None:
    assert parse_patterns(text) == expected


def test_unknown_pattern_suggests_close_names() -> None:
    with pytest.raises(RouteSyntaxError) as caught:
        parse_patterns("invoice.created")
    assert "`invoice.created` is not an event I know" in caught.value.problem
    assert "`invoice.create`" in caught.value.problem
    assert USAGE in str(caught.value)


def test_unknown_pattern_without_a_close_name_lists_them_all() -> None:
    with pytest.raises(RouteSyntaxError) as caught:
        parse_patterns("zzzz")
    assert "`invoice.partially_paid`" in caught.value.problem


@pytest.mark.parametrize("text", ["", " , ,"])
def test_no_patterns(text: str) -> None:
    with pytest.raises(RouteSyntaxError, match="Name the events"):
        parse_patterns(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5000", "5000"),
        ("5,000", "5000"),
        ("5000.50", "5000.50"),
        ("5000.5", "5000.5"),
        ("1,234,567.89", "1234567.89"),
        ("0", "0"),
        (" 12 ", "12"),
        ("999", "999"),
    ],
)
def test_parse_amount(text: str, expected: str) -> None:
    assert parse_amount(text) == Decimal(expected)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("5,00", "groups of three digits"),
        ("50,0000", "groups of three digits"),
        ("5.000.0", "is not an amount"),
        ("-5", "negative"),
        ("abc", "is not an amount"),
        ("1e3", "is not an amount"),
        ("", "missing"),
        ("5000.505", "more than two decimal places"),
        ("$5000", "currency symbol"),
        ("5000.", "is not an amount"),
        (".5", "is not an amount"),
        ("\u0661\u0662\u0663", "with the digits 0-9, like `123`"),  # Decimal reads them, we do not
        ("1" * 16, "too large"),  # 16 digits: above MAX_AMOUNT_DIGITS
        ("NaN", "is not an amount"),
        ("Infinity", "is not an amount"),
    ],
)
def test_parse_amount_rejects(text: str, reason: str) -> None:
    with pytest.raises(RouteSyntaxError) as caught:
        parse_amount(text)
    assert reason in caught.value.problem
    assert "Usage: `/freshbooks route" in str(caught.value)


def spec(**overrides: Any) -> RouteSpec:
    fields: dict[str, Any] = {
        "patterns": ("invoice.create",),
        "channel_id": "C0123",
        "channel_name": "exec-alerts",
        "min_amount": None,
        "max_amount": None,
        "currency": None,
        "billable_only": False,
        "counterparty": None,
    }
    return RouteSpec(**(fields | overrides))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ("invoice.create <#C0123|exec-alerts> min 5000", spec(min_amount=Decimal("5000"))),
        ("invoice.create <#C0123>", spec(channel_name=None)),
        ("invoice.create <#C0123|>", spec(channel_name=None)),
        ("  invoice.create   <#C0123|exec-alerts>  ", spec()),
        (
            "invoice.create <#C0123|exec-alerts> currency eur MAX 5,000.50 Min 10",
            spec(min_amount=Decimal("10"), max_amount=Decimal("5000.50"), currency="EUR"),
        ),
        ("invoice, bill.paid <#C0123|exec-alerts>", spec(patterns=("invoice", "bill.paid"))),
        ("invoice ,bill.paid <#C0123|exec-alerts>", spec(patterns=("invoice", "bill.paid"))),
        ("invoice, <#C0123|exec-alerts>", spec(patterns=("invoice",))),
        ("expenses <#C0123|exec-alerts> billable", spec(patterns=("expense",), billable_only=True)),
        (
            "all <#G0123|secret> billable",
            spec(patterns=("all",), channel_id="G0123", channel_name="secret", billable_only=True),
        ),
        (
            "invoice.create <#C0123|exec-alerts> min 7 max 7",
            spec(min_amount=Decimal(7), max_amount=Decimal(7)),
        ),
        ('invoice.create <#C0123|exec-alerts> client "Acme  Inc"', spec(counterparty="Acme Inc")),
        ("invoice.create <#C0123|exec-alerts> client “Acme Inc”", spec(counterparty="Acme Inc")),
        ("invoice.create <#C0123|exec-alerts> client O'Brien", spec(counterparty="O'Brien")),
        ('invoice.create <#C0123|exec-alerts> client "min"', spec(counterparty="min")),
        # Slack sends the user's &, < and > as entities; names are stored as typed.
        (
            'invoice.create <#C0123|exec-alerts> client "Café Zoë &amp; Søns &lt;Ltd&gt;"',
            spec(counterparty="Café Zoë & Søns <Ltd>"),
        ),
        ('bill <#C0123|exec-alerts> vendor "IKEA"', spec(patterns=("bill",), counterparty="IKEA")),
    ],
)
def test_parse_route_command(args: str, expected: RouteSpec) -> None:
    assert parse_route_command(args) == expected


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ("", "Tell me which events"),
        ("<#C0123|exec-alerts> invoice", "Name the events first"),
        ("invoce <#C0123|exec-alerts>", "Did you mean `invoice`"),
        ("invoice.create", "Which channel?"),
        ("invoice.create min 5000", "Which channel?"),
        ("invoice.create #exec-alerts", "Pick the channel with `#` so Slack links it"),
        ("invoice.create exec-alerts", "Pick the channel with `#` so Slack links it"),
        ("invoice.create <#c0123|lower>", "Pick the channel with `#` so Slack links it"),
        ("invoice.create bill <#C0123>", "Separate events with commas"),
        ("invoice.create <@U0123|bob>", "is a person, not a channel"),
        ("invoice.create <#C0123> <#C0456>", "one channel"),
        ("invoice.create <#C0123> min 10 max 5", "`min 10` is above `max 5`"),
        ("invoice.create <#C0123> min 5 min 6", "`min` appears twice"),
        ("expense <#C0123> billable billable", "`billable` appears twice"),
        ("invoice.create <#C0123> colour red", "`colour` is not an option"),
        ("invoice.create <#C0123> minimum 5", "Did you mean `min`"),
        ("invoice.create <#C0123> billable", "matches no expense events"),
        ("invoice.create <#C0123> min", "`min` needs an amount"),
        ("invoice.create <#C0123> max currency USD", "`max` needs an amount"),
        ("invoice.create <#C0123> currency", "`currency` needs a three-letter code"),
        ("invoice.create <#C0123> client", "`client` needs a client name"),
        ("invoice.create <#C0123> currency EURO", "not a currency code"),
        ("invoice.create <#C0123> currency €", "not a currency code"),
        ("invoice.create <#C0123> min abc", "After `min`: `abc` is not an amount"),
        ("invoice.create <#C0123> max 5,00", "After `max`: The commas"),
        (
            "invoice.create <#C0123> client Acme Inc",
            'Put a name with spaces in quotes, like `client "Acme Inc"`',
        ),
        ('invoice.create <#C0123> client "Acme', "missing its closing quote"),
        ('invoice.create <#C0123> client "  "', "name is empty"),
        ('all <#C0123> client "Acme" vendor "IKEA"', "not both"),
        ('bill <#C0123> client "Acme"', "`client` filters `invoice` or `payment` events"),
        ('invoice <#C0123> vendor "IKEA"', "`vendor` filters `bill` or `expense` events"),
    ],
)
def test_parse_route_command_errors(args: str, reason: str) -> None:
    with pytest.raises(RouteSyntaxError) as caught:
        parse_route_command(args)
    assert reason in caught.value.problem
    assert str(caught.value) == f"{caught.value.problem}\n{USAGE}"


def test_echoed_input_cannot_close_code_or_form_mentions() -> None:
    with pytest.raises(RouteSyntaxError) as caught:
        parse_route_command("invoice <#C0123> <!channel>`x")
    assert "<!channel>" not in caught.value.problem
    assert "&lt;!channel&gt;'x" in caught.value.problem


@given(
    st.integers(min_value=0, max_value=10**MAX_AMOUNT_DIGITS - 1),
    st.integers(min_value=0, max_value=2),
    st.booleans(),
)
def test_parse_amount_round_trips(units: int, places: int, grouped: bool) -> None:
    value = Decimal(units).scaleb(-places)
    text = f"{value:,f}" if grouped else f"{value:f}"
    assert parse_amount(text) == value


fragments = st.sampled_from(
    [
        "invoice", "invoice.create,", "bill", ",", "all", "expenses", "<#C0123|x>", "<#C1>", "#general",
        "<@U1>", "min", "max", "currency", "usd", "billable", "client", "vendor", '"', "“", "5,000",
        "5000.50", "-5", "1e3", "&amp;", "<", ">", "`", "\u00a0", "\u0661",
    ]
)  # fmt: skip


command_texts = st.text() | st.lists(fragments | st.text(max_size=6)).map(" ".join)


@given(command_texts)
def test_parse_route_command_only_ever_raises_route_syntax_error(text: str) -> None:
    try:
        result = parse_route_command(text)
    except RouteSyntaxError as exc:
        assert exc.problem
        assert str(exc).endswith(USAGE)
        return
    assert result.patterns
    assert all(p in PATTERNS for p in result.patterns)
    assert result.channel_id.startswith(("C", "G"))
