"""The demo's sandbox FreshBooks business: clients, invoices, payments, bills and expenses in USD,
CAD and EUR, as FreshBooks' API returns them, and the changes the demo page's buttons make.

No I/O and no clock: every change takes `now` and returns the webhooks FreshBooks would send for
it (`Change`); connector.ops.demo.sandbox serves the objects and delivers those webhooks. The JSON
shapes come from connector.ops.simulate's sample builders, so the demo and `fbslack simulate`
describe objects the same way (and connector.freshbooks.models parses both).
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from connector.domain.events import ObjectKind
from connector.freshbooks.models import EASTERN
from connector.ops.simulate import Sample, SampleIds, sample_objects

ACCOUNT_ID = "DeMo42"
BUSINESS_ID = 4242
IDENTITY_ID = 7001
BUSINESS_NAME = "Maple & Birch Studio"

# The plural FreshBooks uses in its paths and list results, per object kind.
PLURALS: dict[ObjectKind, str] = {
    ObjectKind.INVOICE: "invoices",
    ObjectKind.PAYMENT: "payments",
    ObjectKind.BILL: "bills",
    ObjectKind.EXPENSE: "expenses",
}


@dataclass(frozen=True, slots=True)
class Party:
    id: int
    name: str
    currency: str


CLIENTS: tuple[Party, ...] = (
    Party(5001, "Northwind Traders", "USD"),
    Party(5002, "Lakeshore Dental Group", "CAD"),
    Party(5003, "Bäckerei Sonnenschein GmbH", "EUR"),
    Party(5004, "Harbour Light Ventures", "USD"),
    Party(5005, "Prairie Grain Co-op", "CAD"),
)
VENDORS: tuple[Party, ...] = (
    Party(6001, "Pixel Print Shop", "USD"),
    Party(6002, "Hydro Ottawa", "CAD"),
    Party(6003, "Büro Vision AG", "EUR"),
    Party(6004, "Figma, Inc.", "USD"),
)
# (vendor, amount, currency, category id, category, notes)
EXPENSES: tuple[tuple[str, str, str, int, str, str], ...] = (
    ("Blue Bottle Coffee", "18.40", "USD", 3001, "Meals and Entertainment", "Client kickoff coffee"),
    ("VIA Rail", "142.00", "CAD", 3002, "Travel", "Toronto - Ottawa, site visit"),
    ("Lufthansa", "612.35", "EUR", 3002, "Travel", "Berlin workshop flights"),
    ("Staples", "86.99", "USD", 3003, "Office Supplies", "Sketchbooks and markers"),
    ("WeWork", "450.00", "USD", 3004, "Rent", "Hot desk, November"),
)
CATEGORIES: dict[int, str] = {
    3001: "Meals and Entertainment",
    3002: "Travel",
    3003: "Office Supplies",
    3004: "Rent",
    3005: "Utilities",
    3006: "Software",
}
INVOICE_AMOUNTS = ("1250.00", "4800.00", "675.50", "12400.00", "2300.00", "980.00", "7150.00")
BILL_AMOUNTS = ("320.00", "188.75", "1450.00", "96.00")


@dataclass(frozen=True, slots=True)
class Change:
    """A webhook FreshBooks sends after a change: its event and the object it names."""

    event: str
    object_id: int


def eastern(now: dt.datetime) -> str:
    """`updated` as FreshBooks writes it: US/Eastern, no zone."""
    return now.astimezone(EASTERN).strftime("%Y-%m-%d %H:%M:%S")


def utc(now: dt.datetime) -> str:
    """Bills' timestamps are UTC (reference §6)."""
    return now.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _money(amount: Decimal, currency: str) -> dict[str, str]:
    return {"amount": f"{amount:.2f}", "code": currency}


def _amount(raw: dict[str, Any], key: str) -> Decimal:
    return Decimal(str(raw[key]["amount"]))


def client_json(party: Party, now: dt.datetime) -> dict[str, Any]:
    """A client as `include[]=client` embeds it."""
    return {
        "id": party.id,
        "userid": party.id,
        "organization": party.name,
        "currency_code": party.currency,
        "language": "en",
        "signup_date": utc(now - dt.timedelta(days=400)),
        "updated": eastern(now - dt.timedelta(days=30)),
        "vis_state": 0,
    }


