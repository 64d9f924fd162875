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
- open bills (`statuses[]` unpaid, partial, overdue; bills have no date filter, §6.4).
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
    """`search[date_min]`/`search[date_max]` for the period and the one before it. Pure.

    Whole days covering both periods in FreshBooks' zone, widened to the periods' own days too
    (a date-only field is a calendar day, read as the schedule's); `date_max` is exclusive.
    """
    previous = period.previous()
    first, after = covering_days(previous.start, period.end, freshbooks_zone)
    first, after = min(first, previous.first_day), max(after, period.end_day)
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
) -> tuple[tuple[_Obj, ...], int]:
    """The wanted objects of one listing, parsed as they arrive, and how many could not be read.

    An object listed twice (paging is by offset, so one created while the list is read shifts
    the pages under the reader) is kept once.
    """
    kept: list[_Obj] = []
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
    if unreadable:
        # Counts only: the objects' fields are customer data.
        log.warning("digest: %d %s objects could not be read and are left out", unreadable, kind)
    return tuple(kept), unreadable


def _open_bills(
    listed: Iterator[Mapping[str, object]], cancelled: threading.Event
) -> tuple[tuple[Bill, ...] | None, int]:
    """Open bills, or None when the account has no Bills feature: FreshBooks answers that with an
    error envelope, errno 41001, under HTTP 200 or 403 (freshbooks-reports.md §6.4). Such a
    business still gets its digest, saying so; any other failure fails it."""
    try:
        return _sift(ObjectKind.BILL, listed, parse_bill, lambda b: not b.is_deleted, cancelled)
    except FreshBooksError as error:
        if error.code != BILLS_NOT_ENABLED:
            raise
        return None, 0


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
        )
        expenses_job = pool.submit(
            _sift,
            ObjectKind.EXPENSE,
            listed(ObjectKind.EXPENSE, dates),
            parse_expense,
            lambda e: not e.is_deleted and _in_window(e.date, period),
            cancelled,
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
            _open_bills,
            listed(ObjectKind.BILL, [("search[statuses][]", status) for status in OPEN_BILL_STATUSES]),
            cancelled,
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
    payments, bad_payments = payments_job.result()
    expenses, bad_expenses = expenses_job.result()
    invoices, bad_invoices = invoices_job.result()
    bills, bad_bills = bills_job.result()
    return DigestInputs(
        payments=payments,
        invoices=invoices,
        bills=bills or (),
        expenses=expenses,
        unreadable=bad_payments + bad_expenses + bad_invoices + bad_bills,
        bills_enabled=bills is not None,
    )
