"""FreshBooks accounting objects as typed values, parsed once from the API's JSON (reference §6).

Pure: no I/O, no clock. Every field is validated where it is read here; nothing downstream indexes
the raw dicts. Error messages name the object kind and field but never echo values, because
values are customer data (amounts, names) and these messages reach the logs.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, TypeAlias, TypeVar, overload
from zoneinfo import ZoneInfo

from connector.domain.events import ObjectKind
from connector.domain.money import Money

# The accounting API writes `YYYY-MM-DD HH:MM:SS` without an offset, in US/Eastern wall-clock time,
# except for bills and bill vendors, which are UTC (reference §6 and §10 gotcha 9).
EASTERN = ZoneInfo("America/New_York")

_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_DIGITS = re.compile(r"[0-9]+")
# The zero date MySQL-backed APIs write for "no date"; read like null.
_ZERO_DATE = "0000-00-00"

T = TypeVar("T")


class ObjectParseError(ValueError):
    """A FreshBooks object whose JSON does not have the shape we rely on."""

    def __init__(self, kind: str, field: str, reason: str) -> None:
        super().__init__(f"cannot parse {kind}: field {field!r} {reason}")
        self.kind = kind
        self.field = field
        self.reason = reason


class VisState(enum.IntEnum):
    ACTIVE = 0
    DELETED = 1
    ARCHIVED = 2


# -- values -----------------------------------------------------------------------------------


def _type_name(value: object) -> str:
    return type(value).__name__


def _is_blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and (not value.strip() or value.startswith(_ZERO_DATE)))


def parse_money(raw: object) -> Money | None:
    """`{"amount": "41.94", "code": "CAD"}` (or `"amount": 41.94` read as Decimal) -> Money;
    None -> None; any other shape -> ValueError."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ValueError(f"must be a money object, got {_type_name(raw)}")
    code = raw.get("code")
    if not isinstance(code, str) or not code.strip():
        raise ValueError("must hold a currency 'code'")
    return Money(parse_amount(raw.get("amount")), code)


def parse_amount(amount: object) -> Decimal:
    """A money object's `amount`: a decimal string, or a JSON number read as Decimal. Pure.

    FreshBooks documents a string but may send a number. A number must reach us as Decimal or
    int (FreshBooksClient parses JSON with parse_float=Decimal): a float has already been rounded
    to binary (0.1 + 0.2 != 0.3, and 12345678901234567.89 reads as ...568), and Decimal(str(x))
    cannot undo that, so a float is refused rather than guessed at.
    """
    if isinstance(amount, str):
        if not _DECIMAL.fullmatch(amount):
            raise ValueError("must hold a decimal 'amount', got a malformed string")
        return Decimal(amount)
    if isinstance(amount, int) and not isinstance(amount, bool):
        return Decimal(amount)
    if isinstance(amount, Decimal) and amount.is_finite():
        return Decimal(format(amount, "f"))  # 1e3 as 1000: plain digits, like the string form
    raise ValueError(f"must hold a decimal 'amount' (string or exact number), got {_type_name(amount)}")


def _parse_timestamp(value: object, naive_zone: dt.tzinfo) -> dt.datetime | None:
    if _is_blank(value):
        return None
    if not isinstance(value, str):
        raise ValueError(f"must be a timestamp string, got {_type_name(value)}")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("must be a 'YYYY-MM-DD HH:MM:SS' or ISO 8601 timestamp") from None
    if parsed.tzinfo is None:
        # fold=0: an ambiguous autumn hour reads as the first (daylight) one, a skipped spring
        # hour with the offset from before the jump. FreshBooks gives us nothing to do better.
        parsed = parsed.replace(tzinfo=naive_zone)
    return parsed.astimezone(dt.UTC)


def parse_eastern_timestamp(value: object) -> dt.datetime | None:
    """An accounting timestamp (naive means US/Eastern, DST-aware) as an aware UTC datetime."""
    return _parse_timestamp(value, EASTERN)


def parse_utc_timestamp(value: object) -> dt.datetime | None:
    """A timestamp whose naive form is already UTC (bills, bill vendors) as an aware UTC datetime."""
    return _parse_timestamp(value, dt.UTC)


def parse_date(value: object) -> dt.date | None:
    """A date-only `YYYY-MM-DD` field; None, "" and "0000-00-00" mean no date."""
    if _is_blank(value):
        return None
    if not isinstance(value, str):
        raise ValueError(f"must be a 'YYYY-MM-DD' date string, got {_type_name(value)}")
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError("must be a 'YYYY-MM-DD' date string") from None


def _to_int(value: object) -> int | None:
    if value is None:
        return None
    # bool is an int subclass; True is never a valid id or status.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    # Some FreshBooks ids travel as digit strings (the webhook's object_id always does).
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        return int(value)
    raise ValueError(f"must be an integer, got {_type_name(value)}")


