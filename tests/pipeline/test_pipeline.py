"""The inbox worker and the enrich stage: handoff, idempotent repeats, retries, leases."""

from __future__ import annotations

import datetime as dt
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from connector.freshbooks.models import EASTERN
from connector.pipeline.backoff import retry_delay
from connector.pipeline.enrich.enrich import GONE, change_marker
from connector.pipeline.inbox_worker import InboxWorker
from connector.pipeline.ingest.signature import SIGNATURE_HEADER, compute_signature
from connector.pipeline.stages import Processed, RetryLater
from storage import inbox
from storage.models import Event, InboxState, WebhookInbox
from tests.support.fakes.freshbooks import Scripted
from tests.support.live import FB_ACCOUNT, Live


def invoice(object_id: int, updated: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": object_id,
        "invoiceid": object_id,
        "invoice_number": "ACM0042",
        "organization": "Gordon Shumway",
        "amount": {"amount": "7500.00", "code": "USD"},
        "updated": updated,
        "vis_state": 0,
        **extra,
    }


def rows(live: Live) -> list[WebhookInbox]:
    with live.services.db.session() as session:
        return list(session.scalars(select(WebhookInbox).order_by(WebhookInbox.id)))


def events(live: Live) -> list[Event]:
    with live.services.db.session() as session:
        return list(session.scalars(select(Event).order_by(Event.id)))


@pytest.fixture
def no_wait(live: Live) -> None:
    live.services.freshbooks._sleep = lambda _seconds: None


def test_webhook_becomes_one_event_with_the_fetched_object(live: Live) -> None:
    live.connect_and_register("invoice.create")
    live.fake.add_object(FB_ACCOUNT, "invoices", invoice(987654, "2026-11-24 07:00:00"))
    assert live.fake.deliver(FB_ACCOUNT, "invoice.create", "987654").status_code == 200

    assert live.services.inbox_worker.run_once() == 1

    (row,) = rows(live)
    (event,) = events(live)
    assert row.state == InboxState.DONE
    assert row.event_id == event.id
    assert (event.name, event.object_id, event.object_updated) == (
        "invoice.create",
        "987654",
        "2026-11-24 07:00:00",
    )
    assert event.object_enc is not None
    assert "Gordon" not in event.object_enc
    assert live.services.cipher.decrypt_json(event.object_enc)["invoice_number"] == "ACM0042"
    (fetch,) = live.fake.calls_to("GET", "/accounting")
    assert fetch.path == f"/accounting/account/{FB_ACCOUNT}/invoices/invoices/987654"
    assert fetch.headers["authorization"] == "Bearer fb-access-token"


def test_payment_fetch_includes_invoice_and_client(live: Live) -> None:
    live.connect_and_register("payment.create")
    live.fake.add_object(
        FB_ACCOUNT,
        "payments",
        {"id": 5, "amount": {"amount": "9.00", "code": "USD"}, "updated": "2026-11-24 08:00:00"},
    )
    live.fake.deliver(FB_ACCOUNT, "payment.create", "5")
    live.services.inbox_worker.run_once()
    (fetch,) = live.fake.calls_to("GET", "/accounting")
    assert fetch.query == {"include[]": ["invoice", "client"]}


def test_the_same_change_announced_twice_is_recorded_once(live: Live) -> None:
    live.connect_and_register("invoice.update")
    live.fake.add_object(FB_ACCOUNT, "invoices", invoice(1, "2026-11-24 07:00:00"))
    live.fake.deliver(FB_ACCOUNT, "invoice.update", "1")
    # The same body again, after the intake's repeat window (FreshBooks still retrying a day on):
    # stored, and recognised by the pipeline.
    live.clock.advance(seconds=inbox.REPEAT_WINDOW.total_seconds() + 60)
    live.fake.deliver(FB_ACCOUNT, "invoice.update", "1")
    assert live.services.inbox_worker.run_once() == 2

    first, second = rows(live)
    (event,) = events(live)
    assert (first.state, second.state) == (InboxState.DONE, InboxState.DUPLICATE)
    assert first.event_id == second.event_id == event.id

    # A real second change (new `updated`) is a new event.
    live.fake.add_object(FB_ACCOUNT, "invoices", invoice(1, "2026-11-24 09:30:00"))
    live.fake.deliver(FB_ACCOUNT, "invoice.update", "1", user_id="2")
    live.services.inbox_worker.run_once()
    assert [e.object_updated for e in events(live)] == ["2026-11-24 07:00:00", "2026-11-24 09:30:00"]


