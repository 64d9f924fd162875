"""A business's books as FreshBooks' list endpoints answer them, for the digest's tests and benchmark.

Raw JSON only (what the fake serves); the tests compute their expectations from these dicts
themselves, never through the code under test.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tests.support.fakes.freshbooks import FakeFreshBooks

Raw = dict[str, Any]


def money(amount: Decimal | str, code: str) -> dict[str, str]:
    return {"amount": str(amount), "code": code}


def client_json(client_id: int, name: str) -> Raw:
    return {"id": client_id, "userid": client_id, "organization": name, "fname": "", "lname": ""}


def invoice_json(
    invoice_id: int,
    *,
    amount: Decimal | str,
    outstanding: Decimal | str,
    currency: str,
    create_date: dt.date,
    due_date: dt.date,
    client: str = "Northwind",
    number: str | None = None,
    v3_status: str = "sent",
    vis_state: int = 0,
) -> Raw:
    return {
        "id": invoice_id,
        "invoiceid": invoice_id,
        "invoice_number": number or f"INV{invoice_id:05d}",
        "customerid": 100 + invoice_id % 7,
        "organization": client,
        "current_organization": client,
        "amount": money(amount, currency),
        "outstanding": money(outstanding, currency),
        "paid": money(Decimal(amount) - Decimal(outstanding), currency),
        "currency_code": currency,
        "v3_status": v3_status,
        "create_date": create_date.isoformat(),
        "due_date": due_date.isoformat(),
        "updated": f"{create_date.isoformat()} 10:00:00",
        "vis_state": vis_state,
    }


def payment_json(
    payment_id: int,
    *,
    amount: Decimal | str,
    currency: str,
    date: dt.date,
    client_id: int = 0,
    invoice_id: int = 0,
    from_credit: bool = False,
    vis_state: int = 0,
) -> Raw:
    return {
        "id": payment_id,
        "logid": payment_id,
        "amount": money(amount, currency),
        "clientid": client_id,
        "invoiceid": invoice_id,
        "date": date.isoformat(),
        "type": "Check",
        "from_credit": from_credit,
        "updated": f"{date.isoformat()} 12:00:00",
        "vis_state": vis_state,
    }


def bill_json(
    bill_id: int,
    *,
    outstanding: Decimal | str,
    currency: str,
    due_date: dt.date,
    vendor: str = "IKEA",
    status: str = "unpaid",
    vis_state: int = 0,
    payments: tuple[Raw, ...] = (),
) -> Raw:
    return {
        "id": bill_id,
        "bill_number": f"B{bill_id}",
        "status": status,
        "currency_code": currency,
        "amount": money(outstanding, currency),
        "total_amount": money(outstanding, currency),
        "outstanding": money(outstanding, currency),
        "paid": money("0.00", currency),
        "issue_date": (due_date - dt.timedelta(days=30)).isoformat(),
        "due_date": due_date.isoformat(),
        "vendorid": 7000 + bill_id % 5,
        "vendor": {"vendorid": 7000 + bill_id % 5, "vendor_name": vendor},
        "bill_payments": [{**p, "billid": bill_id} for p in payments],
        "created_at": "2026-01-01 00:00:00",
        "updated_at": "2026-01-01 00:00:00",
        "vis_state": vis_state,
    }


def bill_payment_json(
    payment_id: int, *, amount: Decimal | str, currency: str, paid_date: dt.date, vis_state: int = 0
) -> Raw:
    """One of a bill's `bill_payments` (its `billid` is set by `bill_json`)."""
    return {
        "id": payment_id,
        "amount": money(amount, currency),
        "paid_date": paid_date.isoformat(),
        "payment_type": "Check",
        "note": "",
        "vis_state": vis_state,
    }


def expense_json(
    expense_id: int,
    *,
    amount: Decimal | str,
    currency: str,
    date: dt.date,
    category_id: int = 0,
    vis_state: int = 0,
) -> Raw:
    return {
        "id": expense_id,
        "expenseid": expense_id,
        "amount": money(amount, currency),
        "vendor": "Serano Bakery",
        "categoryid": category_id,
        "clientid": 0,
        "date": date.isoformat(),
        "status": 0,
        "has_receipt": False,
        "updated": f"{date.isoformat()} 09:00:00",
        "vis_state": vis_state,
    }


@dataclass
class Books:
    clients: dict[int, str] = field(default_factory=dict)
    categories: dict[int, str] = field(default_factory=dict)
    invoices: list[Raw] = field(default_factory=list)
    payments: list[Raw] = field(default_factory=list)
    bills: list[Raw] = field(default_factory=list)
    expenses: list[Raw] = field(default_factory=list)

    def load_into(self, fake: FakeFreshBooks, account_id: str) -> None:
        for client_id, name in self.clients.items():
            fake.add_object(account_id, "clients", client_json(client_id, name))
        for category_id, name in self.categories.items():
            fake.add_category(account_id, category_id, name)
        for plural, items in (
            ("invoices", self.invoices),
            ("payments", self.payments),
            ("bills", self.bills),
            ("expenses", self.expenses),
        ):
            for item in items:
                fake.add_object(account_id, plural, item)


