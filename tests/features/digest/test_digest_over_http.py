"""The digest end to end over real HTTP against the fake FreshBooks: every figure is checked against
sums this test computes itself from the fake's data, never through the figures module."""

from __future__ import annotations

import datetime as dt
import io
from collections import defaultdict
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
from PIL import Image

from connector.features.digest.chart import chart_for, chart_png, chart_size
from connector.features.digest.fetch import fetch_inputs
from connector.features.digest.figures import AgeBucket, Digest, compute
from connector.features.digest.message import render_digest
from connector.features.digest.period import Cadence, period_just_ended
from connector.freshbooks.client import ErrorKind, FreshBooksClient, FreshBooksError
from connector.pipeline.render.formatting import MAX_BLOCKS, RenderContext
from tests.support.books import Books, add_paid_bills, cash_sums, payment_json, random_books
from tests.support.fakes.freshbooks import FakeFreshBooks, Scripted
from tests.support.live import FakeClock

T = TypeVar("T")
ACCOUNT = "p7rQW5"
TOKEN = "fb-access-token"
NEW_YORK = ZoneInfo("America/New_York")
AUCKLAND = ZoneInfo("Pacific/Auckland")
OPEN_BILLS = {"unpaid", "partial", "overdue"}


class OneToken:
    """A TokenSource with one token that never expires (token refresh is tested on its own)."""

    def call(self, connection_id: int, fn: Callable[[str], T]) -> T:
        return fn(TOKEN)

    def forget(self, connection_id: int) -> None:
        pass


@pytest.fixture
def fake() -> Iterator[FakeFreshBooks]:
    with FakeFreshBooks() as server:
        yield server


def _day(raw: dict[str, Any], key: str) -> dt.date:
    return dt.date.fromisoformat(raw[key])


def _amount(raw: dict[str, Any], key: str) -> tuple[str, Decimal]:
    return raw[key]["code"], Decimal(raw[key]["amount"])


def _sums(pairs: list[tuple[str, Decimal]]) -> dict[str, Decimal]:
    sums: dict[str, Decimal] = defaultdict(Decimal)
    for code, amount in pairs:
        sums[code] += amount
    return dict(sums)


def _flow_of(flow: Any) -> tuple[int, int, dict[str, Decimal], dict[str, Decimal]]:
    return (
        int(flow.count.current),
        int(flow.count.previous),
        {t.currency: t.change.current for t in flow.totals if t.change.current or t.change.previous},
        {t.currency: t.change.previous for t in flow.totals if t.change.current or t.change.previous},
    )


def _nonzero(sums: dict[str, Decimal], currencies: set[str]) -> dict[str, Decimal]:
    return {code: sums.get(code, Decimal(0)) for code in currencies}


