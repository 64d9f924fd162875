"""Sample FreshBooks JSON, as the API answers it, for tests that need an invoice or a payment."""

from __future__ import annotations

from decimal import Decimal
from typing import Any


def money(amount: str) -> dict[str, str]:
    return {"amount": amount, "code": "USD"}


def invoice_json(outstanding: str, updated: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": 987654,
        "invoice_number": "ACM0042",
        "customerid": 12345,
        "organization": "Gordon Shumway",
        "amount": money("7500.00"),
        "outstanding": money(outstanding),
        "paid": money(str(Decimal("7500.00") - Decimal(outstanding))),
        "currency_code": "USD",
        "status": 2,
        "v3_status": "sent",
        "due_date": "2026-12-01",
        "updated": updated,
        "vis_state": 0,
        **extra,
    }


def payment_json(payment_id: int, amount: str, updated: str) -> dict[str, Any]:
    return {
        "id": payment_id,
        "amount": money(amount),
        "invoiceid": 987654,
        "clientid": 12345,
        "date": "2026-11-24",
        "type": "Check",
        "updated": updated,
        "vis_state": 0,
    }