def category_json(category_id: int) -> dict[str, Any]:
    """An expense category as `include[]=category` embeds it."""
    return {
        "category": CATEGORIES[category_id],
        "categoryid": category_id,
        "id": category_id,
        "parentid": 0,
        "is_cogs": False,
        "is_editable": False,
        "created_at": "2021-03-01 09:00:00",
        "updated_at": "2021-03-01 09:00:00",
        "vis_state": 0,
    }


def _sample(event: str, amount: Decimal, party: Party, object_id: int, now: dt.datetime) -> dict[str, Any]:
    ids = SampleIds(object_id=str(object_id), related_id=str(object_id), party_id=str(party.id))
    sample = Sample(event=event, amount=amount, party=party.name, currency=party.currency)
    return copy.deepcopy(sample_objects(sample, ids, account_id=ACCOUNT_ID, now=now)[0].raw)


def invoice_json(object_id: int, party: Party, amount: Decimal, now: dt.datetime) -> dict[str, Any]:
    """A new draft invoice."""
    raw = _sample("invoice.create", amount, party, object_id, now)
    raw.update(invoice_number=f"MB-{object_id - 100000:04d}", notes="Thank you for your business!")
    return raw


def bill_json(object_id: int, vendor: Party, amount: Decimal, now: dt.datetime) -> dict[str, Any]:
    raw = _sample("bill.create", amount, vendor, object_id, now)
    raw.update(bill_number=f"B-{object_id - 300000:04d}", overall_description="Monthly services")
    for line in raw["lines"]:
        line["description"] = "Monthly services"
    return raw


def expense_json(object_id: int, index: int, now: dt.datetime) -> dict[str, Any]:
    vendor, amount, currency, category_id, _category, notes = EXPENSES[index % len(EXPENSES)]
    raw = _sample("expense.create", Decimal(amount), Party(0, vendor, currency), object_id, now)
    billable_to = CLIENTS[index % len(CLIENTS)]
    raw.update(categoryid=category_id, notes=notes)
    # Every other expense is internal (no client): `billable` rules tell them apart.
    raw.update(clientid=billable_to.id if index % 2 == 0 else None, status=1 if index % 2 == 0 else 0)
    return raw


