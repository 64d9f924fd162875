"""A dump of the database reveals no token, verifier, name, invoice number or payload."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url

from tests.support.dump import dump
from tests.support.live import FB_ACCOUNT, FB_TOKEN, Live


def test_dump_reveals_no_secret_or_customer_data(live: Live) -> None:
    new = live.connect_and_register("invoice.create", "payment.create")
    live.fake.add_object(
        FB_ACCOUNT,
        "invoices",
        {
            "id": 987654,
            "invoice_number": "ACM0042",
            "organization": "Gordon Shumway",
            "amount": {"amount": "7512.34", "code": "USD"},
            "updated": "2026-11-24 07:00:00",
        },
    )
    live.fake.deliver(FB_ACCOUNT, "invoice.create", "987654")
    live.services.inbox_worker.run_once()

    text = dump(live)
    assert "invoice.create" in text  # the dump is real: plaintext IDs and names of events are there
    secrets = [
        FB_TOKEN,
        "fb-refresh-token",
        new.webhook_token,
        "Acme Bookkeeping",
        "ACM0042",
        "Gordon Shumway",
        "7512.34",
        *(callback.verifier for callback in live.fake.callbacks.values()),
    ]
    for secret in secrets:
        assert secret not in text, secret

    url = make_url(live.services.db.url)
    if url.get_backend_name() == "sqlite":
        assert url.database
        raw = b"".join(p.read_bytes() for p in Path(url.database).parent.glob("test.db*"))
        for secret in secrets:
            assert secret.encode() not in raw, secret
