"""The digest's figures, from typed FreshBooks objects, a period and `now`. Pure.

Money is never added across currencies: every total is one amount per currency, and rankings by
amount (the largest payments, the top expense categories) are made within one currency. Ties are
broken by a stable key (date, then id, or the name), so the same books always give the same digest.

What counts (decisions, each a line of this module):
- cash collected: live payments dated in the period, not those made from client credit (credit
  applied to an invoice is not cash coming in);
- invoiced: live invoices dated (`create_date`, the invoice date) in the period, drafts excluded
  (FreshBooks' own reports ignore drafts, freshbooks-reports.md §3.3);
- receivables: live, non-draft invoices with money still owed, aged by their due date against
  today in the schedule's zone (as of `now`): not yet due, 1-30, 31-60, 61-90, over 90 days;
- bills: live bills with money still owed, due from today for 7 days (today included), or overdue;
- expenses: live expenses dated in the period, by category (the five largest per currency).
Flows (collected, invoiced, expenses) are compared with the period before; receivables and bills
are positions as of now and have no earlier value to compare with.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from connector.domain.money import Money
from connector.features.digest.period import Period
from connector.features.digest.series import Movement
from connector.freshbooks.models import Bill, Expense, Invoice, Payment

LARGEST_PAYMENTS = 3
MOST_OVERDUE = 5
TOP_CATEGORIES = 5
BILLS_DUE_WITHIN = dt.timedelta(days=7)
UNCATEGORIZED = "Uncategorized"
_ZERO = Decimal(0)


# -- comparisons ------------------------------------------------------------------------------


class Trend(enum.StrEnum):
    UP = "up"
    DOWN = "down"
    SAME = "same"


@dataclass(frozen=True, slots=True)
class Change:
    """One figure now and in the previous period (an amount in one currency, or a count)."""

    current: Decimal
    previous: Decimal

    @property
    def delta(self) -> Decimal:
        return self.current - self.previous

    @property
    def trend(self) -> Trend:
        if self.delta > 0:
            return Trend.UP
        return Trend.DOWN if self.delta < 0 else Trend.SAME

    @property
    def percent(self) -> Decimal | None:
        """The change in percent of the previous value; None when there was nothing before."""
        if self.previous == 0:
            return None
        return self.delta * 100 / abs(self.previous)


@dataclass(frozen=True, slots=True)
class CurrencyChange:
    currency: str
    change: Change


@dataclass(frozen=True, slots=True)
class Flow:
    """How many, and how much per currency, in the period against the one before."""

    count: Change
    totals: tuple[CurrencyChange, ...]  # every currency of either period, by code

    def total(self, currency: str) -> Change | None:
        return next((t.change for t in self.totals if t.currency == currency), None)


def _sums(items: Iterable[Money]) -> dict[str, Decimal]:
    sums: dict[str, Decimal] = defaultdict(Decimal)
    for money in items:
        sums[money.currency] += money.amount
    return sums


def flow(current: Iterable[Money], previous: Iterable[Money]) -> Flow:
    """Count and per-currency totals of two periods' amounts. Pure."""
    now_list, before_list = list(current), list(previous)
    now_sums, before_sums = _sums(now_list), _sums(before_list)
    currencies = sorted(set(now_sums) | set(before_sums))
    return Flow(
        count=Change(Decimal(len(now_list)), Decimal(len(before_list))),
        totals=tuple(
            CurrencyChange(code, Change(now_sums.get(code, _ZERO), before_sums.get(code, _ZERO)))
            for code in currencies
        ),
    )


# -- the parts of a digest --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DigestInputs:
    """The typed objects a digest is computed from, as `fetch.fetch_inputs` lists them."""

    payments: tuple[Payment, ...]  # dated in the period or the one before
    invoices: tuple[Invoice, ...]  # dated in either period, or with money still owed
    bills: tuple[Bill, ...]  # open: unpaid, partial or overdue
    expenses: tuple[Expense, ...]  # dated in the period or the one before
    unreadable: int = 0  # objects FreshBooks returned that could not be parsed: left out, and said
    bills_enabled: bool = True  # False: the account has no Bills (accounts payable) feature
    # The chart's cash in and out over `series.window(period)` (8 weeks for a daily digest), made
    # from every listed payment, expense and bill payment in it, not only from those kept above.
    movements: tuple[Movement, ...] = ()


@dataclass(frozen=True, slots=True)
class LargePayment:
    payment_id: int
    amount: Money
    client: str | None
    date: dt.date
    invoice_id: int | None
    invoice_number: str | None


@dataclass(frozen=True, slots=True)
class CashCollected:
    flow: Flow
    largest: tuple[LargePayment, ...]  # the LARGEST_PAYMENTS largest per currency, by currency


@dataclass(frozen=True, slots=True)
class Invoiced:
    flow: Flow


class AgeBucket(enum.StrEnum):
    NOT_DUE = "not yet due"
    DAYS_1_30 = "1-30 days overdue"
    DAYS_31_60 = "31-60 days overdue"
    DAYS_61_90 = "61-90 days overdue"
    OVER_90 = "over 90 days overdue"