def test_a_byte_identical_repeat_within_a_day_is_left_to_the_reconciliation_poll(live: Live) -> None:
    """FreshBooks' bodies carry no timestamp: the same person changing the same invoice twice in a
    day sends the same bytes, which the intake takes for a repeat (no row, no fetch). The
    reconciliation poll reports that second change instead, within its interval."""
    new = live.connect_and_register("invoice.update")
    live.services.reconciler.poll(new.connection.id)  # the first poll only sets the watermark

    def eastern_now() -> str:  # FreshBooks' own format and zone for an invoice's `updated`
        return live.clock().astimezone(EASTERN).strftime("%Y-%m-%d %H:%M:%S")

    fetch = f"/accounting/account/{FB_ACCOUNT}/invoices/invoices/1"
    first_change = eastern_now()
    live.fake.add_object(FB_ACCOUNT, "invoices", invoice(1, first_change))
    assert live.fake.deliver(FB_ACCOUNT, "invoice.update", "1").status_code == 200
    assert live.services.inbox_worker.run_once() == 1
    assert len(live.fake.calls_to("GET", fetch)) == 1

    live.clock.advance(minutes=5)
    second_change = eastern_now()
    live.fake.add_object(FB_ACCOUNT, "invoices", invoice(1, second_change, notes="edited"))
    repeat = live.fake.deliver(FB_ACCOUNT, "invoice.update", "1")
    assert (repeat.status_code, repeat.text) == (200, "repeated webhook, already received\n")
    assert live.services.inbox_worker.run_once() == 0
    assert len(rows(live)) == 1
    assert len(live.fake.calls_to("GET", fetch)) == 1

    live.clock.advance(minutes=5)
    assert live.services.reconciler.poll(new.connection.id) == 1
    assert [(e.object_updated, e.source) for e in events(live)] == [
        (first_change, "webhook"),
        (second_change, "poll"),
    ]


def test_delete_of_an_object_that_is_gone(live: Live) -> None:
    live.connect_and_register("expense.delete")
    live.fake.deliver(FB_ACCOUNT, "expense.delete", "23456")
    live.fake.deliver(FB_ACCOUNT, "expense.delete", "23456", user_id="2")
    live.services.inbox_worker.run_once()
    (event,) = events(live)
    assert (event.object_updated, event.object_enc) == (GONE, None)
    assert [r.state for r in rows(live)] == [InboxState.DONE, InboxState.DUPLICATE]


def test_an_object_gone_before_the_fetch_is_kept_as_ignored(live: Live) -> None:
    live.connect_and_register("bill.create")
    live.fake.deliver(FB_ACCOUNT, "bill.create", "404404")
    live.services.inbox_worker.run_once()
    (row,) = rows(live)
    assert row.state == InboxState.IGNORED
    assert row.last_error == "object no longer exists at FreshBooks"
    assert events(live) == []


def test_a_refused_fetch_fails_permanently_and_is_kept(live: Live) -> None:
    live.connect_and_register("bill.create")
    live.fake.script("GET", "/accounting", Scripted(400, {"errno": 422, "message": "Invalid id"}))
    live.fake.deliver(FB_ACCOUNT, "bill.create", "1")
    live.services.inbox_worker.run_once()
    (row,) = rows(live)
    assert row.state == InboxState.FAILED
    assert row.last_error == "FreshBooks validation: Invalid id"


def test_an_unreadable_object_fails_permanently_and_is_kept(live: Live) -> None:
    live.connect_and_register("bill.create")
    live.fake.add_object(FB_ACCOUNT, "bills", {"id": 1, "amount": 12.5})  # a float: not FreshBooks' shape
    live.fake.deliver(FB_ACCOUNT, "bill.create", "1")
    live.services.inbox_worker.run_once()
    (row,) = rows(live)
    assert row.state == InboxState.FAILED
    assert "cannot parse bill: field 'amount'" in (row.last_error or "")


def test_freshbooks_outage_is_retried_after_retry_after(live: Live, no_wait: None) -> None:
    live.connect_and_register("invoice.create")
    live.fake.add_object(FB_ACCOUNT, "invoices", invoice(3, "2026-11-24 07:00:00"))
    outage = Scripted(503, {"errno": 503, "message": "maintenance"}, {"Retry-After": "120"})
    live.fake.script("GET", "/accounting", *[outage] * 4)  # the client's own 3 retries + 1
    live.fake.deliver(FB_ACCOUNT, "invoice.create", "3")

    assert live.services.inbox_worker.run_once() == 1
    (row,) = rows(live)
    assert row.state == InboxState.PENDING
    assert row.available_at == live.clock() + dt.timedelta(seconds=120)
    assert row.lease_owner is None
    assert "server" in (row.last_error or "")

    assert live.services.inbox_worker.run_once() == 0  # not due yet
    live.clock.advance(seconds=121)
    assert live.services.inbox_worker.run_once() == 1
    assert rows(live)[0].state == InboxState.DONE
    assert len(events(live)) == 1