def check_every_figure(digest: Digest, books: Books, days: set[dt.date], before: set[dt.date]) -> None:
    """Each figure of `digest` against this test's own arithmetic on the raw books."""
    today = digest.today
    live = [p for p in books.payments if p["vis_state"] == 0 and not p["from_credit"]]
    now_pay = [p for p in live if _day(p, "date") in days]
    prev_pay = [p for p in live if _day(p, "date") in before]
    currencies = {p["amount"]["code"] for p in now_pay + prev_pay}
    assert _flow_of(digest.cash.flow) == (
        len(now_pay),
        len(prev_pay),
        _nonzero(_sums([_amount(p, "amount") for p in now_pay]), currencies),
        _nonzero(_sums([_amount(p, "amount") for p in prev_pay]), currencies),
    )
    invoices = {i["id"]: i for i in books.invoices}
    largest = []
    for code in sorted({p["amount"]["code"] for p in now_pay}):
        mine = [p for p in now_pay if p["amount"]["code"] == code]
        mine.sort(key=lambda p: (-Decimal(p["amount"]["amount"]), p["date"], p["id"]))
        for p in mine[:3]:
            invoice = invoices.get(p["invoiceid"])
            client = books.clients.get(p["clientid"]) or (invoice or {}).get("current_organization")
            largest.append((p["id"], client, (invoice or {}).get("invoice_number")))
    assert [(p.payment_id, p.client, p.invoice_number) for p in digest.cash.largest] == largest

    counted = [i for i in books.invoices if i["vis_state"] == 0 and i["v3_status"] != "draft"]
    now_inv = [i for i in counted if _day(i, "create_date") in days]
    prev_inv = [i for i in counted if _day(i, "create_date") in before]
    currencies = {i["amount"]["code"] for i in now_inv + prev_inv}
    assert _flow_of(digest.invoiced.flow) == (
        len(now_inv),
        len(prev_inv),
        _nonzero(_sums([_amount(i, "amount") for i in now_inv]), currencies),
        _nonzero(_sums([_amount(i, "amount") for i in prev_inv]), currencies),
    )

    owed = [i for i in counted if Decimal(i["outstanding"]["amount"]) > 0]
    limits = [(0, "not yet due"), (30, "1-30"), (60, "31-60"), (90, "61-90")]
    aging: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    counts: dict[str, int] = defaultdict(int)
    for invoice in owed:
        late = (today - _day(invoice, "due_date")).days
        bucket = next((name for limit, name in limits if late <= limit), "over 90")
        code, amount = _amount(invoice, "outstanding")
        aging[code][bucket] += amount
        counts[code] += 1
    names = {
        AgeBucket.NOT_DUE: "not yet due",
        AgeBucket.DAYS_1_30: "1-30",
        AgeBucket.DAYS_31_60: "31-60",
        AgeBucket.DAYS_61_90: "61-90",
        AgeBucket.OVER_90: "over 90",
    }
    assert {
        a.currency: ({names[b]: v for b, v in a.buckets if v}, a.count) for a in digest.receivables.aging
    } == {code: (dict(buckets), counts[code]) for code, buckets in aging.items()}
    overdue = [i for i in owed if _day(i, "due_date") < today]
    overdue.sort(key=lambda i: (_day(i, "due_date"), i["id"]))
    assert [
        (o.invoice_id, o.number, o.client, o.days_overdue, o.owed.amount, o.owed.currency)
        for o in digest.receivables.most_overdue
    ] == [
        (
            i["id"],
            i["invoice_number"],
            i["current_organization"],
            (today - _day(i, "due_date")).days,
            Decimal(i["outstanding"]["amount"]),
            i["currency_code"],
        )
        for i in overdue[:5]
    ]

    open_bills = [
        b
        for b in books.bills
        if b["vis_state"] == 0 and b["status"] in OPEN_BILLS and Decimal(b["outstanding"]["amount"]) > 0
    ]
    soon = [b for b in open_bills if today <= _day(b, "due_date") <= today + dt.timedelta(days=6)]
    late_bills = [b for b in open_bills if _day(b, "due_date") < today]
    for mine, theirs, totals in (
        (soon, digest.bills.due_soon, digest.bills.due_soon_totals),
        (late_bills, digest.bills.overdue, digest.bills.overdue_totals),
    ):
        mine.sort(key=lambda b: (b["due_date"], b["id"]))
        assert [(b.bill_id, b.vendor, b.owed.amount, b.due_date) for b in theirs] == [
            (b["id"], b["vendor"]["vendor_name"], Decimal(b["outstanding"]["amount"]), _day(b, "due_date"))
            for b in mine
        ]
        assert {m.currency: m.amount for m in totals} == _sums([_amount(b, "outstanding") for b in mine])

    spent = [e for e in books.expenses if e["vis_state"] == 0]
    now_exp = [e for e in spent if _day(e, "date") in days]
    prev_exp = [e for e in spent if _day(e, "date") in before]
    currencies = {e["amount"]["code"] for e in now_exp + prev_exp}
    assert _flow_of(digest.expenses.flow) == (
        len(now_exp),
        len(prev_exp),
        _nonzero(_sums([_amount(e, "amount") for e in now_exp]), currencies),
        _nonzero(_sums([_amount(e, "amount") for e in prev_exp]), currencies),
    )
    by_category: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for expense in now_exp:
        name = books.categories.get(expense["categoryid"], "Uncategorized")
        code, amount = _amount(expense, "amount")
        by_category[code][name] += amount
    expected = {}
    for code, spend in by_category.items():
        ranked = sorted(spend.items(), key=lambda kv: (-kv[1], kv[0]))
        expected[code] = (ranked[:5], sum((v for _, v in ranked[5:]), Decimal(0)), len(ranked[5:]))
    assert {
        c.currency: ([(t.category, t.amount) for t in c.top], c.other, c.other_categories)
        for c in digest.expenses.by_category
    } == expected
    assert digest.unreadable == 0


def _days(first: dt.date, end: dt.date) -> set[dt.date]:
    return {first + dt.timedelta(days=n) for n in range((end - first).days)}