def age_bucket(days_overdue: int) -> AgeBucket:
    """The aging bucket of an invoice `days_overdue` days past its due date (0 or less: not due). Pure."""
    if days_overdue <= 0:
        return AgeBucket.NOT_DUE
    if days_overdue <= 30:
        return AgeBucket.DAYS_1_30
    if days_overdue <= 60:
        return AgeBucket.DAYS_31_60
    if days_overdue <= 90:
        return AgeBucket.DAYS_61_90
    return AgeBucket.OVER_90


@dataclass(frozen=True, slots=True)
class Aging:
    """Money still owed in one currency, by age."""

    currency: str
    buckets: tuple[tuple[AgeBucket, Decimal], ...]  # every bucket, in AgeBucket order
    count: int

    @property
    def total(self) -> Decimal:
        return sum((amount for _, amount in self.buckets), _ZERO)

    def amount(self, bucket: AgeBucket) -> Decimal:
        return dict(self.buckets)[bucket]


@dataclass(frozen=True, slots=True)
class OverdueInvoice:
    invoice_id: int
    number: str | None
    client: str | None
    days_overdue: int
    owed: Money
    due_date: dt.date


@dataclass(frozen=True, slots=True)
class Receivables:
    aging: tuple[Aging, ...]  # one per currency, by code
    most_overdue: tuple[OverdueInvoice, ...]  # at most MOST_OVERDUE, most days first


@dataclass(frozen=True, slots=True)
class BillDue:
    bill_id: int
    number: str | None
    vendor: str | None
    owed: Money
    due_date: dt.date


@dataclass(frozen=True, slots=True)
class BillsDue:
    due_soon: tuple[BillDue, ...]  # due today or in the 6 days after it, soonest first
    overdue: tuple[BillDue, ...]  # past due, oldest due date first
    due_soon_totals: tuple[Money, ...]  # per currency, by code
    overdue_totals: tuple[Money, ...]


@dataclass(frozen=True, slots=True)
class CategorySpend:
    category: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class ExpenseCategories:
    currency: str
    top: tuple[CategorySpend, ...]  # at most TOP_CATEGORIES, largest first
    other: Decimal  # the remaining categories together
    other_categories: int


@dataclass(frozen=True, slots=True)
class Expenses:
    flow: Flow
    by_category: tuple[ExpenseCategories, ...]  # one per currency spent in the period, by code


@dataclass(frozen=True, slots=True)
class Digest:
    period: Period
    previous: Period
    as_of: dt.datetime  # `now`: receivables and bills are as of this instant
    today: dt.date  # `now`'s date in the period's zone, which ages invoices and bills
    cash: CashCollected
    invoiced: Invoiced
    receivables: Receivables
    bills: BillsDue
    expenses: Expenses
    unreadable: int  # objects left out because they could not be read
    bills_enabled: bool = True  # False: the FreshBooks account has no Bills feature


# -- the figures ------------------------------------------------------------------------------


def _is_draft(invoice: Invoice) -> bool:
    if invoice.v3_status is not None:
        return invoice.v3_status == "draft"
    return invoice.status == 1


def _collected(payment: Payment, period: Period) -> bool:
    return (
        not payment.is_deleted
        and not payment.from_credit
        and payment.date is not None
        and period.contains_day(payment.date)
    )


def _invoiced(invoice: Invoice, period: Period) -> bool:
    return (
        not invoice.is_deleted
        and not _is_draft(invoice)
        and invoice.create_date is not None
        and period.contains_day(invoice.create_date)
    )


def _spent(expense: Expense, period: Period) -> bool:
    return not expense.is_deleted and expense.date is not None and period.contains_day(expense.date)


def _payment_client(payment: Payment, invoice: Invoice | None) -> str | None:
    if payment.client is not None and payment.client.display_name:
        return payment.client.display_name
    return invoice.client_name if invoice is not None else None


def cash_collected(
    payments: Iterable[Payment], period: Period, invoices: Iterable[Invoice] = ()
) -> CashCollected:
    """`invoices` name the invoices paid, where known (a payment names only the invoice's id)."""
    previous = period.previous()
    known = {invoice.id: invoice for invoice in invoices}
    payments = list(payments)
    current = [p for p in payments if _collected(p, period)]
    by_currency: dict[str, list[Payment]] = defaultdict(list)
    for payment in current:
        by_currency[payment.amount.currency].append(payment)
    largest: list[LargePayment] = []
    for code in sorted(by_currency):
        ranked = sorted(by_currency[code], key=lambda p: (-p.amount.amount, p.date, p.id))
        for p in ranked[:LARGEST_PAYMENTS]:
            invoice = p.invoice or known.get(p.invoice_id or 0)
            assert p.date is not None  # _collected
            largest.append(
                LargePayment(
                    payment_id=p.id,
                    amount=p.amount,
                    client=_payment_client(p, invoice),
                    date=p.date,
                    invoice_id=p.invoice_id,
                    invoice_number=invoice.number if invoice is not None else None,
                )
            )
    return CashCollected(
        flow=flow((p.amount for p in current), (p.amount for p in payments if _collected(p, previous))),
        largest=tuple(largest),
    )


