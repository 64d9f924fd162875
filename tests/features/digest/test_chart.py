"""The digest's chart: its series against sums computed here from raw FreshBooks JSON, the PNG it
draws (decoded with Pillow), and the alt text that says its figures in words."""

from __future__ import annotations

import datetime as dt
import io
from collections import defaultdict
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from PIL import Image

from connector.features.digest.chart import (
    ALT_TEXT_MAX,
    MAX_CURRENCIES,
    alt_text,
    chart,
    chart_png,
    chart_size,
    compact,
    nice_ticks,
)
from connector.features.digest.figures import DigestInputs, compute
from connector.features.digest.period import Cadence, Period, period_just_ended
from connector.features.digest.series import Direction, buckets, cash_series, movements, window
from connector.freshbooks.models import parse_bill, parse_expense, parse_invoice, parse_payment
from tests.support.books import (
    Books,
    add_paid_bills,
    bill_json,
    bill_payment_json,
    cash_sums,
    expense_json,
    invoice_json,
    payment_json,
    random_books,
)

NEW_YORK = ZoneInfo("America/New_York")
D = Decimal
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Monday 2027-04-05 08:00: last week is Mon Mar 29 - Sun Apr 4, across a month end.
NOW = dt.datetime(2027, 4, 5, 8, tzinfo=NEW_YORK)
WEEK = period_just_ended(NOW, cadence=Cadence.WEEKLY, zone=NEW_YORK)
# Tuesday 2027-03-02 08:00: yesterday is Mar 1; its 8 weeks run Jan 5 - Mar 1, across two month ends.
DAY_NOW = dt.datetime(2027, 3, 2, 8, tzinfo=NEW_YORK)
DAY = period_just_ended(DAY_NOW, cadence=Cadence.DAILY, zone=NEW_YORK)
Raw = dict[str, Any]


def _books(seed: int, today: dt.date, currencies: tuple[str, ...] = ("USD", "EUR", "CAD")) -> Books:
    """Random books over 70 days, plus paid bills whose payments fall inside it and outside."""
    books = random_books(
        seed, today=today, invoices=60, payments=300, bills=0, expenses=200, currencies=currencies,
        days_back=70, days_ahead=5,
    )  # fmt: skip
    add_paid_bills(books, seed, today=today, count=40, currencies=currencies, days_back=70)
    return books


def _series_of(books: Books, period: Period) -> Any:
    first, end = window(period)
    return cash_series(
        movements(
            payments=[parse_payment(p) for p in books.payments],
            expenses=[parse_expense(e) for e in books.expenses],
            bills=[parse_bill(b) for b in books.bills],
            first=first,
            end=end,
        ),
        buckets(period),
    )


def _as_sums(series: Any) -> dict[tuple[str, str, int], Decimal]:
    sums = {}
    for s in series.currencies:
        for way, amounts in (("in", s.cash_in), ("out", s.cash_out)):
            for n, amount in enumerate(amounts):
                if amount:
                    sums[(s.currency, way, n)] = amount
    return sums


def test_a_weekly_chart_is_the_weeks_days_across_a_month_end() -> None:
    spans = buckets(WEEK)
    assert [b.first_day for b in spans] == [dt.date(2027, 3, 29) + dt.timedelta(days=n) for n in range(7)]
    assert [b.label for b in spans] == ["Mon 29", "Tue 30", "Wed 31", "Thu 1", "Fri 2", "Sat 3", "Sun 4"]
    books = _books(7, dt.date(2027, 4, 4))
    days = [
        (WEEK.first_day + dt.timedelta(days=n), WEEK.first_day + dt.timedelta(days=n + 1)) for n in range(7)
    ]
    expected = cash_sums(books, days)
    assert len({code for code, _, _ in expected}) == 3 and {w for _, w, _ in expected} == {"in", "out"}
    assert _as_sums(_series_of(books, WEEK)) == expected