def test_missing_token_waits_instead_of_failing(live: Live) -> None:
    new = live.connect_and_register("invoice.create")
    live.fake.deliver(FB_ACCOUNT, "invoice.create", "9")
    with live.services.db.session() as session:
        from storage.models import FreshBooksConnection

        session.get_one(FreshBooksConnection, new.connection.id).access_token_enc = None
    live.services.tokens.forget(new.connection.id)  # as a process that never read it would see it
    live.services.inbox_worker.run_once()
    (row,) = rows(live)
    assert row.state == InboxState.PENDING
    assert row.attempts == 1
    assert row.available_at == live.clock() + dt.timedelta(seconds=5)


def test_retry_schedule_ends_in_failed_not_dropped() -> None:
    assert retry_delay(1) == dt.timedelta(seconds=5)
    assert retry_delay(9) == dt.timedelta(hours=12)
    assert retry_delay(10) is None
    total = sum((retry_delay(n) or dt.timedelta() for n in range(1, 10)), dt.timedelta())
    assert dt.timedelta(hours=20) < total < dt.timedelta(hours=26)  # about a day


def test_a_bug_in_a_stage_keeps_the_row_for_retry(live: Live) -> None:
    live.connect_and_register("invoice.create")
    live.fake.deliver(FB_ACCOUNT, "invoice.create", "1")

    def broken(_item: inbox.InboxItem) -> Processed:
        raise KeyError("oops")

    worker = InboxWorker(db=live.services.db, cipher=live.services.cipher, handler=broken, clock=live.clock)
    assert worker.run_once() == 1
    (row,) = rows(live)
    assert row.state == InboxState.PENDING
    assert row.last_error == "KeyError in pipeline"


def test_a_crashed_workers_lease_expires(live: Live) -> None:
    live.connect_and_register("invoice.create")
    live.fake.add_object(FB_ACCOUNT, "invoices", invoice(1, "2026-11-24 07:01:00"))
    live.fake.deliver(FB_ACCOUNT, "invoice.create", "1")
    with live.services.db.session() as session:  # "crashed" worker: claims and never finishes
        claimed = inbox.claim_due(
            session, live.services.cipher, owner="dead", now=live.clock(), lease_seconds=120, limit=10
        )
    assert len(claimed) == 1
    assert live.services.inbox_worker.run_once() == 0
    live.clock.advance(seconds=121)
    assert live.services.inbox_worker.run_once() == 1
    (row,) = rows(live)
    assert (row.state, row.attempts) == (InboxState.DONE, 2)


