"""The reconciliation poll and the overdue scan: what webhooks never said is still reported, once."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import select

from connector.reconcile import lease_for, polled_event_name
from storage.db import Database
from storage.models import Event, InboxState, JobLease, WebhookInbox
from tests.conftest import FB_ACCOUNT, SLACK_BOT_TOKEN, FakeClock, Live, serve_live
from tests.fakes.freshbooks import FakeFreshBooks
from tests.fakes.slack import FakeSlack
from tests.test_derived_events import invoice_json


def recorded(live: Live) -> list[tuple[str, str, str, str]]:
    with live.services.db.session() as session:
        rows = session.scalars(select(Event).order_by(Event.id)).all()
        return [(e.name, e.object_id, e.object_updated, e.source) for e in rows]


def test_polled_event_names() -> None:
    assert polled_event_name("invoice", {"vis_state": 1}, known=True) == "invoice.delete"  # type: ignore[arg-type]
    assert polled_event_name("bill", {"vis_state": 0}, known=True) == "bill.update"  # type: ignore[arg-type]
    assert polled_event_name("expense", {}, known=False) == "expense.create"  # type: ignore[arg-type]


def test_first_poll_only_sets_the_watermark(live: Live) -> None:
    new = live.connect()
    live.fake.add_object(FB_ACCOUNT, "invoices", invoice_json("10.00", "2026-11-20 09:00:00"))
    assert live.services.reconciler.poll(new.connection.id) == 0
    assert recorded(live) == []


def test_a_change_no_webhook_announced_is_reported_once(live: Live) -> None:
    new = live.connect_and_register("invoice.create", "invoice.update")
    cid = new.connection.id
    live.services.reconciler.poll(cid)  # watermark: 12:00 UTC (07:00 Eastern)
    live.clock.advance(minutes=10)
    # FreshBooks changed an invoice at 07:05 Eastern but its webhook never came.
    live.fake.add_object(FB_ACCOUNT, "invoices", invoice_json("7500.00", "2026-11-24 07:05:00"))

    assert live.services.reconciler.poll(cid) == 1
    assert recorded(live) == [("invoice.create", "987654", "2026-11-24 07:05:00", "poll")]
    live.clock.advance(minutes=10)
    assert live.services.reconciler.poll(cid) == 0  # the overlap lists it again: not reported again

    # The webhook turns up late after all: it is kept, and recognised as already reported.
    live.fake.deliver(FB_ACCOUNT, "invoice.update", "987654")
    live.services.inbox_worker.run_once()
    with live.services.db.session() as session:
        (row,) = session.scalars(select(WebhookInbox)).all()
    assert row.state == InboxState.DUPLICATE
    assert len(recorded(live)) == 1


def test_the_poll_skips_what_webhooks_already_reported(live: Live) -> None:
    new = live.connect_and_register("invoice.create")
    cid = new.connection.id
    live.services.reconciler.poll(cid)
    live.fake.add_object(FB_ACCOUNT, "invoices", invoice_json("7500.00", "2026-11-24 07:05:00"))
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
    live.fake.add_object(FB_ACCOUNT, "invoices", invoice_json("7500.00", "2026-11-24 07:05:00"))
    live.fake.deliver(FB_ACCOUNT, "invoice.create", "987654")
    live.services.inbox_worker.run_once()
    scan = live.services.reconciler.scan_overdue

    assert scan(cid) == 0  # due 2026-12-01: not yet
    live.clock.advance(days=8)
    assert scan(cid) == 1
    assert scan(cid) == 0  # once per due date
    assert recorded(live)[-1][:3] == ("invoice.overdue", "987654", "due:2026-12-01")

    # A new due date that also passes is news again; a paid invoice never is.
    live.fake.add_object(
        FB_ACCOUNT, "invoices", invoice_json("7500.00", "2026-12-02 08:00:00", due_date="2026-12-05")
    )
    assert scan(cid) == 0  # our state still says Dec 1, but the fresh fetch says not yet due
    live.clock.advance(days=5)
    assert scan(cid) == 1
    assert recorded(live)[-1][2] == "due:2026-12-05"
    live.fake.add_object(
        FB_ACCOUNT, "invoices", invoice_json("0.00", "2026-12-03 08:00:00", due_date="2026-12-05")
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

        reconciler.run_poll()  # the first poll of the connection only sets its watermark
        live.clock.advance(seconds=30)
        reconciler.run_poll()
        assert lists() == 0  # within the minute: another poll holds the lease
        live.clock.advance(seconds=30)
        reconciler.run_poll()
        assert lists() == 4  # a minute on: invoices, payments, bills and expenses listed again

        reconciler.run_overdue_scan()
        with live.services.db.session() as session:
            lease = session.get_one(JobLease, "overdue-scan")
        assert lease.until == live.clock() + lease_for(dt.timedelta(seconds=300))
