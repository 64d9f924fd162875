"""The reconciliation poll and the overdue scan: what webhooks never said is still reported, once."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select

from connector.domain.events import ObjectKind
from connector.freshbooks.models import EASTERN
from connector.pipeline.enrich.reconcile import (
    POLL_OVERLAP,
    PolledChange,
    lease_for,
    poll_cutoff,
    polled_change,
    polled_event_name,
)
from storage.db import Database
from storage.models import Event, InboxState, JobLease, WebhookInbox
from tests.support.builders import invoice_json
from tests.support.fakes.freshbooks import FakeFreshBooks
from tests.support.fakes.slack import FakeSlack
from tests.support.live import FB_ACCOUNT, SLACK_BOT_TOKEN, FakeClock, Live, serve_live

# Run again by .ci/run from a leap day just before midnight US/Eastern (tests/support/live.py).
pytestmark = pytest.mark.date_sensitive


def recorded(live: Live) -> list[tuple[str, str, str, str]]:
    with live.services.db.session() as session:
        rows = session.scalars(select(Event).order_by(Event.id)).all()
        return [(e.name, e.object_id, e.object_updated, e.source) for e in rows]


def test_polled_event_names() -> None:
    assert polled_event_name("invoice", {"vis_state": 1}, known=True) == "invoice.delete"  # type: ignore[arg-type]
    assert polled_event_name("bill", {"vis_state": 0}, known=True) == "bill.update"  # type: ignore[arg-type]
    assert polled_event_name("expense", {}, known=False) == "expense.create"  # type: ignore[arg-type]


def eastern(moment: dt.datetime) -> str:
    """A moment as FreshBooks writes `updated`: US/Eastern wall-clock time, no offset."""
    return moment.astimezone(EASTERN).strftime("%Y-%m-%d %H:%M:%S")


def move_to_eastern(live: Live, hour: int, minute: int = 0) -> dt.datetime:
    """Move the test clock forward to the next hour:minute of an Eastern day (from wherever it
    started), so that a test can say "earlier that day" whatever the date."""
    now = live.clock().astimezone(EASTERN)
    target = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if target <= now:
        target = (now + dt.timedelta(days=1)).replace(hour=hour, minute=minute, second=0, microsecond=0)
    live.clock.advance(seconds=(target.astimezone(dt.UTC) - live.clock()).total_seconds())
    return live.clock()


def invoice_at(object_id: int, updated: dt.datetime, **extra: object) -> dict[str, object]:
    return invoice_json("7500.00", eastern(updated), id=object_id, invoice_number=f"ACM{object_id}", **extra)


def listed_days(live: Live) -> list[str]:
    return [
        d for c in live.fake.calls_to("GET", "/accounting") for d in c.query.get("search[updated_min]", [])
    ]


def test_poll_cutoff_starts_at_connect_time_then_overlaps_the_last_poll() -> None:
    connected = dt.datetime(2028, 2, 29, 23, 0, tzinfo=dt.UTC)
    assert poll_cutoff(watermark=None, connected_at=connected) == connected
    assert poll_cutoff(watermark=connected + dt.timedelta(minutes=10), connected_at=connected) == connected
    later = connected + dt.timedelta(hours=5)
    assert poll_cutoff(watermark=later, connected_at=connected) == later - POLL_OVERLAP


def test_polled_change_keeps_only_what_changed_after_the_cutoff() -> None:
    cutoff = dt.datetime(2028, 3, 1, 4, 59, tzinfo=dt.UTC)  # 23:59 Eastern on the leap day
    before, after = cutoff - dt.timedelta(minutes=1), cutoff + dt.timedelta(minutes=1)
    assert polled_change(ObjectKind.INVOICE, invoice_at(1, before), cutoff) is None
    assert polled_change(ObjectKind.INVOICE, invoice_at(1, after), cutoff) == PolledChange(existed=False)
    older = invoice_at(1, after, created_at=eastern(before - dt.timedelta(days=40)))
    assert polled_change(ObjectKind.INVOICE, older, cutoff) == PolledChange(existed=True)
    # Bills write UTC: the same instant, written the UTC way, is still after the cutoff.
    bill = {"id": 7, "amount": {"amount": "1.00", "code": "USD"}, "updated_at": f"{after:%Y-%m-%d %H:%M:%S}"}
    assert polled_change(ObjectKind.BILL, bill, cutoff) == PolledChange(existed=False)
    assert (
        polled_change(ObjectKind.BILL, {**bill, "updated_at": f"{before:%Y-%m-%d %H:%M:%S}"}, cutoff) is None
    )
    # Unreadable: passed on, so the recorder can say what is wrong with it.
    assert polled_change(ObjectKind.INVOICE, {"id": 1}, cutoff) == PolledChange(existed=False)


def test_the_first_poll_starts_at_connect_time_and_asks_by_day(live: Live) -> None:
    connected_at = move_to_eastern(live, 12)
    new = live.connect()
    # Changed that morning, before the connection existed: FreshBooks lists it (the filter is by
    # day), but it is not news.
    live.fake.add_object(FB_ACCOUNT, "invoices", invoice_at(1, connected_at - dt.timedelta(hours=3)))
    # Changed after the connect, before the first poll came round: no webhook said so.
    changed = connected_at + dt.timedelta(minutes=2)
    live.fake.add_object(FB_ACCOUNT, "invoices", invoice_at(2, changed))
    live.clock.advance(minutes=10)

    assert live.services.reconciler.poll(new.connection.id) == 1
    assert recorded(live) == [("invoice.create", "2", eastern(changed), "poll")]
    day = connected_at.astimezone(EASTERN).date().isoformat()
    assert listed_days(live) == [day] * 4  # invoices, payments, bills, expenses: a date, no time

    live.clock.advance(minutes=10)
    assert live.services.reconciler.poll(new.connection.id) == 0  # both listed again: nothing new
    assert len(recorded(live)) == 1


def test_a_change_no_webhook_announced_is_reported_once(live: Live) -> None:
    move_to_eastern(live, 7)
    new = live.connect_and_register("invoice.create", "invoice.update")
    cid = new.connection.id
    live.services.reconciler.poll(cid)
    live.clock.advance(minutes=10)
    # FreshBooks changed an invoice five minutes ago but its webhook never came.
    changed = live.clock() - dt.timedelta(minutes=5)
    live.fake.add_object(FB_ACCOUNT, "invoices", invoice_json("7500.00", eastern(changed)))

    assert live.services.reconciler.poll(cid) == 1
    assert recorded(live) == [("invoice.create", "987654", eastern(changed), "poll")]
    live.clock.advance(minutes=10)
    assert live.services.reconciler.poll(cid) == 0  # the overlap lists it again: not reported again

    # The webhook turns up late after all: it is kept, and recognised as already reported.
    live.fake.deliver(FB_ACCOUNT, "invoice.update", "987654")
    live.services.inbox_worker.run_once()
    with live.services.db.session() as session:
        (row,) = session.scalars(select(WebhookInbox)).all()
    assert row.state == InboxState.DUPLICATE
    assert len(recorded(live)) == 1


def test_an_object_changed_before_the_last_poll_that_day_is_not_reported_again_or_as_new(live: Live) -> None:
    connected_at = move_to_eastern(live, 8)
    new = live.connect()
    cid = new.connection.id
    # Created long ago, changed after the connect; reported by the first poll as an update, since
    # it existed before (it is new only to us).
    old = invoice_at(
        3, connected_at + dt.timedelta(minutes=1), created_at=eastern(connected_at - dt.timedelta(days=60))
    )
    live.fake.add_object(FB_ACCOUNT, "invoices", old)
    live.clock.advance(minutes=5)
    assert live.services.reconciler.poll(cid) == 1
    assert recorded(live)[-1][:2] == ("invoice.update", "3")

    # Hours later the same day: the list by day brings it back with everything changed that day;
    # only what changed since the last poll (less the overlap) is looked at, and only once.
    live.clock.advance(hours=4)
    live.fake.add_object(FB_ACCOUNT, "invoices", invoice_at(4, live.clock() - dt.timedelta(minutes=2)))
    assert live.services.reconciler.poll(cid) == 1
    assert [r[:2] for r in recorded(live)] == [("invoice.update", "3"), ("invoice.create", "4")]
    live.clock.advance(hours=1)
    assert live.services.reconciler.poll(cid) == 0


def test_the_poll_crosses_midnight_eastern(live: Live) -> None:
    connected_at = move_to_eastern(live, 23, 50)
    new = live.connect()
    cid = new.connection.id
    live.fake.add_object(FB_ACCOUNT, "invoices", invoice_at(5, connected_at - dt.timedelta(minutes=5)))
    live.clock.advance(minutes=5)
    assert live.services.reconciler.poll(cid) == 0
    live.clock.advance(minutes=15)  # 00:10 the next day
    late = invoice_at(6, connected_at + dt.timedelta(minutes=8))  # 23:58, after the first poll
    live.fake.add_object(FB_ACCOUNT, "invoices", late)
    live.fake.add_object(FB_ACCOUNT, "invoices", invoice_at(7, live.clock() - dt.timedelta(minutes=5)))
    assert live.services.reconciler.poll(cid) == 2
    assert sorted(r[1] for r in recorded(live)) == ["6", "7"]
    # The overlap reached back into the day before, so the list asked from that day.
    assert listed_days(live)[-4:] == [connected_at.astimezone(EASTERN).date().isoformat()] * 4


def test_the_poll_skips_what_webhooks_already_reported(live: Live) -> None:
    new = live.connect_and_register("invoice.create")
    cid = new.connection.id
    live.services.reconciler.poll(cid)
    changed = live.clock() + dt.timedelta(minutes=1)
    live.fake.add_object(FB_ACCOUNT, "invoices", invoice_json("7500.00", eastern(changed)))
    live.fake.deliver(FB_ACCOUNT, "invoice.create", "987654")
    live.services.inbox_worker.run_once()
    live.clock.advance(minutes=10)
    assert live.services.reconciler.poll(cid) == 0
    assert [source for *_, source in recorded(live)] == ["webhook"]


def test_the_poll_runs_once_per_interval_across_processes(live: Live) -> None:
    live.connect()
    assert live.services.reconciler.run_poll() == 0
    polls = len(live.fake.calls_to("GET", "/accounting"))
    assert live.services.reconciler.run_poll() == 0  # lease held: nothing listed
    assert len(live.fake.calls_to("GET", "/accounting")) == polls


def test_overdue_is_reported_once_per_due_date(live: Live) -> None:
    live.connect_and_register("invoice.create")
    cid = 1
    today = live.clock().astimezone(EASTERN).date()
    first_due, second_due = today + dt.timedelta(days=7), today + dt.timedelta(days=11)
    live.fake.add_object(
        FB_ACCOUNT, "invoices", invoice_json("7500.00", eastern(live.clock()), due_date=first_due.isoformat())
    )
    live.fake.deliver(FB_ACCOUNT, "invoice.create", "987654")
    live.services.inbox_worker.run_once()
    scan = live.services.reconciler.scan_overdue

    assert scan(cid) == 0  # due in a week: not yet
    live.clock.advance(days=8)
    assert scan(cid) == 1
    assert scan(cid) == 0  # once per due date
    assert recorded(live)[-1][:3] == ("invoice.overdue", "987654", f"due:{first_due.isoformat()}")

    # A new due date that also passes is news again; a paid invoice never is.
    live.fake.add_object(
        FB_ACCOUNT,
        "invoices",
        invoice_json("7500.00", eastern(live.clock()), due_date=second_due.isoformat()),
    )
    assert scan(cid) == 0  # our state still says the first date, but the fresh fetch says not yet due
    live.clock.advance(days=5)
    assert scan(cid) == 1
    assert recorded(live)[-1][2] == f"due:{second_due.isoformat()}"
    live.clock.advance(minutes=1)
    live.fake.add_object(
        FB_ACCOUNT, "invoices", invoice_json("0.00", eastern(live.clock()), due_date=second_due.isoformat())
    )
    live.clock.advance(days=1)
    assert scan(cid) == 0


def test_the_daily_scan_takes_a_lease(live: Live) -> None:
    live.connect()
    assert live.services.reconciler.run_overdue_scan() == 0
    live.clock.advance(hours=1)
    with live.services.db.session() as session:
        lease = session.get_one(JobLease, "overdue-scan")
    assert lease.until > live.clock() + dt.timedelta(hours=20)


def test_lease_is_a_little_under_the_interval() -> None:
    assert lease_for(dt.timedelta(minutes=10)) == dt.timedelta(seconds=570)
    assert lease_for(dt.timedelta(hours=24)) == dt.timedelta(hours=23, minutes=55)
    assert lease_for(dt.timedelta(seconds=20)) == dt.timedelta(seconds=19)


def test_poll_and_scan_intervals_are_settings(
    db: Database,
    database_url: str,
    fake_freshbooks: FakeFreshBooks,
    fake_slack: FakeSlack,
    clock: FakeClock,
    tmp_path: Path,
    encryption_key: str,
) -> None:
    with serve_live(
        database_url=database_url,
        encryption_key=encryption_key,
        fake_freshbooks=fake_freshbooks,
        slack=fake_slack,
        clock=clock,
        tmp_path=tmp_path,
        SLACK_BOT_TOKEN=SLACK_BOT_TOKEN,
        RECONCILE_POLL_SECONDS="60",
        OVERDUE_SCAN_SECONDS="300",
    ) as live:
        scheduler = live.services.scheduler
        assert scheduler.get_job("reconcile-poll").trigger.interval == dt.timedelta(seconds=60)
        assert scheduler.get_job("overdue-scan").trigger.interval == dt.timedelta(seconds=300)
        live.connect()
        reconciler = live.services.reconciler

        def lists() -> int:
            return len(live.fake.calls_to("GET", f"/accounting/account/{FB_ACCOUNT}/"))

        reconciler.run_poll()
        assert lists() == 4  # invoices, payments, bills and expenses
        live.clock.advance(seconds=30)
        reconciler.run_poll()
        assert lists() == 4  # within the minute: another poll holds the lease
        live.clock.advance(seconds=30)
        reconciler.run_poll()
        assert lists() == 8  # a minute on: listed again

        reconciler.run_overdue_scan()
        with live.services.db.session() as session:
            lease = session.get_one(JobLease, "overdue-scan")
        assert lease.until == live.clock() + lease_for(dt.timedelta(seconds=300))