def test_a_daily_chart_is_the_last_8_weeks_ending_yesterday() -> None:
    spans = buckets(DAY)
    assert DAY.first_day == dt.date(2027, 3, 1)
    assert (spans[0].first_day, spans[-1].end_day) == (dt.date(2027, 1, 5), dt.date(2027, 3, 2))
    assert all(b.end_day - b.first_day == dt.timedelta(days=7) for b in spans)
    assert [b.label for b in spans][:3] == ["Jan 5", "Jan 12", "Jan 19"]
    books = _books(11, dt.date(2027, 3, 1))
    expected = cash_sums(books, [(b.first_day, b.end_day) for b in spans])
    assert len({code for code, _, _ in expected}) == 3
    series = _series_of(books, DAY)
    assert _as_sums(series) == expected
    # What moved before the 8 weeks or after yesterday is not drawn.
    assert sum(s.movements for s in series.currencies) < sum(
        1 for p in books.payments if p["vis_state"] == 0 and not p["from_credit"]
    ) + sum(1 for e in books.expenses if e["vis_state"] == 0)


def test_bill_payments_are_cash_out_on_their_paid_date_and_deleted_ones_are_not() -> None:
    paid_on = dt.date(2027, 3, 31)
    bill = parse_bill(
        bill_json(
            1,
            outstanding="0.00",
            currency="EUR",
            due_date=paid_on,
            status="paid",
            payments=(
                bill_payment_json(1, amount="100.00", currency="EUR", paid_date=paid_on),
                bill_payment_json(2, amount="999.00", currency="EUR", paid_date=paid_on, vis_state=1),
                bill_payment_json(3, amount="5.00", currency="EUR", paid_date=dt.date(2027, 3, 28)),
            ),
        )
    )
    [moved] = movements(bills=[bill], first=WEEK.first_day, end=WEEK.end_day)
    assert (moved.day, moved.amount.amount, moved.direction) == (paid_on, D("100.00"), Direction.OUT)


def _digest_and_chart(books: Books, period: Period, now: dt.datetime) -> Any:
    inputs = DigestInputs(
        payments=tuple(parse_payment(p) for p in books.payments),
        invoices=tuple(parse_invoice(i) for i in books.invoices),
        bills=(),
        expenses=tuple(parse_expense(e) for e in books.expenses),
    )
    digest = compute(inputs, period, now)
    return digest, chart(digest, _series_of(books, period))


def test_the_png_decodes_at_its_size_one_row_per_currency() -> None:
    books = _books(3, dt.date(2027, 4, 4))
    _, drawn = _digest_and_chart(books, WEEK, NOW)
    png = chart_png(drawn)
    assert png.startswith(PNG_SIGNATURE)
    image = Image.open(io.BytesIO(png))
    image.load()
    assert image.format == "PNG" and image.mode == "RGB"
    assert image.size == chart_size(drawn) == (1200, 78 + 3 * 330 + 34)
    assert [p.currency for p in drawn.panels] and drawn.hidden == ()
    assert chart_png(drawn) == png  # the same chart, the same bytes
    # Both bar colours are drawn: cash in and cash out.
    colours = {colour for _, colour in image.getcolors(maxcolors=1 << 16) or []}
    assert {(46, 125, 50), (198, 40, 40)} <= colours


def test_at_most_three_currencies_are_drawn_and_the_others_named() -> None:
    books = _books(5, dt.date(2027, 4, 4), currencies=("USD", "EUR", "CAD", "GBP", "JPY"))
    _, drawn = _digest_and_chart(books, WEEK, NOW)
    assert len(drawn.panels) == MAX_CURRENCIES
    shown = {p.currency for p in drawn.panels}
    assert shown | set(drawn.hidden) == {"USD", "EUR", "CAD", "GBP", "JPY"} and not shown & set(drawn.hidden)
    # The most active currencies are drawn, counted in objects, never in money.
    activity: dict[str, int] = defaultdict(int)
    for p in drawn.panels:
        activity[p.currency] = (p.cash.movements if p.cash else 0) + (p.aging.count if p.aging else 0)
    assert min(activity.values()) > 0
    text = alt_text(drawn)
    assert f"Not shown: {', '.join(drawn.hidden)}." in text
    image = Image.open(io.BytesIO(chart_png(drawn)))
    assert image.size == chart_size(drawn)