CASES = [
    # (cadence, zone, a fixed now or None for the test clock's)
    (Cadence.DAILY, NEW_YORK, None),
    (Cadence.WEEKLY, NEW_YORK, None),
    (Cadence.DAILY, AUCKLAND, None),
    # A week across a month end (Mon Mar 29 to Sun Apr 4, 2027), compared with the one before.
    (Cadence.WEEKLY, NEW_YORK, dt.datetime(2027, 4, 5, 8, tzinfo=NEW_YORK)),
    # A day just after a month end (Apr 1), compared with Mar 31.
    (Cadence.DAILY, NEW_YORK, dt.datetime(2027, 4, 2, 8, tzinfo=NEW_YORK)),
]


@pytest.mark.date_sensitive
@pytest.mark.parametrize(("cadence", "zone", "fixed_now"), CASES, ids=str)
def test_every_figure_matches_the_books_in_three_currencies(
    fake: FakeFreshBooks, cadence: Cadence, zone: ZoneInfo, fixed_now: dt.datetime | None
) -> None:
    now = fixed_now or FakeClock()()
    today = now.astimezone(zone).date()
    books = random_books(7, today=today, invoices=260, payments=240, bills=130, expenses=210)
    add_paid_bills(books, 7, today=today, count=60, currencies=("USD", "EUR", "CAD"), days_back=60)
    books.load_into(fake, ACCOUNT)
    period = period_just_ended(now, cadence=cadence, zone=zone)
    client = FreshBooksClient(base_url=fake.base_url, sleep=lambda _: None)
    try:
        inputs = fetch_inputs(
            client=client, tokens=OneToken(), connection_id=1, account_id=ACCOUNT, period=period
        )
    finally:
        client.close()
    digest = compute(inputs, period, now)
    previous = period.previous()
    check_every_figure(
        digest, books, _days(period.first_day, period.end_day), _days(previous.first_day, previous.end_day)
    )
    # The books hold three currencies, and none was added to another; no figure is checked empty.
    assert len(digest.receivables.aging) == 3
    for flow in (digest.cash.flow, digest.invoiced.flow, digest.expenses.flow):
        assert flow.count.current > 0 and flow.count.previous > 0
    assert len(digest.receivables.most_overdue) == 5 and digest.bills.due_soon and digest.bills.overdue
    message = render_digest(digest, RenderContext(account_id=ACCOUNT, delivery_key="digest-1"))
    assert len(message.blocks) <= MAX_BLOCKS and message.text

    # The chart: cash in and out per bucket and currency, against this test's own sums.
    drawn = chart_for(digest, inputs)
    spans = [(b.first_day, b.end_day) for b in drawn.buckets]
    assert len(spans) == (7 if cadence is Cadence.WEEKLY else 8)
    drawn_sums = {
        (s.currency, way, n): amount
        for s in (p.cash for p in drawn.panels if p.cash is not None)
        for way, amounts in (("in", s.cash_in), ("out", s.cash_out))
        for n, amount in enumerate(amounts)
        if amount
    }
    expected = cash_sums(books, spans)
    assert drawn_sums == expected and {code for code, _, _ in expected} == {"USD", "EUR", "CAD"}
    assert {way for _, way, _ in expected} == {"in", "out"}
    assert Image.open(io.BytesIO(chart_png(drawn))).size == chart_size(drawn)