def add_paid_bills(
    books: Books, seed: int, *, today: dt.date, count: int, currencies: tuple[str, ...], days_back: int
) -> None:
    """Paid bills with 0-3 payments each, paid from `days_back` days before `today` to 3 after
    (a tenth of the payments deleted, a bill in 13 deleted): the chart's cash out beside expenses."""
    rng = random.Random(seed)
    for n in range(1, count + 1):
        code = rng.choice(currencies)
        paid = tuple(
            bill_payment_json(
                900_000 + n * 10 + k,
                amount=f"{rng.randint(1, 4000)}.{rng.randint(0, 99):02d}",
                currency=code,
                paid_date=today - dt.timedelta(days=rng.randint(-3, days_back)),
                vis_state=1 if rng.random() < 0.1 else 0,
            )
            for k in range(rng.randint(0, 3))
        )
        books.bills.append(
            bill_json(
                40_000 + n, outstanding="0.00", currency=code, status="paid", payments=paid, due_date=today,
                vis_state=1 if n % 13 == 0 else 0,
            )
        )  # fmt: skip


def cash_sums(books: Books, spans: list[tuple[dt.date, dt.date]]) -> dict[tuple[str, str, int], Decimal]:
    """Cash in and out per (currency, "in"/"out", span index), read from the raw JSON: live
    payments not from credit in; live expenses and live bills' live payments out."""
    sums: dict[tuple[str, str, int], Decimal] = {}

    def add(code: str, way: str, day: str, amount: str) -> None:
        when = dt.date.fromisoformat(day)
        for n, (first, end) in enumerate(spans):
            if first <= when < end:
                sums[(code, way, n)] = sums.get((code, way, n), Decimal(0)) + Decimal(amount)

    for p in books.payments:
        if p["vis_state"] == 0 and not p["from_credit"]:
            add(p["amount"]["code"], "in", p["date"], p["amount"]["amount"])
    for e in books.expenses:
        if e["vis_state"] == 0:
            add(e["amount"]["code"], "out", e["date"], e["amount"]["amount"])
    for b in books.bills:
        if b["vis_state"] == 0:
            for bp in b["bill_payments"]:
                if bp["vis_state"] == 0:
                    add(bp["amount"]["code"], "out", bp["paid_date"], bp["amount"]["amount"])
    return sums


CLIENT_NAMES = ("Northwind", "Contoso", "Globex", "Initech", "Umbrella", "Hooli", "Acme & Sons <Ltd>")
CATEGORY_NAMES = ("Travel", "Meals", "Software", "Rent", "Advertising", "Insurance", "Office", "Fuel")
VENDORS = ("IKEA", "Staples", "AWS", "WeWork", "Shell")


def random_books(
    seed: int,
    *,
    today: dt.date,
    invoices: int,
    payments: int,
    bills: int,
    expenses: int,
    currencies: tuple[str, ...] = ("USD", "EUR", "CAD"),
    days_back: int = 20,
    days_ahead: int = 3,
) -> Books:
    """A business whose dated objects fall from `days_back` days before `today` to `days_ahead`
    after it (so some lie outside any digest period), invoices due up to 150 days ago, some
    drafts, deleted objects, payments from credit and bills in every status."""
    rng = random.Random(seed)
    books = Books(
        clients={100 + n: name for n, name in enumerate(CLIENT_NAMES)},
        categories={3000 + n: name for n, name in enumerate(CATEGORY_NAMES)},
    )

    def day(back: int, ahead: int) -> dt.date:
        return today + dt.timedelta(days=rng.randint(-back, ahead))

    def amount(low: int, high: int) -> Decimal:
        # Amounts repeat often enough to make ties.
        return Decimal(rng.choice([rng.randint(low, high), 500])) + Decimal(
            rng.choice(["0.00", "0.99", "0.5"])
        )

    for n in range(1, invoices + 1):
        total = amount(50, 20_000)
        # Half dated around the periods a digest reads, half up to 150 days older (still owed).
        created = day(days_back, days_ahead) if rng.random() < 0.5 else day(days_back + 150, days_ahead)
        outstanding = rng.choice([Decimal(0), total, (total / 2).quantize(Decimal("0.01"))])
        books.invoices.append(
            invoice_json(
                n,
                amount=total,
                outstanding=outstanding,
                currency=rng.choice(currencies),
                create_date=created,
                due_date=created + dt.timedelta(days=rng.choice([0, 14, 30, 45])),
                client=rng.choice(CLIENT_NAMES),
                v3_status=rng.choice(["sent"] * 6 + ["viewed", "partial", "draft", "overdue"]),
                vis_state=1 if rng.random() < 0.03 else 0,
            )
        )
    for n in range(1, payments + 1):
        books.payments.append(
            payment_json(
                10_000 + n,
                amount=amount(10, 9_000),
                currency=rng.choice(currencies),
                date=day(days_back, days_ahead),
                client_id=rng.choice([*books.clients, 0]),
                invoice_id=rng.randint(1, max(1, invoices)),
                from_credit=rng.random() < 0.05,
                vis_state=1 if rng.random() < 0.03 else 0,
            )
        )
    for n in range(1, bills + 1):
        status = rng.choice(["unpaid", "unpaid", "partial", "overdue", "paid"])
        books.bills.append(
            bill_json(
                20_000 + n,
                outstanding=Decimal("0.00") if status == "paid" else amount(20, 5_000),
                currency=rng.choice(currencies),
                due_date=day(40, 20),
                vendor=rng.choice(VENDORS),
                status=status,
                vis_state=1 if rng.random() < 0.03 else 0,
            )
        )
    for n in range(1, expenses + 1):
        books.expenses.append(
            expense_json(
                30_000 + n,
                amount=amount(5, 3_000),
                currency=rng.choice(currencies),
                date=day(days_back, days_ahead),
                category_id=rng.choice([*books.categories, 0]),
                vis_state=1 if rng.random() < 0.03 else 0,
            )
        )
    return books