def _to_ref(value: object) -> int | None:
    """An id pointing at another object, where FreshBooks writes 0 for "none"."""
    return _to_int(value) or None


def _to_text(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {_type_name(value)}")
    return value if value.strip() else None


def _to_bool(value: object) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise ValueError(f"must be true or false, got {_type_name(value)}")


def _to_balances(value: object) -> tuple[Money, ...] | None:
    """`outstanding_balance`: a money, a list of moneys, or a list of `{"amount": money}`."""
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    balances: list[Money] = []
    for item in items:
        inner = item.get("amount") if isinstance(item, Mapping) else None
        money = parse_money(inner if isinstance(inner, Mapping) else item)
        if money is not None:
            balances.append(money)
    return tuple(balances)


def _join_name(first: str | None, last: str | None) -> str | None:
    return " ".join(part.strip() for part in (first, last) if part) or None


# -- reading one object's fields --------------------------------------------------------------


class _Fields:
    """One raw object's fields, read through a parser that names the kind and field on error."""

    __slots__ = ("_kind", "_raw")

    def __init__(self, kind: str, raw: Mapping[str, object]) -> None:
        self._kind = kind
        self._raw = raw

    def error(self, field: str, reason: str) -> ObjectParseError:
        return ObjectParseError(self._kind, field, reason)

    @overload
    def read(
        self, keys: str | tuple[str, ...], parse: Callable[[object], T | None], *, required: Literal[True]
    ) -> T: ...

    @overload
    def read(
        self,
        keys: str | tuple[str, ...],
        parse: Callable[[object], T | None],
        *,
        required: Literal[False] = False,
    ) -> T | None: ...

    def read(
        self, keys: str | tuple[str, ...], parse: Callable[[object], T | None], *, required: bool = False
    ) -> T | None:
        """The first present key of `keys`, parsed; a required field that parses to None is an error."""
        names = (keys,) if isinstance(keys, str) else keys
        key = next((name for name in names if self._raw.get(name) is not None), names[0])
        return self._parse(key, self._raw.get(key), parse, required=required)

    def raw_text(self, key: str) -> str | None:
        """A field kept verbatim (e.g. `updated`, which identifies a version of the object)."""
        return self.read(key, _to_text)

    def many(self, key: str, parse: Callable[[Mapping[str, object]], T]) -> tuple[T, ...]:
        """A list of embedded objects; absent or null is empty."""
        value = self._raw.get(key)
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.error(key, f"must be a list, got {_type_name(value)}")
        return tuple(
            self._parse(f"{key}[{index}]", item, _nested(parse), required=True)
            for index, item in enumerate(value)
        )

    @overload
    def _parse(
        self, field: str, value: object, parse: Callable[[object], T | None], *, required: Literal[True]
    ) -> T: ...

    @overload
    def _parse(
        self, field: str, value: object, parse: Callable[[object], T | None], *, required: bool
    ) -> T | None: ...

    def _parse(
        self, field: str, value: object, parse: Callable[[object], T | None], *, required: bool
    ) -> T | None:
        try:
            parsed = parse(value)
        except ObjectParseError as exc:  # an embedded object: report its field under ours
            raise self.error(f"{field}.{exc.field}", exc.reason) from None
        except ValueError as exc:
            raise self.error(field, str(exc)) from None
        if parsed is None and required:
            raise self.error(field, "is missing")
        return parsed


def _nested(parse: Callable[[Mapping[str, object]], T]) -> Callable[[object], T | None]:
    """Turn an object parser into a field parser for an embedded object (null means absent)."""

    def parse_field(value: object) -> T | None:
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise ValueError(f"must be an object, got {_type_name(value)}")
        return parse(value)

    return parse_field


# -- objects ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Client:
    id: int
    organization: str | None
    first_name: str | None
    last_name: str | None
    email: str | None
    outstanding_balance: tuple[Money, ...]

    @property
    def display_name(self) -> str | None:
        return self.organization or _join_name(self.first_name, self.last_name)


@dataclass(frozen=True, slots=True, kw_only=True)
class Invoice:
    id: int
    number: str | None
    account_id: str | None
    client_id: int | None
    client_name: str | None
    amount: Money
    outstanding: Money | None
    paid: Money | None
    currency: str
    status: int | None  # 1 draft, 2 sent, 3 viewed, 4 paid, 5 auto paid, 6 retry, 7 failed, 8 partial
    v3_status: str | None
    payment_status: str | None
    display_status: str | None
    create_date: dt.date | None
    due_date: dt.date | None
    date_paid: dt.date | None
    created_at: dt.datetime | None
    updated: dt.datetime | None
    updated_raw: str | None
    vis_state: int

    @property
    def is_deleted(self) -> bool:
        return self.vis_state == VisState.DELETED


@dataclass(frozen=True, slots=True, kw_only=True)
class Payment:
    id: int
    amount: Money
    invoice_id: int | None
    client_id: int | None
    date: dt.date | None
    type: str | None
    note: str | None
    gateway: str | None
    from_credit: bool
    updated: dt.datetime | None
    updated_raw: str | None
    vis_state: int
    # Present when fetched with include[]=invoice&include[]=client (client.OBJECT_ENDPOINTS).
    invoice: Invoice | None
    client: Client | None

    @property
    def is_deleted(self) -> bool:
        return self.vis_state == VisState.DELETED


@dataclass(frozen=True, slots=True, kw_only=True)
class BillPayment:
    id: int
    amount: Money
    paid_date: dt.date | None
    payment_type: str | None
    note: str | None
    vis_state: int

    @property
    def is_deleted(self) -> bool:
        return self.vis_state == VisState.DELETED


@dataclass(frozen=True, slots=True, kw_only=True)
class Bill:
    id: int
    number: str | None
    status: str | None  # unpaid | overdue | partial | paid
    amount: Money
    total_amount: Money | None
    outstanding: Money | None
    paid: Money | None
    tax_amount: Money | None
    currency: str
    issue_date: dt.date | None
    due_date: dt.date | None
    vendor_id: int | None
    vendor_name: str | None
    category: str | None
    description: str | None
    payments: tuple[BillPayment, ...]  # the bill's live payments: deleted ones are left out
    created_at: dt.datetime | None
    updated: dt.datetime | None
    updated_raw: str | None
    vis_state: int

    @property
    def is_deleted(self) -> bool:
        return self.vis_state == VisState.DELETED


@dataclass(frozen=True, slots=True, kw_only=True)
class Expense:
    id: int
    amount: Money
    vendor: str | None
    category_id: int | None
    # The category's name, present when fetched with include[]=category (client.OBJECT_ENDPOINTS).
    category: str | None
    client_id: int | None
    project_id: int | None
    date: dt.date | None
    notes: str | None
    status: int | None  # 0 internal, 1 outstanding, 2 invoiced, 4 recouped
    has_receipt: bool
    updated: dt.datetime | None
    updated_raw: str | None
    vis_state: int

    @property
    def billable(self) -> bool:
        return self.client_id is not None

    @property
    def is_deleted(self) -> bool:
        return self.vis_state == VisState.DELETED


FreshBooksObject: TypeAlias = Invoice | Payment | Bill | Expense


# -- parsers ----------------------------------------------------------------------------------


def _vis_state(f: _Fields) -> int:
    # Absent means the API did not mark it otherwise: active (0).
    return f.read("vis_state", _to_int) or 0


def parse_client(raw: Mapping[str, object]) -> Client:
    f = _Fields("client", raw)
    return Client(
        id=f.read(("id", "userid"), _to_int, required=True),
        organization=f.read("organization", _to_text),
        first_name=f.read("fname", _to_text),
        last_name=f.read("lname", _to_text),
        email=f.read("email", _to_text),
        outstanding_balance=f.read("outstanding_balance", _to_balances) or (),
    )


def parse_invoice(raw: Mapping[str, object]) -> Invoice:
    f = _Fields(ObjectKind.INVOICE, raw)
    amount = f.read("amount", parse_money, required=True)
    # The invoice keeps the client's name from when it was written; current_organization tracks
    # renames, so it wins.
    client_name = (
        f.read("current_organization", _to_text)
        or f.read("organization", _to_text)
        or _join_name(f.read("fname", _to_text), f.read("lname", _to_text))
    )
    return Invoice(
        id=f.read(("id", "invoiceid"), _to_int, required=True),
        number=f.read("invoice_number", _to_text),
        account_id=f.read("accountid", _to_text),
        client_id=f.read("customerid", _to_ref),
        client_name=client_name,
        amount=amount,
        outstanding=f.read("outstanding", parse_money),
        paid=f.read("paid", parse_money),
        currency=f.read("currency_code", _to_text) or amount.currency,
        status=f.read("status", _to_int),
        v3_status=f.read("v3_status", _to_text),
        payment_status=f.read("payment_status", _to_text),
        display_status=f.read("display_status", _to_text),
        create_date=f.read("create_date", parse_date),
        due_date=f.read("due_date", parse_date),
        date_paid=f.read("date_paid", parse_date),
        created_at=f.read("created_at", parse_eastern_timestamp),
        updated=f.read("updated", parse_eastern_timestamp),
        updated_raw=f.raw_text("updated"),
        vis_state=_vis_state(f),
    )


def parse_payment(raw: Mapping[str, object]) -> Payment:
    f = _Fields(ObjectKind.PAYMENT, raw)
    return Payment(
        id=f.read(("id", "logid"), _to_int, required=True),
        amount=f.read("amount", parse_money, required=True),
        invoice_id=f.read("invoiceid", _to_ref),
        client_id=f.read("clientid", _to_ref),
        date=f.read("date", parse_date),
        type=f.read("type", _to_text),
        note=f.read("note", _to_text),
        gateway=f.read("gateway", _to_text),
        from_credit=f.read("from_credit", _to_bool) or False,
        updated=f.read("updated", parse_eastern_timestamp),
        updated_raw=f.raw_text("updated"),
        vis_state=_vis_state(f),
        invoice=f.read("invoice", _nested(parse_invoice)),
        client=f.read("client", _nested(parse_client)),
    )


def parse_bill_payment(raw: Mapping[str, object]) -> BillPayment:
    f = _Fields("bill_payment", raw)
    return BillPayment(
        id=f.read("id", _to_int, required=True),
        amount=f.read("amount", parse_money, required=True),
        paid_date=f.read("paid_date", parse_date),
        payment_type=f.read("payment_type", _to_text),
        note=f.read("note", _to_text),
        vis_state=_vis_state(f),
    )


def _vendor_name(raw: Mapping[str, object]) -> str | None:
    return _Fields("vendor", raw).read("vendor_name", _to_text)


def _category_name(raw: Mapping[str, object]) -> str | None:
    # The embedded expense category names itself in `category` (reference-reports §6.5).
    return _Fields("category", raw).read("category", _to_text)


def parse_bill(raw: Mapping[str, object]) -> Bill:
    f = _Fields(ObjectKind.BILL, raw)
    amount = f.read("amount", parse_money, required=True)
    return Bill(
        id=f.read("id", _to_int, required=True),
        number=f.read("bill_number", _to_text),
        status=f.read("status", _to_text),
        amount=amount,
        total_amount=f.read("total_amount", parse_money),
        outstanding=f.read("outstanding", parse_money),
        paid=f.read("paid", parse_money),
        tax_amount=f.read("tax_amount", parse_money),
        currency=f.read("currency_code", _to_text) or amount.currency,
        issue_date=f.read("issue_date", parse_date),
        due_date=f.read("due_date", parse_date),
        vendor_id=f.read("vendorid", _to_ref),
        vendor_name=f.read("vendor", _nested(_vendor_name)),
        category=f.read("overall_category", _to_text),
        description=f.read("overall_description", _to_text),
        # A bill keeps its deleted payments in the list, marked vis_state 1: they were never paid.
        payments=tuple(p for p in f.many("bill_payments", parse_bill_payment) if not p.is_deleted),
        # Bills are the exception to Eastern time: their timestamps are UTC.
        created_at=f.read("created_at", parse_utc_timestamp),
        updated=f.read("updated_at", parse_utc_timestamp),
        updated_raw=f.raw_text("updated_at"),
        vis_state=_vis_state(f),
    )


def parse_expense(raw: Mapping[str, object]) -> Expense:
    f = _Fields(ObjectKind.EXPENSE, raw)
    return Expense(
        id=f.read(("id", "expenseid"), _to_int, required=True),
        amount=f.read("amount", parse_money, required=True),
        vendor=f.read("vendor", _to_text),
        category_id=f.read("categoryid", _to_ref),
        category=f.read("category", _nested(_category_name)),
        client_id=f.read("clientid", _to_ref),
        project_id=f.read("projectid", _to_ref),
        date=f.read("date", parse_date),
        notes=f.read("notes", _to_text),
        status=f.read("status", _to_int),
        has_receipt=f.read("has_receipt", _to_bool) or False,
        updated=f.read("updated", parse_eastern_timestamp),
        updated_raw=f.raw_text("updated"),
        vis_state=_vis_state(f),
    )


PARSERS: dict[ObjectKind, Callable[[Mapping[str, object]], FreshBooksObject]] = {
    ObjectKind.INVOICE: parse_invoice,
    ObjectKind.PAYMENT: parse_payment,
    ObjectKind.BILL: parse_bill,
    ObjectKind.EXPENSE: parse_expense,
}


def parse_object(kind: ObjectKind, raw: Mapping[str, object]) -> FreshBooksObject:
    """The `result.<kind>` object of a GET (FreshBooksClient.get_object) as a typed object."""
    return PARSERS[kind](raw)


def parse_stored(kind: str, raw: object) -> FreshBooksObject | None:
    """An object we stored earlier (event payload, snapshot), or None when absent or no longer
    parseable: readers of stored objects treat those as unknown facts rather than failing."""
    if not isinstance(raw, Mapping):
        return None
    try:
        return parse_object(ObjectKind(kind), raw)
    except (ObjectParseError, ValueError):
        return None