def test_alt_text_says_every_bar_when_it_fits() -> None:
    books = Books()
    first = WEEK.first_day
    books.payments += [
        payment_json(1, amount="1200.50", currency="USD", date=first),
        payment_json(2, amount="300.00", currency="USD", date=first + dt.timedelta(days=3)),
    ]
    books.expenses.append(expense_json(3, amount="80.25", currency="USD", date=first + dt.timedelta(days=6)))
    books.invoices.append(
        invoice_json(
            4,
            amount="500.00",
            outstanding="500.00",
            currency="USD",
            create_date=dt.date(2027, 1, 1),
            due_date=dt.date(2027, 1, 31),
        )
    )
    _, drawn = _digest_and_chart(books, WEEK, NOW)
    text = alt_text(drawn)
    assert text == (
        "Chart. Cash in and out, receivables by age · Mar 29 - Apr 4, 2027. Cash in against cash out "
        "by day, per currency. USD: in 1,500.50 USD (Mon 29 1,200.50, Tue 30 0, Wed 31 0, Thu 1 300.00, "
        "Fri 2 0, Sat 3 0, Sun 4 0); out 80.25 USD (Mon 29 0, Tue 30 0, Wed 31 0, Thu 1 0, Fri 2 0, "
        "Sat 3 0, Sun 4 80.25). Owed 500.00 USD: not yet due 0.00 USD; 1-30 days 0.00 USD; 31-60 days "
        "0.00 USD; 61-90 days 500.00 USD; over 90 days 0.00 USD."  # due Jan 31: 64 days before Apr 5
    )


def test_alt_text_stays_within_slacks_limit_by_saying_less() -> None:
    books = _books(9, dt.date(2027, 3, 1))
    _, drawn = _digest_and_chart(books, DAY, DAY_NOW)
    text = alt_text(drawn)
    assert len(text) <= ALT_TEXT_MAX
    assert "by week over the last 8 weeks" in text
    for panel in drawn.panels:
        assert panel.cash is not None
        assert f"in {panel.cash.total_in:,} {panel.currency}" in text  # totals, then the busiest week
    assert "most in" in text


def test_a_net_negative_bar_is_drawn_as_none_and_said_in_words() -> None:
    books = Books()
    books.payments.append(payment_json(1, amount="-250.00", currency="USD", date=WEEK.first_day))
    books.expenses.append(expense_json(2, amount="-40.00", currency="USD", date=WEEK.first_day))
    _, drawn = _digest_and_chart(books, WEEK, NOW)
    image = Image.open(io.BytesIO(chart_png(drawn)))
    assert image.size == chart_size(drawn)
    assert "in -250.00 USD (Mon 29 -250.00," in alt_text(drawn)


def test_an_empty_business_gets_an_empty_chart_that_says_so() -> None:
    _, drawn = _digest_and_chart(Books(), WEEK, NOW)
    assert drawn.empty
    assert alt_text(drawn).endswith("No cash came in or went out, and nothing is owed.")
    image = Image.open(io.BytesIO(chart_png(drawn)))
    assert image.size == (1200, 78 + 330 + 34)


@pytest.mark.parametrize(
    ("top", "ticks"),
    [
        (D("16000"), [0, 5000, 10000, 15000, 20000]),
        (D("15000"), [0, 5000, 10000, 15000]),
        (D("0.4"), [0, D("0.1"), D("0.2"), D("0.3"), D("0.4")]),
        (D("1157.49"), [0, 500, 1000, 1500]),
        (D("9"), [0, D("2.5"), 5, D("7.5"), 10]),
        (D("0"), [0, 1]),
    ],
)
def test_axis_ticks_reach_the_tallest_bar(top: Decimal, ticks: list[Decimal]) -> None:
    got = nice_ticks(top)
    assert list(got) == ticks
    assert top == 0 or (got[-1] >= top and 3 <= len(got) <= 6)


@pytest.mark.parametrize(
    ("amount", "label"),
    [
        (D("950"), "950"),
        (D("0.5"), "0.5"),
        (D("1500"), "1.5k"),
        (D("12000"), "12k"),
        (D("2250000"), "2.25M"),
        (D("3000000000"), "3B"),
    ],
)
def test_compact_axis_labels(amount: Decimal, label: str) -> None:
    assert compact(amount) == label