def test_lists_are_read_in_pages_of_100_with_day_filters_and_sifted_here(fake: FakeFreshBooks) -> None:
    # Yesterday in Auckland is Dec 3 11:00 to Dec 4 11:00 UTC. FreshBooks is asked for whole days
    # around both periods, in its zone and the schedule's, then its answer is cut to the days.
    now = dt.datetime(2026, 12, 4, 20, tzinfo=dt.UTC)
    period = period_just_ended(now, cadence=Cadence.DAILY, zone=AUCKLAND)
    books = random_books(3, today=dt.date(2026, 12, 5), invoices=250, payments=0, bills=0, expenses=0)
    for n, day in enumerate([dt.date(2026, 12, d) for d in range(1, 8)] * 40):
        books.payments.append(payment_json(n + 1, amount="1.00", currency="USD", date=day))
    books.load_into(fake, ACCOUNT)
    client = FreshBooksClient(base_url=fake.base_url, sleep=lambda _: None)
    try:
        inputs = fetch_inputs(
            client=client, tokens=OneToken(), connection_id=1, account_id=ACCOUNT, period=period
        )
    finally:
        client.close()
    pay_calls = fake.calls_to("GET", f"/accounting/account/{ACCOUNT}/payments/payments")
    # Dec 3 and Dec 4 (Auckland's days), Dec 2 and Dec 3 before them in New York, and the chart's
    # 8 weeks ending with Dec 4 (from Oct 10): Dec 1 to Dec 4 here, 4 days x 40.
    assert {(c.query["search[date_min]"][0], c.query["search[date_max]"][0]) for c in pay_calls} == {
        ("2026-10-10", "2026-12-05")
    }
    assert [c.query["page"] for c in pay_calls] == [["1"], ["2"]]  # 160 payments: two pages
    # The chart keeps each of them as a movement; the figures keep the periods' own.
    assert sorted({m.day for m in inputs.movements}) == [dt.date(2026, 12, d) for d in range(1, 5)]
    assert len(inputs.movements) == 160
    assert all(c.query["per_page"] == ["100"] for c in pay_calls)
    # Dec 2 is FreshBooks' answer, not the periods' (Dec 3 and Dec 4): sifted out here.
    assert sorted({p.date for p in inputs.payments}) == [dt.date(2026, 12, 3), dt.date(2026, 12, 4)]
    invoice_calls = fake.calls_to("GET", f"/accounting/account/{ACCOUNT}/invoices/invoices")
    assert [c.query["page"] for c in invoice_calls] == [["1"], ["2"], ["3"]]
    bill_calls = fake.calls_to("GET", f"/accounting/account/{ACCOUNT}/bills/bills")
    # Paid bills too: their payments are the chart's cash out.
    assert bill_calls[0].query["search[statuses][]"] == ["unpaid", "partial", "overdue", "paid"]


class CountingToken(OneToken):
    def __init__(self) -> None:
        self.calls = 0

    def call(self, connection_id: int, fn: Callable[[str], T]) -> T:
        self.calls += 1
        return fn(TOKEN)


def _fetch(fake: FakeFreshBooks, tokens: Any = None) -> Any:
    period = period_just_ended(
        dt.datetime(2027, 4, 2, 8, tzinfo=NEW_YORK), cadence=Cadence.DAILY, zone=NEW_YORK
    )
    client = FreshBooksClient(base_url=fake.base_url, sleep=lambda _: None)
    try:
        return fetch_inputs(
            client=client, tokens=tokens or OneToken(), connection_id=1, account_id=ACCOUNT, period=period
        ), period
    finally:
        client.close()


def test_every_page_asks_for_the_token_again(fake: FakeFreshBooks) -> None:
    """A listing of many pages outlives a token: each page goes through the token source, which
    refreshes an expired token and tries once more (connector.freshbooks.tokens)."""
    random_books(5, today=dt.date(2027, 4, 1), invoices=230, payments=0, bills=0, expenses=0).load_into(
        fake, ACCOUNT
    )
    tokens = CountingToken()
    _fetch(fake, tokens)
    assert tokens.calls == len(fake.calls) == 3 + 1 + 1 + 1  # invoices in 3 pages, the others empty


def test_an_account_without_bills_gets_its_digest_and_is_told(fake: FakeFreshBooks) -> None:
    random_books(5, today=dt.date(2027, 4, 1), invoices=20, payments=20, bills=0, expenses=5).load_into(
        fake, ACCOUNT
    )
    # As seen in the wild: an error envelope under HTTP 200 (freshbooks-reports.md §6.4).
    no_bills = {"response": {"errors": [{"errno": 41001, "message": "Bills are not enabled."}]}}
    fake.script("GET", f"/accounting/account/{ACCOUNT}/bills/bills", Scripted(200, no_bills))
    inputs, period = _fetch(fake)
    assert inputs.bills_enabled is False and inputs.bills == ()
    assert len(inputs.invoices) > 0
    message = render_digest(compute(inputs, period, period.end), RenderContext(ACCOUNT, "d"))
    assert any("Bills are not enabled" in block.get("text", {}).get("text", "") for block in message.blocks)


def test_one_list_failing_fails_the_digest_with_its_own_error(fake: FakeFreshBooks) -> None:
    random_books(5, today=dt.date(2027, 4, 1), invoices=20, payments=400, bills=10, expenses=5).load_into(
        fake, ACCOUNT
    )
    refused = {"response": {"errors": [{"errno": 1012, "field": "date_min", "message": "Invalid search."}]}}
    fake.script("GET", f"/accounting/account/{ACCOUNT}/expenses/expenses", Scripted(422, refused))
    with pytest.raises(FreshBooksError) as info:
        _fetch(fake)
    assert (info.value.kind, info.value.message) == (ErrorKind.VALIDATION, "Invalid search.")
