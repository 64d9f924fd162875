"""The chart's series: cash in against cash out, per currency, in buckets of days. Pure.

Cash in is money received: live payments, not those made from client credit (as the digest's
"collected" figure). Cash out is money spent: live expenses by their date, and the live payments
of bills by their paid date (a bill's payments are its own records; FreshBooks does not list them
among expenses). A weekly digest shows its week day by day; a daily one shows the last 8 weeks
(rolling weeks that end with the day reported, so every bar is a whole week), because one day's
bars say little. Dates are FreshBooks' calendar days, read as days of the schedule's zone, like
every other date of the digest.

`movements` turns typed objects into small `Movement`s as they are listed, so the fetch can keep
8 weeks of history without keeping 8 weeks of objects.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal

from connector.domain.money import Money
from connector.features.digest.period import Cadence, Period
from connector.freshbooks.models import Bill, Expense, Payment

HISTORY_WEEKS = 8  # the weeks a daily digest's chart shows
_ONE_DAY = dt.timedelta(days=1)
_WEEK = dt.timedelta(days=7)
_ZERO = Decimal(0)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class Direction(enum.StrEnum):
    IN = "in"
    OUT = "out"


@dataclass(frozen=True, slots=True)
class Movement:
    """Money that came in or went out on a day (what the chart needs of a payment or expense)."""

    day: dt.date
    amount: Money
    direction: Direction


@dataclass(frozen=True, slots=True)
class Bucket:
    """Days [first_day, end_day) drawn as one bar pair."""

    first_day: dt.date
    end_day: dt.date
    label: str  # short, for an axis: "Mon 23" or "Oct 12"

    def contains(self, day: dt.date) -> bool:
        return self.first_day <= day < self.end_day


def _day_label(day: dt.date) -> str:
    return f"{_WEEKDAYS[day.weekday()]} {day.day}"


def _week_label(day: dt.date) -> str:
    return f"{_MONTHS[day.month - 1]} {day.day}"


def buckets(period: Period) -> tuple[Bucket, ...]:
    """A weekly period's days, or the 8 weeks ending with a daily period's day, oldest first."""
    if period.cadence is Cadence.WEEKLY:
        days = [period.first_day + n * _ONE_DAY for n in range((period.end_day - period.first_day).days)]
        return tuple(Bucket(day, day + _ONE_DAY, _day_label(day)) for day in days)
    starts = [period.end_day - (HISTORY_WEEKS - n) * _WEEK for n in range(HISTORY_WEEKS)]
    return tuple(Bucket(start, start + _WEEK, _week_label(start)) for start in starts)


def window(period: Period) -> tuple[dt.date, dt.date]:
    """The days the chart covers, as (first, day after the last)."""
    spans = buckets(period)
    return spans[0].first_day, spans[-1].end_day


def _inside(day: dt.date | None, first: dt.date, end: dt.date) -> bool:
    return day is not None and first <= day < end


def payment_movements(payment: Payment, first: dt.date, end: dt.date) -> Iterator[Movement]:
    if not payment.is_deleted and not payment.from_credit and _inside(payment.date, first, end):
        assert payment.date is not None  # _inside
        yield Movement(payment.date, payment.amount, Direction.IN)


def expense_movements(expense: Expense, first: dt.date, end: dt.date) -> Iterator[Movement]:
    if not expense.is_deleted and _inside(expense.date, first, end):
        assert expense.date is not None  # _inside
        yield Movement(expense.date, expense.amount, Direction.OUT)


def bill_movements(bill: Bill, first: dt.date, end: dt.date) -> Iterator[Movement]:
    """A live bill's payments made in the window (`Bill.payments` leaves deleted ones out)."""
    if bill.is_deleted:
        return
    for paid in bill.payments:
        if _inside(paid.paid_date, first, end):
            assert paid.paid_date is not None  # _inside
            yield Movement(paid.paid_date, paid.amount, Direction.OUT)


def movements(
    *,
    payments: Iterable[Payment] = (),
    expenses: Iterable[Expense] = (),
    bills: Iterable[Bill] = (),
    first: dt.date,
    end: dt.date,
) -> Iterator[Movement]:
    """Every movement of these objects in [first, end)."""
    for payment in payments:
        yield from payment_movements(payment, first, end)
    for expense in expenses:
        yield from expense_movements(expense, first, end)
    for bill in bills:
        yield from bill_movements(bill, first, end)


@dataclass(frozen=True, slots=True)
class CurrencySeries:
    """One currency's cash in and cash out, one amount per bucket."""

    currency: str
    cash_in: tuple[Decimal, ...]
    cash_out: tuple[Decimal, ...]
    movements: int  # how many movements made them: ranks currencies without adding amounts

    @property
    def total_in(self) -> Decimal:
        return sum(self.cash_in, _ZERO)

    @property
    def total_out(self) -> Decimal:
        return sum(self.cash_out, _ZERO)


@dataclass(frozen=True, slots=True)
class CashSeries:
    buckets: tuple[Bucket, ...]
    currencies: tuple[CurrencySeries, ...]  # every currency that moved, by code


def cash_series(items: Iterable[Movement], spans: tuple[Bucket, ...]) -> CashSeries:
    """Sums per currency, direction and bucket; movements outside every bucket are left out."""
    sums: dict[tuple[str, Direction, int], Decimal] = defaultdict(Decimal)
    counts: dict[str, int] = defaultdict(int)
    if not spans:
        return CashSeries(spans, ())
    first, end = spans[0].first_day, spans[-1].end_day
    for item in items:
        if not first <= item.day < end:
            continue
        index = next(n for n, span in enumerate(spans) if span.contains(item.day))
        sums[(item.amount.currency, item.direction, index)] += item.amount.amount
        counts[item.amount.currency] += 1
    return CashSeries(
        spans,
        tuple(
            CurrencySeries(
                code,
                tuple(sums.get((code, Direction.IN, n), _ZERO) for n in range(len(spans))),
                tuple(sums.get((code, Direction.OUT, n), _ZERO) for n in range(len(spans))),
                counts[code],
            )
            for code in sorted(counts)
        ),
    )
