"""The digest's figures from typed objects: what counts, one line per currency, stable ties."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from connector.domain.money import Money
from connector.features.digest.figures import (
    AgeBucket,
    Change,
    DigestInputs,
    Trend,
    age_bucket,
    compute,
)
from connector.features.digest.period import Cadence, period_just_ended
from connector.freshbooks.models import (
    Bill,
    Expense,
    Invoice,
    Payment,
    parse_bill,
    parse_expense,
    parse_invoice,
    parse_payment,
)
from tests.support.books import bill_json, client_json, expense_json, invoice_json, payment_json

NEW_YORK = ZoneInfo("America/New_York")
D = Decimal


def day(month: int, dom: int, year: int = 2027) -> dt.date:
    return dt.date(year, month, dom)


# Monday 2027-04-05, 08:00 New York: last week is Mon Mar 29 - Sun Apr 4 (across a month end),
# the week before it Mar 22 - Mar 28.
NOW = dt.datetime(2027, 4, 5, 8, tzinfo=NEW_YORK)
WEEK = period_just_ended(NOW, cadence=Cadence.WEEKLY, zone=NEW_YORK)
TODAY = day(4, 5)


def pay(
    pid: int, amount: str, when: dt.date, code: str = "USD", client: str | None = "Northwind", **kw: Any
) -> Payment:
    raw = payment_json(pid, amount=amount, currency=code, date=when, client_id=1 if client else 0, **kw)
    if client:
        raw["client"] = client_json(1, client)
    return parse_payment(raw)


def inv(
    iid: int, amount: str, outstanding: str, created: dt.date, due: dt.date, code: str = "USD", **kw: Any
) -> Invoice:
    return parse_invoice(
        invoice_json(
            iid,
            amount=amount,
            outstanding=outstanding,
            currency=code,
            create_date=created,
            due_date=due,
            **kw,
        )
    )


def exp(eid: int, amount: str, when: dt.date, category: str | None, code: str = "USD", **kw: Any) -> Expense:
    raw = expense_json(eid, amount=amount, currency=code, date=when, category_id=9 if category else 0, **kw)
    if category:
        raw["category"] = {"category": category, "categoryid": 9, "id": 9, "parentid": 0}
    return parse_expense(raw)


def bill(bid: int, outstanding: str, due: dt.date, code: str = "USD", **kw: Any) -> Bill:
    return parse_bill(bill_json(bid, outstanding=outstanding, currency=code, due_date=due, **kw))


def inputs(**kw: Any) -> DigestInputs:
    return DigestInputs(
        payments=tuple(kw.get("payments", ())),
        invoices=tuple(kw.get("invoices", ())),
        bills=tuple(kw.get("bills", ())),
        expenses=tuple(kw.get("expenses", ())),
    )


def test_a_week_across_a_month_end_counts_its_own_days_only() -> None:
    payments = [
        pay(1, "10.00", day(3, 28)),  # the week before
        pay(2, "20.00", day(3, 29)),  # first day
        pay(3, "40.00", day(3, 31)),
        pay(4, "80.00", day(4, 1)),
        pay(5, "160.00", day(4, 4)),  # last day
        pay(6, "320.00", day(4, 5)),  # today: the next period
        pay(7, "640.00", day(3, 21)),  # before the comparison
    ]
    digest = compute(inputs(payments=payments), WEEK, NOW)
    assert digest.cash.flow.count == Change(D(4), D(1))
    assert digest.cash.flow.total("USD") == Change(D("300.00"), D("10.00"))
    assert [p.payment_id for p in digest.cash.largest] == [5, 4, 3]
    assert (digest.period.first_day, digest.previous.first_day) == (day(3, 29), day(3, 22))


def test_three_currencies_are_never_added() -> None:
    payments = [
        pay(1, "100.00", day(3, 30), "USD"),
        pay(2, "100.00", day(3, 30), "EUR"),
        pay(3, "10000", day(3, 30), "JPY"),
        pay(4, "50.00", day(3, 23), "EUR"),
    ]
    invoices = [
        inv(1, "500.00", "500.00", day(3, 30), day(4, 29), "USD"),
        inv(2, "700.00", "200.00", day(1, 2), day(2, 1), "EUR"),  # 63 days overdue
        inv(3, "90000", "90000", day(1, 1), day(1, 1), "JPY"),  # 94 days overdue
    ]
    expenses = [exp(1, "30.00", day(4, 2), "Travel", "USD"), exp(2, "45.00", day(4, 2), "Travel", "EUR")]
    digest = compute(inputs(payments=payments, invoices=invoices, expenses=expenses), WEEK, NOW)
    assert [(t.currency, t.change) for t in digest.cash.flow.totals] == [
        ("EUR", Change(D("100.00"), D("50.00"))),
        ("JPY", Change(D(10000), D(0))),
        ("USD", Change(D("100.00"), D(0))),
    ]
    assert digest.cash.flow.count == Change(D(3), D(1))
    # The largest payments are ranked within each currency, never against each other.
    assert [(p.amount.currency, p.payment_id) for p in digest.cash.largest] == [
        ("EUR", 2),
        ("JPY", 3),
        ("USD", 1),
    ]
    aging = {a.currency: a for a in digest.receivables.aging}
    assert aging["USD"].amount(AgeBucket.NOT_DUE) == D("500.00")
    assert aging["EUR"].amount(AgeBucket.DAYS_61_90) == D("200.00")
    assert aging["JPY"].amount(AgeBucket.OVER_90) == D(90000)
    assert [a.total for a in digest.receivables.aging] == [D("200.00"), D(90000), D("500.00")]
    assert [(o.invoice_id, o.days_overdue) for o in digest.receivables.most_overdue] == [(3, 94), (2, 63)]
    assert [(c.currency, c.top[0].amount) for c in digest.expenses.by_category] == [
        ("EUR", D("45.00")),
        ("USD", D("30.00")),
    ]
    assert [(t.currency, t.change.current) for t in digest.invoiced.flow.totals] == [("USD", D("500.00"))]


def test_ties_are_broken_the_same_way_every_time() -> None:
    payments = [pay(9, "100.00", day(4, 1)), pay(3, "100.00", day(4, 1)), pay(5, "100.00", day(3, 30))]
    payments += [pay(4, "100.00", day(4, 2))]
    invoices = [inv(n, "10.00", "10.00", day(1, 1), day(3, 1)) for n in (8, 2, 6, 4, 7, 1)]
    expenses = [exp(n, "5.00", day(4, 1), name) for n, name in enumerate("FEDCBA", start=1)]
    bills = [bill(n, "1.00", TODAY) for n in (5, 3, 4)]
    for _ in range(2):
        digest = compute(
            inputs(payments=payments, invoices=invoices, expenses=expenses, bills=bills), WEEK, NOW
        )
        # Equal amounts: the earlier payment first, then the lower id.
        assert [p.payment_id for p in digest.cash.largest] == [5, 3, 9]
        # Equally overdue: the lower invoice id first; only five.
        assert [o.invoice_id for o in digest.receivables.most_overdue] == [1, 2, 4, 6, 7]
        # Equal spend: by name; the sixth category is counted in "other".
        (usd,) = digest.expenses.by_category
        assert [c.category for c in usd.top] == ["A", "B", "C", "D", "E"]
        assert (usd.other, usd.other_categories) == (D("5.00"), 1)
        assert [b.bill_id for b in digest.bills.due_soon] == [3, 4, 5]
        payments.reverse()
        invoices.reverse()
        expenses.reverse()
        bills.reverse()


def test_an_empty_business() -> None:
    digest = compute(inputs(), WEEK, NOW)
    assert digest.cash.flow.count == Change(D(0), D(0))
    assert digest.cash.flow.totals == () and digest.cash.largest == ()
    assert digest.invoiced.flow.totals == () and digest.expenses.flow.totals == ()
    assert digest.receivables.aging == () and digest.receivables.most_overdue == ()
    assert digest.bills.due_soon == () and digest.bills.overdue == ()
    assert digest.expenses.by_category == ()


def test_what_does_not_count() -> None:
    payments = [
        pay(1, "1.00", day(4, 1), from_credit=True),  # credit applied: no cash came in
        pay(2, "2.00", day(4, 1), vis_state=1),  # deleted
        pay(3, "4.00", day(4, 1)),
    ]
    invoices = [
        inv(1, "10.00", "10.00", day(4, 1), day(1, 1), v3_status="draft"),
        inv(2, "20.00", "20.00", day(4, 1), day(1, 1), vis_state=1),
        inv(3, "40.00", "0.00", day(4, 1), day(1, 1), v3_status="paid"),  # invoiced, nothing owed
        inv(4, "80.00", "80.00", day(4, 1), day(5, 1)),
    ]
    bills = [
        bill(1, "0.00", TODAY, status="paid"),
        bill(2, "5.00", TODAY, vis_state=1),
        bill(3, "7.00", TODAY + dt.timedelta(days=6)),  # the 7th day from today: due soon
        bill(4, "9.00", TODAY + dt.timedelta(days=7)),  # the 8th: not yet
        bill(5, "11.00", TODAY - dt.timedelta(days=1), status="overdue"),
    ]
    expenses = [exp(1, "3.00", day(4, 1), None, vis_state=1), exp(2, "6.00", day(4, 1), None)]
    digest = compute(inputs(payments=payments, invoices=invoices, bills=bills, expenses=expenses), WEEK, NOW)
    assert digest.cash.flow.total("USD") == Change(D("4.00"), D(0))
    assert digest.invoiced.flow.total("USD") == Change(D("120.00"), D(0))
    assert digest.invoiced.flow.count == Change(D(2), D(0))
    assert [(a.currency, a.total, a.count) for a in digest.receivables.aging] == [("USD", D("80.00"), 1)]
    assert [b.bill_id for b in digest.bills.due_soon] == [3]
    assert [b.bill_id for b in digest.bills.overdue] == [5]
    assert digest.bills.due_soon_totals == (Money(D("7.00"), "USD"),)
    (usd,) = digest.expenses.by_category
    assert [(c.category, c.amount) for c in usd.top] == [("Uncategorized", D("6.00"))]


@pytest.mark.parametrize(
    ("days", "bucket"),
    [
        (-3, AgeBucket.NOT_DUE),
        (0, AgeBucket.NOT_DUE),  # due today is not overdue yet
        (1, AgeBucket.DAYS_1_30),
        (30, AgeBucket.DAYS_1_30),
        (31, AgeBucket.DAYS_31_60),
        (60, AgeBucket.DAYS_31_60),
        (61, AgeBucket.DAYS_61_90),
        (90, AgeBucket.DAYS_61_90),
        (91, AgeBucket.OVER_90),
    ],
)
def test_age_buckets(days: int, bucket: AgeBucket) -> None:
    assert age_bucket(days) is bucket


def test_ages_count_from_today_in_the_schedules_zone_across_a_leap_day() -> None:
    # 2028-03-01 02:00 UTC is still Feb 29 in New York: an invoice due Jan 30 is 30 days overdue.
    now = dt.datetime(2028, 3, 1, 2, tzinfo=dt.UTC)
    period = period_just_ended(now, cadence=Cadence.DAILY, zone=NEW_YORK)
    invoice = inv(1, "10.00", "10.00", dt.date(2028, 1, 1), dt.date(2028, 1, 30))
    digest = compute(inputs(invoices=[invoice]), period, now)
    assert digest.today == dt.date(2028, 2, 29)
    assert digest.receivables.most_overdue[0].days_overdue == 30
    assert digest.receivables.aging[0].amount(AgeBucket.DAYS_1_30) == D("10.00")


def test_changes_say_up_or_down_and_by_how_much() -> None:
    assert (Change(D(150), D(100)).trend, Change(D(150), D(100)).percent) == (Trend.UP, D(50))
    assert (Change(D(75), D(100)).trend, Change(D(75), D(100)).percent) == (Trend.DOWN, D(-25))
    assert Change(D(5), D(0)).percent is None
    assert Change(D(5), D(5)).trend is Trend.SAME
    with pytest.raises(ValueError, match="aware"):
        compute(inputs(), WEEK, dt.datetime(2027, 4, 5))