def test_concurrent_workers_never_claim_the_same_row(live: Live) -> None:
    new = live.connect()
    with live.services.db.session() as session:
        for n in range(60):
            inbox.add_webhook(
                session,
                live.services.cipher,
                connection_id=new.connection.id,
                event_name="invoice.create",
                object_id=str(n),
                raw_body=b"x",
                state=InboxState.PENDING,
                now=live.clock(),
            )
    claimed: list[list[int]] = [[], [], []]

    def claim(slot: int) -> None:
        for _ in range(10):
            with live.services.db.session() as session:
                items = inbox.claim_due(
                    session,
                    live.services.cipher,
                    owner=f"w{slot}",
                    now=live.clock(),
                    lease_seconds=60,
                    limit=3,
                )
            claimed[slot].extend(i.id for i in items)

    threads = [threading.Thread(target=claim, args=(slot,)) for slot in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [i for ids in claimed for i in ids]
    assert len(everything) == len(set(everything)) == 60


def _pending_of(live: Live, connection_id: int) -> list[str]:
    with live.services.db.read() as session:
        return list(
            session.scalars(
                select(WebhookInbox.object_id)
                .where(WebhookInbox.connection_id == connection_id, WebhookInbox.state == InboxState.PENDING)
                .order_by(WebhookInbox.id)
            )
        )


def test_a_burst_for_one_connection_delays_another_by_at_most_one_batch(live: Live) -> None:
    """500 webhooks for one business, then one for another, over HTTP: the worker takes turns
    between connections, so the other's webhook is in the very next batch, not the 26th."""
    noisy = live.connect_and_register("invoice.create")
    quiet = live.connect(team_id="T0002", account_id="QUIET1")
    assert live.services.registrar is not None
    live.services.registrar.register(quiet.connection.id, "invoice.create")
    live.fake.add_object("QUIET1", "invoices", invoice(77, "2026-11-24 07:00:00"))
    # Signed as FreshBooks signs them, sent over a few keep-alive connections. The noisy
    # business's invoices are not at the fake: each of its rows ends "object gone", fast.
    (callback,) = [c for c in live.fake.callbacks.values() if c.account_id == FB_ACCOUNT]
    with httpx.Client() as client, ThreadPoolExecutor(max_workers=4) as pool:

        def send(n: int) -> int:
            fields = live.fake.webhook_fields(FB_ACCOUNT, "invoice.create", str(n))
            return client.post(
                callback.uri,
                content=urllib.parse.urlencode(fields),
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    SIGNATURE_HEADER: compute_signature(fields, callback.verifier),
                },
            ).status_code

        assert list(pool.map(send, range(500))) == [200] * 500
    assert live.fake.deliver("QUIET1", "invoice.create", "77").status_code == 200
    batch = live.services.inbox_worker.batch_size

    batches_before_quiet = 0
    while _pending_of(live, quiet.connection.id):
        assert live.services.inbox_worker.run_once() > 0
        batches_before_quiet += 1
        assert batches_before_quiet <= 500 // batch + 1, "the quiet connection's webhook was never taken"
    assert batches_before_quiet == 1, "oldest-first across tenants would have needed 26 batches"
    # Its webhook went through the whole stage, and the burst kept its own order: the oldest first.
    (quiet_row,) = [r for r in rows(live) if r.connection_id == quiet.connection.id]
    assert quiet_row.state == InboxState.DONE
    noisy_states = [r.state for r in rows(live) if r.connection_id == noisy.connection.id]
    assert noisy_states == [InboxState.IGNORED] * (batch - 1) + [InboxState.PENDING] * (500 - batch + 1)

    # A webhook arriving while the burst is being worked off waits for the batch in flight at most.
    live.fake.add_object("QUIET1", "invoices", invoice(78, "2026-11-24 07:05:00"))
    assert live.fake.deliver("QUIET1", "invoice.create", "78").status_code == 200
    assert live.services.inbox_worker.run_once() == batch
    assert _pending_of(live, quiet.connection.id) == []


def test_background_loop_picks_up_a_new_webhook_at_once(live: Live) -> None:
    live.connect_and_register("invoice.create")
    live.fake.add_object(FB_ACCOUNT, "invoices", invoice(8, "2026-11-24 07:08:00"))
    live.services.inbox_loop._idle = 3600  # only the wake-up can make it run in time
    live.services.start()
    live.services.inbox_loop.wake()  # let the start-up pass finish before the webhook
    live.fake.deliver(FB_ACCOUNT, "invoice.create", "8")
    deadline = time.monotonic() + 10
    # The row is finished after its event is recorded (the batch is closed in one transaction).
    while time.monotonic() < deadline and rows(live)[0].state != InboxState.DONE:
        time.sleep(0.02)  # polling for the other thread's result, with a deadline
    assert rows(live)[0].state == InboxState.DONE
    assert len(events(live)) == 1


def test_change_marker() -> None:
    assert change_marker(None) == GONE
    assert change_marker({"updated": "2021-04-16 10:31:58"}) == "2021-04-16 10:31:58"
    assert change_marker({"updated_at": "2021-09-01 15:30:29"}) == "2021-09-01 15:30:29"
    assert change_marker({"vis_state": 1}) == "vis1"


def test_endless_transient_failure_parks_the_row_as_failed(live: Live) -> None:
    live.connect_and_register("invoice.create")
    live.fake.deliver(FB_ACCOUNT, "invoice.create", "1")

    def flaky(_item: inbox.InboxItem) -> Processed:
        raise RetryLater("FreshBooks server")

    worker = InboxWorker(db=live.services.db, cipher=live.services.cipher, handler=flaky, clock=live.clock)
    for _ in range(12):
        worker.run_once()
        live.clock.advance(hours=13)
    (row,) = rows(live)
    assert row.state == InboxState.FAILED
    assert row.attempts == 10
    assert row.last_error == "gave up after 10 attempts: FreshBooks server"