def invoiced(invoices: Iterable[Invoice], period: Period) -> Invoiced:
    previous = period.previous()
    invoices = list(invoices)
    return Invoiced(
        flow=flow(
            (i.amount for i in invoices if _invoiced(i, period)),
            (i.amount for i in invoices if _invoiced(i, previous)),
        )
    )


def _due(invoice: Invoice) -> dt.date | None:
    return invoice.due_date or invoice.create_date  # FreshBooks always sets a due date; just in case


def receivables(invoices: Iterable[Invoice], today: dt.date) -> Receivables:
    owed: dict[str, dict[AgeBucket, Decimal]] = defaultdict(lambda: dict.fromkeys(AgeBucket, _ZERO))
    counts: dict[str, int] = defaultdict(int)
    overdue: list[OverdueInvoice] = []
    for invoice in invoices:
        outstanding = invoice.outstanding
        if invoice.is_deleted or _is_draft(invoice) or outstanding is None or outstanding.amount <= 0:
            continue
        due = _due(invoice)
        days = (today - due).days if due is not None else 0
        owed[outstanding.currency][age_bucket(days)] += outstanding.amount
        counts[outstanding.currency] += 1
        if due is not None and days > 0:
            overdue.append(
                OverdueInvoice(
                    invoice_id=invoice.id,
                    number=invoice.number,
                    client=invoice.client_name,
                    days_overdue=days,
                    owed=outstanding,
                    due_date=due,
                )
            )
    # Most days overdue first; the same number of days: the older invoice (lower id) first.
    overdue.sort(key=lambda o: (-o.days_overdue, o.invoice_id))
    return Receivables(
        aging=tuple(Aging(code, tuple(owed[code].items()), counts[code]) for code in sorted(owed)),
        most_overdue=tuple(overdue[:MOST_OVERDUE]),
    )


def _bill_owed(bill: Bill) -> Money | None:
    if bill.outstanding is not None:
        return bill.outstanding if bill.outstanding.amount > 0 else None
    if bill.status == "paid":
        return None
    return bill.total_amount or bill.amount  # no outstanding given: an open bill owes its total


def bills_due(bills: Iterable[Bill], today: dt.date) -> BillsDue:
    soon: list[BillDue] = []
    late: list[BillDue] = []
    horizon = today + BILLS_DUE_WITHIN
    for bill in bills:
        owed = _bill_owed(bill)
        if bill.is_deleted or owed is None or bill.due_date is None:
            continue
        item = BillDue(bill.id, bill.number, bill.vendor_name, owed, bill.due_date)
        if bill.due_date < today:
            late.append(item)
        elif bill.due_date < horizon:
            soon.append(item)
    soon.sort(key=lambda b: (b.due_date, b.bill_id))
    late.sort(key=lambda b: (b.due_date, b.bill_id))

    def totals(items: list[BillDue]) -> tuple[Money, ...]:
        return tuple(Money(amount, code) for code, amount in sorted(_sums(b.owed for b in items).items()))

    return BillsDue(tuple(soon), tuple(late), totals(soon), totals(late))


def expenses(items: Iterable[Expense], period: Period) -> Expenses:
    previous = period.previous()
    items = list(items)
    current = [e for e in items if _spent(e, period)]
    spend: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for expense in current:
        spend[expense.amount.currency][expense.category or UNCATEGORIZED] += expense.amount.amount
    by_category = []
    for code in sorted(spend):
        ranked = sorted(spend[code].items(), key=lambda kv: (-kv[1], kv[0]))
        rest = ranked[TOP_CATEGORIES:]
        by_category.append(
            ExpenseCategories(
                currency=code,
                top=tuple(CategorySpend(name, amount) for name, amount in ranked[:TOP_CATEGORIES]),
                other=sum((amount for _, amount in rest), _ZERO),
                other_categories=len(rest),
            )
        )
    return Expenses(
        flow=flow((e.amount for e in current), (e.amount for e in items if _spent(e, previous))),
        by_category=tuple(by_category),
    )


def compute(inputs: DigestInputs, period: Period, now: dt.datetime) -> Digest:
    """The digest of `period` (compared with the one before), receivables and bills as of `now`."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    today = now.astimezone(period.zone).date()
    return Digest(
        period=period,
        previous=period.previous(),
        as_of=now,
        today=today,
        cash=cash_collected(inputs.payments, period, inputs.invoices),
        invoiced=invoiced(inputs.invoices, period),
        receivables=receivables(inputs.invoices, today),
        bills=bills_due(inputs.bills, today),
        expenses=expenses(inputs.expenses, period),
        unreadable=inputs.unreadable,
        bills_enabled=inputs.bills_enabled,
    )
