"""`fbslack simulate`: send a running instance a correctly signed sample webhook, so a user can
try their routing rules without touching FreshBooks.

The sample object is written to `simulated_objects` (storage.simulated) under an id FreshBooks can
never use; the instance's enricher answers its fetch from there, so nothing reaches FreshBooks.
The webhook itself takes the real path: the form FreshBooks sends, signed with the verifier of the
connection's verified callback for that event (connector.pipeline.ingest.signature), posted to the
connection's webhook URL.

The sample builders and the connection and callback choices are pure; `simulate` does the I/O.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from connector.domain.events import SUPPORTED_EVENTS, ObjectKind
from connector.freshbooks.models import EASTERN, VisState
from connector.pipeline.ingest.signature import SIGNATURE_HEADER, compute_signature
from storage import connections, simulated
from storage.crypto import Cipher, DecryptionError
from storage.db import Database
from storage.models import ConnectionStatus, FreshBooksConnection

# Every event FreshBooks sends us can be simulated; derived ones (invoice.paid...) follow from them.
SIMULATED_EVENTS: tuple[str, ...] = tuple(SUPPORTED_EVENTS)
MARKER = "Simulated with fbslack simulate"
TIMEOUT_SECONDS = 10.0  # what FreshBooks gives a webhook

DEFAULT_AMOUNTS: dict[ObjectKind, Decimal] = {
    ObjectKind.INVOICE: Decimal("1250.00"),
    ObjectKind.PAYMENT: Decimal("1250.00"),
    ObjectKind.BILL: Decimal("480.00"),
    ObjectKind.EXPENSE: Decimal("64.50"),
}
DEFAULT_NAMES: dict[ObjectKind, str] = {
    ObjectKind.INVOICE: "Sample Client Ltd.",
    ObjectKind.PAYMENT: "Sample Client Ltd.",
    ObjectKind.BILL: "Sample Supplies Co.",
    ObjectKind.EXPENSE: "Sample Cafe",
}
DEFAULT_CURRENCY = "USD"
_MAX_AMOUNT = Decimal("1000000000")
_MAX_NAME = 200
_STATUS_FIX = (
    "check `/freshbooks status` in Slack (and `fbslack doctor`): the callback check re-verifies "
    "webhooks every 15 minutes, and `/freshbooks connect` registers them again"
)


class SimulateError(Exception):
    """Something the user can fix; the message says what and how. 2: setup, 1: the instance."""

    def __init__(self, message: str, *, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# -- input ------------------------------------------------------------------------------------


def event_kind(event: str) -> ObjectKind:
    """The object kind a simulated event is about, or a SimulateError listing the events there are."""
    kind = SUPPORTED_EVENTS.get(event)
    if kind is None:
        raise SimulateError(f"cannot simulate {event[:64]!r}; events: {', '.join(SIMULATED_EVENTS)}")
    return kind


def parse_amount(text: str) -> Decimal:
    """`5000`, `5,000` or `1234.5` -> Decimal('1234.50'); ValueError with a readable reason otherwise."""
    try:
        amount = Decimal(text.replace(",", "").strip())
    except InvalidOperation:
        raise ValueError(f"{text!r} is not an amount (e.g. 5000 or 5,000.00)") from None
    if not amount.is_finite() or amount <= 0 or amount >= _MAX_AMOUNT:
        raise ValueError(f"{text!r} must be more than 0 and less than {_MAX_AMOUNT:,}")
    if amount.as_tuple().exponent < -2:  # type: ignore[operator]
        raise ValueError(f"{text!r} has more than 2 decimals")
    return amount.quantize(Decimal("0.01"))


def instance_url(url: str) -> str:
    """The instance's base URL without a trailing slash; a SimulateError unless it is http(s)."""
    parsed = urllib.parse.urlsplit(url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise SimulateError(f"{url!r} is not an http:// or https:// URL (e.g. http://127.0.0.1:3000)")
    return url.strip().rstrip("/")


def parse_currency(text: str) -> str:
    code = text.strip().upper()
    if len(code) != 3 or not code.isascii() or not code.isalpha():
        raise ValueError(f"{text!r} is not a three-letter currency code (e.g. USD)")
    return code


def parse_name(text: str) -> str:
    name = " ".join(text.split())
    if not name or len(name) > _MAX_NAME:
        raise ValueError(f"a name needs 1 to {_MAX_NAME} characters")
    return name


@dataclass(frozen=True, slots=True)
class Sample:
    """What to simulate: the event and the facts rules look at."""

    event: str
    amount: Decimal
    party: str  # the client (invoices, payments) or vendor (bills, expenses) rules filter on
    currency: str

    @classmethod
    def of(cls, event: str, *, amount: Decimal | None, party: str | None, currency: str | None) -> Sample:
        kind = event_kind(event)
        return cls(
            event=event,
            amount=amount if amount is not None else DEFAULT_AMOUNTS[kind],
            party=party or DEFAULT_NAMES[kind],
            currency=currency or DEFAULT_CURRENCY,
        )


@dataclass(frozen=True, slots=True)
class SampleIds:
    """Simulated ids (storage.simulated.is_simulated_id) for the object and the objects it names."""

    object_id: str
    related_id: str  # a payment's invoice, an expense's client
    party_id: str  # the client, or the vendor of a bill


@dataclass(frozen=True, slots=True)
class StoredSample:
    kind: ObjectKind
    object_id: str
    raw: dict[str, Any]


# -- samples: what FreshBooks' GET would return (reference §6, shapes from tests/fixtures) -----


def _money(amount: Decimal, currency: str) -> dict[str, str]:
    return {"amount": f"{amount:.2f}", "code": currency}


def _eastern(now: dt.datetime) -> str:
    return now.astimezone(EASTERN).strftime("%Y-%m-%d %H:%M:%S")


def _number(object_id: str) -> str:
    return f"SIM-{object_id[-6:]}"


def _invoice(
    sample: Sample,
    ids: SampleIds,
    *,
    invoice_id: str,
    account_id: str,
    paid: bool,
    sent: bool,
    deleted: bool,
    now: dt.datetime,
) -> dict[str, Any]:
    today = now.astimezone(EASTERN).date()
    zero = Decimal("0.00")
    outstanding, paid_amount = (zero, sample.amount) if paid else (sample.amount, zero)
    status, v3_status = (4, "paid") if paid else (2, "sent") if sent else (1, "draft")
    return {
        "id": int(invoice_id),
        "invoiceid": int(invoice_id),
        "invoice_number": _number(invoice_id),
        "accountid": account_id,
        "accounting_systemid": account_id,
        "ownerid": 1,
        "customerid": int(ids.party_id),
        "organization": sample.party,
        "current_organization": sample.party,
        "currency_code": sample.currency,
        "language": "en",
        "amount": _money(sample.amount, sample.currency),
        "outstanding": _money(outstanding, sample.currency),
        "paid": _money(paid_amount, sample.currency),
        "discount_total": _money(zero, sample.currency),
        "create_date": today.isoformat(),
        "due_date": (today + dt.timedelta(days=30)).isoformat(),
        "due_offset_days": 30,
        "date_paid": today.isoformat() if paid else None,
        "status": status,
        "v3_status": v3_status,
        "payment_status": "paid" if paid else "unpaid",
        "display_status": v3_status,
        "auto_bill": False,
        "notes": MARKER,
        "terms": "Net 30",
        "created_at": _eastern(now),
        "updated": _eastern(now),
        "vis_state": VisState.DELETED if deleted else VisState.ACTIVE,
    }


def _client(sample: Sample, ids: SampleIds, now: dt.datetime) -> dict[str, Any]:
    return {
        "id": int(ids.party_id),
        "userid": int(ids.party_id),
        "organization": sample.party,
        "currency_code": sample.currency,
        "language": "en",
        "signup_date": now.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "updated": _eastern(now),
        "vis_state": VisState.ACTIVE,
    }


def sample_objects(
    sample: Sample, ids: SampleIds, *, account_id: str, now: dt.datetime
) -> list[StoredSample]:
    """The object the webhook names, first, then any object it embeds that may be fetched on its own
    later (a payment's invoice). Realistic FreshBooks JSON that connector.freshbooks.models parses.
    Pure."""
    kind = event_kind(sample.event)
    action = sample.event.split(".", 1)[1]
    deleted = action == "delete"
    money = _money(sample.amount, sample.currency)
    vis_state = VisState.DELETED if deleted else VisState.ACTIVE
    if kind is ObjectKind.INVOICE:
        sent = action in ("update", "sendByEmail")
        invoice = _invoice(
            sample,
            ids,
            invoice_id=ids.object_id,
            account_id=account_id,
            paid=False,
            sent=sent,
            deleted=deleted,
            now=now,
        )
        return [StoredSample(kind, ids.object_id, invoice)]
    if kind is ObjectKind.PAYMENT:
        # Fetched with include[]=invoice&include[]=client (client.OBJECT_ENDPOINTS): the payment pays
        # its invoice in full, so the connector also derives invoice.paid, as it would for real.
        invoice = _invoice(
            sample,
            ids,
            invoice_id=ids.related_id,
            account_id=account_id,
            paid=not deleted,
            sent=True,
            deleted=False,
            now=now,
        )
        payment = {
            "id": int(ids.object_id),
            "logid": int(ids.object_id),
            "accounting_systemid": account_id,
            "amount": money,
            "clientid": int(ids.party_id),
            "invoiceid": int(ids.related_id),
            "date": now.astimezone(EASTERN).date().isoformat(),
            "type": "Check",
            "note": MARKER,
            "gateway": None,
            "from_credit": False,
            "creditid": None,
            "overpaymentid": None,
            "orderid": None,
            "transactionid": None,
            "send_client_notification": False,
            "updated": _eastern(now),
            "vis_state": vis_state,
            "invoice": invoice,
            "client": _client(sample, ids, now),
        }
        return [
            StoredSample(kind, ids.object_id, payment),
            StoredSample(ObjectKind.INVOICE, ids.related_id, invoice),
        ]
    today = now.astimezone(EASTERN).date()
    if kind is ObjectKind.BILL:
        # Bills are the one object whose timestamps are UTC (reference §6).
        utc = now.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        zero = _money(Decimal("0.00"), sample.currency)
        bill = {
            "id": int(ids.object_id),
            "bill_number": _number(ids.object_id),
            "status": "unpaid",
            "currency_code": sample.currency,
            "language": "en",
            "amount": money,
            "total_amount": money,
            "outstanding": money,
            "paid": zero,
            "tax_amount": zero,
            "issue_date": today.isoformat(),
            "due_date": (today + dt.timedelta(days=30)).isoformat(),
            "due_offset_days": 30,
            "vendorid": int(ids.party_id),
            "vendor": {
                "vendorid": int(ids.party_id),
                "vendor_name": sample.party,
                "currency_code": sample.currency,
                "created_at": utc,
                "updated_at": utc,
                "vis_state": VisState.ACTIVE,
            },
            "bill_payments": [],
            "lines": [
                {
                    "id": 1,
                    "list_index": 1,
                    "description": MARKER,
                    "quantity": "1",
                    "unit_cost": money,
                    "amount": money,
                    "category": {"categoryid": 3012, "category": "Office Supplies"},
                }
            ],
            "overall_category": "Office Supplies",
            "overall_description": MARKER,
            "attachment": None,
            "created_at": utc,
            "updated_at": utc,
            "vis_state": vis_state,
        }
        return [StoredSample(kind, ids.object_id, bill)]
    expense = {
        "id": int(ids.object_id),
        "expenseid": int(ids.object_id),
        "accounting_systemid": account_id,
        "amount": money,
        "vendor": sample.party,
        "categoryid": 3012,
        # Billable to a client (status 1: not yet invoiced), so `billable` rules match it too.
        "clientid": int(ids.related_id),
        "projectid": None,
        "date": today.isoformat(),
        "notes": MARKER,
        "status": 1,
        "has_receipt": False,
        "invoiceid": None,
        "staffid": 1,
        "updated": _eastern(now),
        "vis_state": vis_state,
    }
    return [StoredSample(kind, ids.object_id, expense)]


def webhook_fields(
    event: str, object_id: str, *, account_id: str, business_id: int | None, identity_id: int | None
) -> list[tuple[str, str]]:
    """The form fields in the order of a real delivery (reference §1): the signature depends on it."""
    return [
        ("name", event),
        ("object_id", object_id),
        ("user_id", "1"),
        ("identity_id", str(identity_id or 1)),
        ("business_id", str(business_id or 1)),
        ("account_id", account_id),
    ]


# -- choosing the connection and the signing key (pure) ------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectionChoice:
    id: int
    status: str
    business_name: str | None
    account_id: str

    def describe(self) -> str:
        name = self.business_name or "unnamed business"
        note = "" if self.status == ConnectionStatus.ACTIVE else f", {self.status}"
        return f"{self.id} ({name}, account {self.account_id}{note})"


def choose_connection(candidates: Sequence[ConnectionChoice], wanted: int | None) -> ConnectionChoice:
    """`wanted`, if it is one of the (not disconnected) candidates; else the only active one."""
    listing = "; ".join(c.describe() for c in candidates)
    if wanted is not None:
        for candidate in candidates:
            if candidate.id == wanted:
                return candidate
        if not candidates:
            raise SimulateError(
                f"there is no FreshBooks connection {wanted}: run `/freshbooks connect` in Slack"
            )
        raise SimulateError(f"there is no FreshBooks connection {wanted}; connections: {listing}")
    active = [c for c in candidates if c.status == ConnectionStatus.ACTIVE]
    if len(active) == 1:
        return active[0]
    if not active:
        more = f" (connections that need attention: {listing})" if candidates else ""
        raise SimulateError(
            f"no active FreshBooks connection{more}: run `/freshbooks connect` in Slack first"
        )
    raise SimulateError(
        "several FreshBooks connections; say which with --connection ID: "
        + "; ".join(c.describe() for c in active)
    )


@dataclass(frozen=True, slots=True)
class CallbackState:
    event: str
    verified: bool
    verifier_enc: str | None


def signing_key(callbacks: Sequence[CallbackState], *, event: str, connection_id: int) -> str:
    """The encrypted verifier of a verified callback for `event`: FreshBooks signs with that one."""
    for callback in callbacks:
        if callback.event == event and callback.verified and callback.verifier_enc:
            return callback.verifier_enc
    state = "registered but not verified" if any(c.event == event for c in callbacks) else "not registered"
    raise SimulateError(
        f"connection {connection_id}'s FreshBooks webhook for {event} is {state}, so there is no "
        f"verifier to sign the sample with: {_STATUS_FIX}"
    )


# -- doing it ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Simulated:
    """What was sent and how the instance answered."""

    connection: ConnectionChoice
    object_id: str
    url: str  # without the secret webhook token
    status: int
    answer: str


def _load(
    db: Database, cipher: Cipher, *, event: str, wanted: int | None
) -> tuple[ConnectionChoice, str, str, int | None, int | None]:
    """(connection, webhook token, verifier, business id, identity id)."""
    with db.read() as session:
        ids = set(connections.active_connection_ids(session))
        if wanted is not None:
            ids.add(wanted)
        rows = [row for cid in sorted(ids) if (row := session.get(FreshBooksConnection, cid)) is not None]
        candidates = [
            ConnectionChoice(
                id=row.id,
                status=row.status,
                business_name=cipher.decrypt(row.business_name_enc) if row.business_name_enc else None,
                account_id=row.account_id,
            )
            for row in rows
            if row.status != ConnectionStatus.DISCONNECTED
        ]
        chosen = choose_connection(candidates, wanted)
        row = next(r for r in rows if r.id == chosen.id)
        callbacks = [
            CallbackState(c.event, c.verified, c.verifier_enc)
            for c in connections.callbacks_of(session, chosen.id)
        ]
        verifier_enc = signing_key(callbacks, event=event, connection_id=chosen.id)
        token = connections.webhook_token(session, cipher, chosen.id)
        return chosen, token, cipher.decrypt(verifier_enc), row.business_id, row.identity_id


def simulate(
    sample: Sample,
    *,
    db: Database,
    cipher: Cipher,
    base_url: str,
    connection_id: int | None,
    now: dt.datetime,
    new_id: Callable[[], str] = simulated.new_simulated_id,
    http: httpx.Client | None = None,
) -> Simulated:
    """Store the sample, send its signed webhook to the instance at `base_url`, report the answer.

    Raises SimulateError for anything the user must fix (exit_code 1 when the instance is the
    problem). A sample the instance refused is removed again.
    """
    event_kind(sample.event)  # refuse an unknown event or URL before touching anything
    base = instance_url(base_url)
    try:
        chosen, token, verifier, business_id, identity_id = _load(
            db, cipher, event=sample.event, wanted=connection_id
        )
    except DecryptionError:
        raise SimulateError(
            "cannot decrypt the connection's secrets: run this with the server's ENCRYPTION_KEYS "
            "(and DATA_DIR, for the development key)"
        ) from None
    ids = SampleIds(object_id=new_id(), related_id=new_id(), party_id=new_id())
    stored = sample_objects(sample, ids, account_id=chosen.account_id, now=now)
    with db.session() as session:
        for item in stored:
            simulated.put_object(
                session,
                cipher,
                connection_id=chosen.id,
                kind=item.kind,
                object_id=item.object_id,
                raw=item.raw,
                now=now,
            )
    fields = webhook_fields(
        sample.event,
        ids.object_id,
        account_id=chosen.account_id,
        business_id=business_id,
        identity_id=identity_id,
    )
    shown_url = f"{base}/freshbooks/webhooks/..."
    try:
        post = http.post if http is not None else httpx.post
        response = post(
            f"{base}/freshbooks/webhooks/{token}",
            content=urllib.parse.urlencode(fields),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                SIGNATURE_HEADER: compute_signature(fields, verifier),
            },
            timeout=TIMEOUT_SECONDS,
        )
    except httpx.ConnectError:
        _forget(db, chosen.id, stored)
        raise SimulateError(
            f"could not connect to {base}: is `fbslack serve` running at {base}? "
            "(set PUBLIC_URL, or pass --url)",
            exit_code=1,
        ) from None
    except httpx.HTTPError as exc:
        # It may have been stored before the answer was lost: keep the sample for its fetch.
        raise SimulateError(
            f"no answer from {base} ({type(exc).__name__}): is `fbslack serve` running and reachable there?",
            exit_code=1,
        ) from None
    answer = response.text.strip()[:200]
    if not response.is_success:
        _forget(db, chosen.id, stored)
        raise SimulateError(
            f"the instance at {base} answered HTTP {response.status_code}: {answer or '(no message)'}"
            + _hint(response.status_code),
            exit_code=1,
        )
    return Simulated(
        connection=chosen, object_id=ids.object_id, url=shown_url, status=response.status_code, answer=answer
    )


def _hint(status: int) -> str:
    if status == 404:
        return " (is that the instance whose database this is? Check PUBLIC_URL, --url and DATABASE_URL)"
    if status == 401:
        return " (the signature was refused: does the instance use this database and ENCRYPTION_KEYS?)"
    return ""


def _forget(db: Database, connection_id: int, stored: Sequence[StoredSample]) -> None:
    with db.session() as session:
        for item in stored:
            simulated.forget_object(session, connection_id=connection_id, object_id=item.object_id)


def describe(sample: Sample, result: Simulated) -> str:
    """The CLI's report of a simulation that the instance accepted."""
    kind = event_kind(sample.event)
    party = "vendor" if kind in (ObjectKind.BILL, ObjectKind.EXPENSE) else "client"
    return (
        f"Sent {sample.event} for simulated {kind} {result.object_id} "
        f"({sample.amount:,.2f} {sample.currency}, {party} {sample.party!r}) to connection "
        f"{result.connection.describe()} at {result.url}: HTTP {result.status} {result.answer}\n"
        "Its messages go to the channels your rules route it to, marked as simulated; "
        "FreshBooks is not contacted."
    )
