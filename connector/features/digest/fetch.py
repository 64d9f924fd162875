"""What a digest needs, listed from FreshBooks at send time (never inferred from webhooks).

Four list calls, side by side, every page of 100, one page per list held at a time; each object is
parsed as it arrives and kept only if the digest can use it, so memory grows with what is kept,
not with the raw answers:

- payments and expenses dated in the period or the one before (the comparison): FreshBooks'
  `date_min`/`date_max` filters take whole days (`date_max` exclusive, as documented), so they
  ask for the days covering both periods in FreshBooks' zone and in the schedule's, and the
  answer is sifted here to the periods' own days;
- every invoice, kept if it was dated in either period or still has money owed: no documented
  filter finds "still owed" whatever the status (only `v3_status=overdue` is known to work,
  freshbooks-reports.md §6.2), so all are listed, which is the one way to miss none;
- bills (no date filter exists, §6.4): open ones (`statuses[]` unpaid, partial, overdue) are
  kept; paid ones are listed too, for their payments, which the chart counts as cash out.

The chart's history (`series.window`: the week itself for a weekly digest, 8 weeks for a daily
one) widens the payments' and expenses' day filter; what lies in it is kept only as small
`Movement`s (a day, an amount, in or out), so 8 weeks of a big business cost little memory.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

from connector.domain.events import ObjectKind
from connector.features.digest.figures import DigestInputs
from connector.features.digest.period import Period, covering_days
from connector.features.digest.series import (
    Movement,
    bill_movements,
    expense_movements,
    payment_movements,
    window,
)
from connector.freshbooks.client import FreshBooksClient, FreshBooksError, ListPage
from connector.freshbooks.models import (
    EASTERN,
    Bill,
    Expense,
    Invoice,
    ObjectParseError,
    Payment,
    parse_bill,
    parse_expense,
    parse_invoice,
    parse_payment,
)
from connector.freshbooks.tokens import TokenSource

log = logging.getLogger(__name__)

_Obj = TypeVar("_Obj", Payment, Invoice, Bill, Expense)

OPEN_BILL_STATUSES = ("unpaid", "partial", "overdue")
LISTED_BILL_STATUSES = (*OPEN_BILL_STATUSES, "paid")  # paid ones for the chart's cash out
BILLS_NOT_ENABLED = "41001"
# What each list embeds: a payment's client and invoice (a payment names neither, and the
# invoice paid may be long settled, so not among the invoices kept), an expense's category and a
# bill's vendor (their names). Invoices carry their client's name themselves.
_INCLUDES: dict[ObjectKind, tuple[str, ...]] = {
    ObjectKind.INVOICE: (),
    ObjectKind.PAYMENT: ("invoice", "client"),
    ObjectKind.BILL: ("vendor",),
    ObjectKind.EXPENSE: ("category",),
}


def date_filter(period: Period, freshbooks_zone: dt.tzinfo) -> list[tuple[str, str]]:
    """`search[date_min]`/`search[date_max]` for the period, the one before it and the chart. Pure.

    Whole days covering both periods in FreshBooks' zone, widened to the periods' own days too
    (a date-only field is a calendar day, read as the schedule's) and to the chart's days;
    `date_max` is exclusive.
    """
    previous = period.previous()
    chart_first, chart_end = window(period)
    first, after = covering_days(previous.start, period.end, freshbooks_zone)
    first, after = min(first, previous.first_day, chart_first), max(after, period.end_day, chart_end)
    return [("search[date_min]", first.isoformat()), ("search[date_max]", after.isoformat())]


def _in_window(day: dt.date | None, period: Period) -> bool:
    return day is not None and (period.contains_day(day) or period.previous().contains_day(day))


def _owed(invoice: Invoice) -> bool:
    return invoice.outstanding is not None and invoice.outstanding.amount > 0


class _Cancelled(Exception):
    """Another list of the same digest failed: this one stops too (a digest is all or nothing)."""


def _sift(
    kind: ObjectKind,
    listed: Iterator[Mapping[str, object]],
    parse: Callable[[Mapping[str, object]], _Obj],
    wanted: Callable[[_Obj], bool],
    cancelled: threading.Event,
    *,
    moved: Callable[[_Obj], Iterator[Movement]] | None = None,
) -> tuple[tuple[_Obj, ...], int, tuple[Movement, ...]]:
    """The wanted objects of one listing, parsed as they arrive, how many could not be read, and
    the chart's movements of every object read (`moved`).

    An object listed twice (paging is by offset, so one created while the list is read shifts
    the pages under the reader) is kept once.
    """
    kept: list[_Obj] = []
    movements: list[Movement] = []
    seen: set[int] = set()
    unreadable = 0
    for raw in listed:
        if cancelled.is_set():
            raise _Cancelled
        try:
            obj = parse(raw)
        except ObjectParseError:
            unreadable += 1
            continue
        if obj.id in seen:
            continue
        seen.add(obj.id)
        if wanted(obj):
            kept.append(obj)
        if moved is not None:
            movements.extend(moved(obj))
    if unreadable:
        # Counts only: the objects' fields are customer data.
        log.warning("digest: %d %s objects could not be read and are left out", unreadable, kind)
    return tuple(kept), unreadable, tuple(movements)


def _bills(
    listed: Iterator[Mapping[str, object]],
    cancelled: threading.Event,
    moved: Callable[[Bill], Iterator[Movement]],
) -> tuple[tuple[Bill, ...] | None, int, tuple[Movement, ...]]:
    """Open bills and every listed bill's movements, or None when the account has no Bills
    feature: FreshBooks answers that with an error envelope, errno 41001, under HTTP 200 or 403
    (freshbooks-reports.md §6.4). Such a business still gets its digest, saying so; any other
    failure fails it."""

    def open_bill(bill: Bill) -> bool:
        return not bill.is_deleted and bill.status != "paid"  # listed only for its payments

    try:
        return _sift(ObjectKind.BILL, listed, parse_bill, open_bill, cancelled, moved=moved)
    except FreshBooksError as error:
        if error.code != BILLS_NOT_ENABLED:
            raise
        return None, 0, ()


def fetch_inputs(
    *,
    client: FreshBooksClient,
    tokens: TokenSource,
    connection_id: int,
    account_id: str,
    period: Period,
    freshbooks_zone: dt.tzinfo = EASTERN,
) -> DigestInputs:
    """List and sift what the digest for `period` (and its comparison) needs. Raises FreshBooksError
    or NoToken when FreshBooks cannot be read: a digest is all of it or nothing."""

    def listed(kind: ObjectKind, search: Sequence[tuple[str, str]] = ()) -> Iterator[Mapping[str, object]]:
        def with_token(call: Callable[[str], ListPage]) -> ListPage:
            return tokens.call(connection_id, call)

        return client.iter_list(
            with_token=with_token,
            account_id=account_id,
            kind=kind,
            search=search,
            includes=_INCLUDES[kind],
        )

    dates = date_filter(period, freshbooks_zone)
    first, end = window(period)
    cancelled = threading.Event()
    # The four lists are read side by side (FreshBooks answers each page in a fraction of a
    # second; in turn, a big business's 200 pages would add up), each one page at a time.
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="fbslack-digest") as pool:
        payments_job = pool.submit(
            _sift,
            ObjectKind.PAYMENT,
            listed(ObjectKind.PAYMENT, dates),
            parse_payment,
            lambda p: not p.is_deleted and _in_window(p.date, period),
            cancelled,
            moved=lambda p: payment_movements(p, first, end),
        )
        expenses_job = pool.submit(
            _sift,
            ObjectKind.EXPENSE,
            listed(ObjectKind.EXPENSE, dates),
            parse_expense,
            lambda e: not e.is_deleted and _in_window(e.date, period),
            cancelled,
            moved=lambda e: expense_movements(e, first, end),
        )
        invoices_job = pool.submit(
            _sift,
            ObjectKind.INVOICE,
            listed(ObjectKind.INVOICE),
            parse_invoice,
            lambda i: not i.is_deleted and (_owed(i) or _in_window(i.create_date, period)),
            cancelled,
        )
        bills_job = pool.submit(
            _bills,
            listed(ObjectKind.BILL, [("search[statuses][]", status) for status in LISTED_BILL_STATUSES]),
            cancelled,
            lambda b: bill_movements(b, first, end),
        )
        jobs: list[Future[Any]] = [payments_job, expenses_job, invoices_job, bills_job]
        # The first failure stops the other lists at their next object, rather than after them.
        wait(jobs, return_when=FIRST_EXCEPTION)
        if any(job.done() and job.exception() is not None for job in jobs):
            cancelled.set()
    failures = [
        error for job in jobs if (error := job.exception()) is not None and not isinstance(error, _Cancelled)
    ]
    if failures:
        raise failures[0]
    payments, bad_payments, paid_in = payments_job.result()
    expenses, bad_expenses, spent = expenses_job.result()
    invoices, bad_invoices, _ = invoices_job.result()
    bills, bad_bills, paid_out = bills_job.result()
    return DigestInputs(
        payments=payments,
        invoices=invoices,
        bills=bills or (),
        expenses=expenses,
        unreadable=bad_payments + bad_expenses + bad_invoices + bad_bills,
        bills_enabled=bills is not None,
        movements=(*paid_in, *spent, *paid_out),
    )