@dataclass
class Business:
    """The sandbox business's books, in memory. Mutated only through the methods below."""

    objects: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    _ids: dict[str, itertools.count[int]] = field(default_factory=dict)
    _turn: itertools.count[int] = field(default_factory=itertools.count)
    made_overdue: set[int] = field(default_factory=set)

    def _next_id(self, plural: str) -> int:
        start = {"invoices": 100001, "payments": 200001, "bills": 300001, "expenses": 400001}[plural]
        return next(self._ids.setdefault(plural, itertools.count(start)))

    def get(self, plural: str, object_id: int) -> dict[str, Any] | None:
        return self.objects.get((plural, object_id))

    def of_kind(self, plural: str) -> list[dict[str, Any]]:
        return [obj for (kind, _), obj in sorted(self.objects.items()) if kind == plural]

    def client(self, client_id: object) -> Party | None:
        return next((c for c in CLIENTS if c.id == client_id), None)

    # -- the starting books --------------------------------------------------------------------

    @classmethod
    def seeded(cls, now: dt.datetime) -> Business:
        """A few weeks of history, all changed before `now - 1 day` (so the reconciliation poll,
        which reports changes since the connection was made, finds nothing to say about them)."""
        books = cls()
        past = now - dt.timedelta(days=12)
        for n, party in enumerate(CLIENTS):
            invoice = books._add_invoice(party, Decimal(INVOICE_AMOUNTS[n]), past - dt.timedelta(days=n))
            books._send(invoice, past)
        first = books.get("invoices", 100001)
        assert first is not None
        books._pay(first, _amount(first, "outstanding"), past + dt.timedelta(days=3))
        for n, vendor in enumerate(VENDORS):
            books._add_bill(vendor, Decimal(BILL_AMOUNTS[n]), past)
        for n in range(3):
            books._add_expense(past + dt.timedelta(days=n))
        # The buttons start with the next client, vendor and expense in turn.
        books._turn = itertools.count(len(CLIENTS))
        return books

    # -- changes (each returns the webhooks FreshBooks sends for it) -------------------------------

    def _add_invoice(self, party: Party, amount: Decimal, now: dt.datetime) -> dict[str, Any]:
        invoice = invoice_json(self._next_id("invoices"), party, amount, now)
        self.objects[("invoices", invoice["id"])] = invoice
        return invoice

    def _send(self, invoice: dict[str, Any], now: dt.datetime) -> None:
        invoice.update(status=2, v3_status="sent", display_status="sent", updated=eastern(now))

    def _pay(self, invoice: dict[str, Any], amount: Decimal, now: dt.datetime) -> dict[str, Any]:
        currency = invoice["currency_code"]
        outstanding = _amount(invoice, "outstanding") - amount
        paid = _amount(invoice, "paid") + amount
        invoice.update(
            outstanding=_money(outstanding, currency),
            paid=_money(paid, currency),
            updated=eastern(now),
        )
        if outstanding == 0:
            invoice.update(
                status=4,
                v3_status="paid",
                display_status="paid",
                payment_status="paid",
                date_paid=now.astimezone(EASTERN).date().isoformat(),
            )
        else:
            invoice.update(status=3, v3_status="partial", display_status="partial", payment_status="partial")
        payment_id = self._next_id("payments")
        payment = {
            "id": payment_id,
            "logid": payment_id,
            "accounting_systemid": ACCOUNT_ID,
            "amount": _money(amount, currency),
            "clientid": invoice["customerid"],
            "invoiceid": invoice["id"],
            "date": now.astimezone(EASTERN).date().isoformat(),
            "type": "Credit Card" if outstanding == 0 else "Check",
            "note": "",
            "gateway": "stripe" if outstanding == 0 else None,
            "from_credit": False,
            "creditid": None,
            "overpaymentid": None,
            "orderid": None,
            "transactionid": None,
            "send_client_notification": False,
            "updated": eastern(now),
            "vis_state": 0,
        }
        self.objects[("payments", payment_id)] = payment
        return payment

    def _add_bill(self, vendor: Party, amount: Decimal, now: dt.datetime) -> dict[str, Any]:
        bill = bill_json(self._next_id("bills"), vendor, amount, now)
        self.objects[("bills", bill["id"])] = bill
        return bill

    def _add_expense(self, now: dt.datetime) -> dict[str, Any]:
        expense = expense_json(self._next_id("expenses"), len(self.of_kind("expenses")), now)
        self.objects[("expenses", expense["id"])] = expense
        return expense

    def _open_invoices(self) -> list[dict[str, Any]]:
        return [
            i for i in self.of_kind("invoices") if i["status"] in (2, 3) and _amount(i, "outstanding") > 0
        ]

    def _an_open_invoice(self, now: dt.datetime, changes: list[Change]) -> dict[str, Any]:
        """The oldest invoice still owed; a new one is created and sent first when none is."""
        open_ones = self._open_invoices()
        if open_ones:
            return open_ones[0]
        changes += self.create_invoice(now)
        invoice = self.of_kind("invoices")[-1]
        self._send(invoice, now)
        changes.append(Change("invoice.sendByEmail", invoice["id"]))
        return invoice

    def create_invoice(self, now: dt.datetime) -> list[Change]:
        turn = next(self._turn)
        party = CLIENTS[turn % len(CLIENTS)]
        invoice = self._add_invoice(party, Decimal(INVOICE_AMOUNTS[turn % len(INVOICE_AMOUNTS)]), now)
        return [Change("invoice.create", invoice["id"])]

    def send_invoice(self, now: dt.datetime) -> list[Change]:
        """The oldest draft goes out by email (a new draft is made first when there is none)."""
        changes: list[Change] = []
        drafts = [i for i in self.of_kind("invoices") if i["status"] == 1]
        if not drafts:
            changes += self.create_invoice(now)
            drafts = [self.of_kind("invoices")[-1]]
        self._send(drafts[0], now)
        return [*changes, Change("invoice.sendByEmail", drafts[0]["id"])]

    def pay_invoice(self, now: dt.datetime) -> list[Change]:
        """The client pays online in full: FreshBooks records a payment and updates the invoice."""
        changes: list[Change] = []
        invoice = self._an_open_invoice(now, changes)
        payment = self._pay(invoice, _amount(invoice, "outstanding"), now)
        return [*changes, Change("payment.create", payment["id"]), Change("invoice.update", invoice["id"])]

    def pay_part(self, now: dt.datetime) -> list[Change]:
        """A cheque for about half of what is owed."""
        changes: list[Change] = []
        invoice = self._an_open_invoice(now, changes)
        half = (_amount(invoice, "outstanding") / 2).quantize(Decimal("1"))
        payment = self._pay(invoice, max(half, Decimal("1")), now)
        return [*changes, Change("payment.create", payment["id"])]

    def record_payment(self, now: dt.datetime) -> list[Change]:
        """A payment recorded by hand for the whole balance of the newest open invoice."""
        changes: list[Change] = []
        open_ones = self._open_invoices()
        invoice = open_ones[-1] if open_ones else self._an_open_invoice(now, changes)
        payment = self._pay(invoice, _amount(invoice, "outstanding"), now)
        return [*changes, Change("payment.create", payment["id"])]

    def make_overdue(self, now: dt.datetime) -> list[Change]:
        """An open invoice's due date is moved into the past. FreshBooks only sends invoice.update;
        the app's overdue scan derives invoice.overdue (every 10 s in the demo)."""
        changes: list[Change] = []
        candidates = [i for i in self._open_invoices() if i["id"] not in self.made_overdue]
        if not candidates:  # every open invoice is overdue already: a new one joins them
            changes += self.create_invoice(now)
            candidates = [self.of_kind("invoices")[-1]]
            self._send(candidates[0], now)
            changes.append(Change("invoice.sendByEmail", candidates[0]["id"]))
        invoice = candidates[0]
        today = now.astimezone(EASTERN).date()
        invoice.update(due_date=(today - dt.timedelta(days=3)).isoformat(), updated=eastern(now))
        self.made_overdue.add(invoice["id"])
        return [*changes, Change("invoice.update", invoice["id"])]

    def create_bill(self, now: dt.datetime) -> list[Change]:
        turn = next(self._turn)
        bill = self._add_bill(
            VENDORS[turn % len(VENDORS)], Decimal(BILL_AMOUNTS[turn % len(BILL_AMOUNTS)]), now
        )
        return [Change("bill.create", bill["id"])]

    def pay_bill(self, now: dt.datetime) -> list[Change]:
        """The oldest unpaid bill is paid in full (a new one is entered first when none is unpaid)."""
        changes: list[Change] = []
        unpaid = [b for b in self.of_kind("bills") if b["status"] != "paid"]
        if not unpaid:
            changes += self.create_bill(now)
            unpaid = [self.of_kind("bills")[-1]]
        bill = unpaid[0]
        currency = bill["currency_code"]
        amount = _amount(bill, "amount")
        bill.update(
            status="paid",
            outstanding=_money(Decimal("0"), currency),
            paid=_money(amount, currency),
            updated_at=utc(now),
        )
        bill["bill_payments"].append(
            {
                "id": len(bill["bill_payments"]) + 1,
                "amount": _money(amount, currency),
                "paid_date": now.astimezone(EASTERN).date().isoformat(),
                "payment_type": "Bank Transfer",
                "note": "",
                "vis_state": 0,
            }
        )
        return [*changes, Change("bill.update", bill["id"])]

    def create_expense(self, now: dt.datetime) -> list[Change]:
        return [Change("expense.create", self._add_expense(now)["id"])]

    def burst(self, now: dt.datetime, count: int = 30) -> list[Change]:
        """`count` new invoices at once (a batch import, say)."""
        return [change for _ in range(count) for change in self.create_invoice(now)]

    # -- reading, as the API answers ---------------------------------------------------------------

    def with_includes(
        self, plural: str, obj: dict[str, Any], includes: set[str], now: dt.datetime
    ) -> dict[str, Any]:
        """`include[]=invoice|client|category` embed the current related objects, as FreshBooks does."""
        extra: dict[str, Any] = {}
        if "invoice" in includes and obj.get("invoiceid"):
            invoice = self.get("invoices", int(obj["invoiceid"]))
            if invoice is not None:
                extra["invoice"] = invoice
        if "client" in includes and obj.get("clientid"):
            party = self.client(obj["clientid"])
            if party is not None:
                extra["client"] = client_json(party, now)
        if "category" in includes and obj.get("categoryid") in CATEGORIES:
            extra["category"] = category_json(int(obj["categoryid"]))
        return copy.deepcopy({**obj, **extra})


# The demo page's buttons: label, and the change each makes.
ACTIONS: dict[str, tuple[str, Any]] = {
    "invoice_created": ("Invoice created", Business.create_invoice),
    "invoice_sent": ("Invoice sent", Business.send_invoice),
    "invoice_paid": ("Invoice paid", Business.pay_invoice),
    "invoice_partly_paid": ("Invoice partly paid", Business.pay_part),
    "invoice_overdue": ("Invoice overdue", Business.make_overdue),
    "payment": ("Payment", Business.record_payment),
    "bill": ("Bill", Business.create_bill),
    "bill_paid": ("Bill paid", Business.pay_bill),
    "expense": ("Expense", Business.create_expense),
    "burst": ("Burst of 30 invoices", Business.burst),
}
