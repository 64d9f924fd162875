"""The digest job over real HTTP against the fake Slack and FreshBooks: when digests go out (across a
daylight-saving change), exactly once (two schedulers, a crash after the post), and what the channel
hears when FreshBooks fails or is disconnected."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from connector.features.digest.sender import ChartHook, DigestPosted, DigestSender
from storage import connections, digests, outbox
from storage.models import AuditEntry, DigestRun, DigestRunState
from tests.support.books import random_books
from tests.support.fakes.freshbooks import Scripted
from tests.support.fakes.slack import Channel
from tests.support.live import ADMIN, FB_ACCOUNT, Live

NEW_YORK = ZoneInfo("America/New_York")
INVOICES = f"/accounting/account/{FB_ACCOUNT}/invoices/invoices"


def say(live: Live, text: str) -> str:
    response = live.slash(text)
    assert response.status_code == 200
    return str(response.json()["text"])


def at_local(day: dt.date, hour: int, minute: int = 0, zone: ZoneInfo = NEW_YORK) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone).astimezone(dt.UTC)


def setup(
    live: Live, command: str = "digest <#C0FIN|finance> daily at 08:00", day: dt.date | None = None
) -> Channel:
    """A connected workspace, its #finance, books, and a digest scheduled at 07:00 New York time on
    `day` (tomorrow by default: the clock only moves forward)."""
    live.slack.clock = lambda: live.clock().timestamp()  # Slack's ts follow the test's clock
    channel = live.slack.add_channel(Channel("C0FIN", name="finance"))
    live.slack.users[ADMIN]["tz"] = "America/New_York"
    today = day or live.clock().astimezone(NEW_YORK).date() + dt.timedelta(days=1)
    live.clock.now = at_local(today, 7)
    new = live.connect()
    random_books(5, today=today, invoices=30, payments=30, bills=5, expenses=10).load_into(
        live.fake, FB_ACCOUNT
    )
    assert say(live, command).startswith("Digest scheduled")
    assert new.connection.id
    return channel


def posts(channel: Channel) -> list[dict[str, Any]]:
    """The channel's messages but the charts' file shares (each digest's chart follows it)."""
    return [m for m in channel.messages if not m.get("upload")]


def runs(live: Live) -> list[DigestRun]:
    with live.services.db.read() as session:
        return list(session.scalars(select(DigestRun).order_by(DigestRun.id)))


def audit_outcomes(live: Live) -> list[str]:
    with live.services.db.read() as session:
        return list(
            session.scalars(
                select(AuditEntry.outcome).where(AuditEntry.kind == "digest").order_by(AuditEntry.id)
            )
        )


def other_sender(live: Live, owner: str, chart: ChartHook | None = None) -> DigestSender:
    """A second scheduler on the same database, as another process would run it."""
    s = live.services
    return DigestSender(
        db=s.db,
        cipher=s.cipher,
        client=s.freshbooks,
        tokens=s.tokens,
        client_for_team=lambda _team: s.slack_client,
        clock=live.clock,
        owner=owner,
        chart=chart,
    )


def _next_clock_change(start: dt.date, zone: ZoneInfo) -> dt.date:
    """The first day after `start` whose noon has another UTC offset than the day before's."""
    day = start + dt.timedelta(days=1)
    while at_local(day, 12, zone=zone) - at_local(day - dt.timedelta(days=1), 12, zone=zone) == dt.timedelta(
        days=1
    ):
        day += dt.timedelta(days=1)
    return day


@pytest.mark.date_sensitive
def test_a_daily_digest_goes_out_at_0800_new_york_time_across_a_clock_change(live: Live) -> None:
    change = _next_clock_change(live.clock().astimezone(NEW_YORK).date() + dt.timedelta(days=3), NEW_YORK)
    finance = setup(live, day=change - dt.timedelta(days=3))
    sender = live.services.digest_sender
    live.clock.now = at_local(change - dt.timedelta(days=2), 7, 58)
    assert sender.run() == 1  # the day it was made, at 08:00: late, but sent
    days = [
        change - dt.timedelta(days=2),
        change - dt.timedelta(days=1),
        change,
        change + dt.timedelta(days=1),
    ]
    posted_at = []
    for day in days:
        live.clock.now = at_local(day, 7, 59)
        assert sender.run() == 0, day
        live.clock.now = at_local(day, 8)
        assert sender.run() == 1, day
        assert sender.run() == 0  # once
        message = posts(finance)[-1]
        stamped = dt.datetime.fromtimestamp(float(message["ts"]), tz=dt.UTC)
        assert (stamped.astimezone(NEW_YORK).hour, stamped.astimezone(NEW_YORK).minute) == (8, 0)
        yesterday = day - dt.timedelta(days=1)
        assert message["blocks"][0]["text"]["text"].endswith(
            f"{yesterday:%b} {yesterday.day}, {yesterday.year}"
        )
        posted_at.append(stamped)
    gaps = [(b - a) for a, b in itertools.pairwise(posted_at)]
    # 24 hours between posts, but 23 or 25 across the change: 08:00 stays 08:00 on the wall clock.
    assert gaps[0] == gaps[2] == dt.timedelta(hours=24)
    assert gaps[1] in (dt.timedelta(hours=23), dt.timedelta(hours=25))
    assert len(posts(finance)) == 5


@pytest.mark.date_sensitive
def test_a_weekly_digest_reports_the_seven_days_before_its_day(live: Live) -> None:
    finance = setup(live, "digest <#C0FIN|finance> weekly wednesday at 09:30")
    sender = live.services.digest_sender
    day = live.clock().astimezone(NEW_YORK).date()
    while day.weekday() != 2:
        day += dt.timedelta(days=1)
    day += dt.timedelta(days=7)  # certainly after the schedule was made
    for moment in (at_local(day - dt.timedelta(days=1), 9, 30), at_local(day, 9, 29)):
        live.clock.now = moment
        sender.run()
    before = len(posts(finance))  # the Wednesday before `day` may have gone out meanwhile
    live.clock.now = at_local(day, 9, 30)
    assert sender.run() == 1
    assert len(posts(finance)) == before + 1
    first, last = day - dt.timedelta(days=7), day - dt.timedelta(days=1)
    header = posts(finance)[-1]["blocks"][0]["text"]["text"]
    assert header.startswith("Weekly cash-flow digest: ") and f"{last:%b} {last.day}, {last.year}" in header
    assert f"{first:%b} {first.day}" in header


def test_two_schedulers_racing_post_one_digest(live: Live) -> None:
    finance = setup(live)
    live.clock.advance(hours=1)  # 08:00: due
    hold = live.slack.hold("chat.postMessage")
    first = live.services.digest_sender
    posted: list[int] = []
    racer = threading.Thread(target=lambda: posted.append(first.run()))
    racer.start()
    try:
        assert hold.arrived.wait(10)  # the first scheduler is posting now
        assert other_sender(live, "other-process").run() == 0
    finally:
        hold.release()
        racer.join(10)
    assert posted == [1]
    assert len(posts(finance)) == 1
    (run,) = runs(live)
    assert run.state == DigestRunState.DELIVERED and run.slack_ts == posts(finance)[0]["ts"]


def test_a_crash_after_the_post_does_not_post_it_twice(live: Live) -> None:
    finance = setup(live)
    live.clock.advance(hours=1)
    # The post lands in Slack, and its sender dies before hearing so (its answer never comes).
    held = live.slack.hold_answer("chat.postMessage")
    crashed = live.services.digest_sender
    doomed = threading.Thread(target=crashed.run)
    doomed.start()
    assert held.arrived.wait(10)
    (run,) = runs(live)
    assert run.state == DigestRunState.IN_DOUBT
    # Another process finds the run in doubt once its lease has run out, and finds the post by its key.
    live.clock.advance(minutes=6)
    assert other_sender(live, "survivor").run() == 0
    held.release()
    doomed.join(10)
    assert len(posts(finance)) == 1
    (run,) = runs(live)
    assert run.state == DigestRunState.DELIVERED and run.slack_ts == posts(finance)[0]["ts"]
    assert audit_outcomes(live) == ["scheduled", "reconciled"]
    assert posts(finance)[0]["metadata"]["event_payload"] == {"delivery_key": run.delivery_key}


def test_a_dropped_answer_is_checked_in_the_channel_before_posting_again(live: Live) -> None:
    finance = setup(live)
    live.clock.advance(hours=1)
    live.slack.script("chat.postMessage", "internal_error")  # refused: nothing stored
    sender = live.services.digest_sender
    assert sender.run() == 0
    (run,) = runs(live)
    assert (run.state, run.last_error) == (DigestRunState.IN_DOUBT, "internal_error")
    live.clock.advance(seconds=20)
    assert sender.run() == 1  # not found in the channel: posted now
    assert len(posts(finance)) == 1
    assert audit_outcomes(live) == ["scheduled", "in_doubt", "delivered"]
    assert len(live.slack.calls_to("conversations.history")) == 1


@pytest.mark.date_sensitive
def test_freshbooks_down_is_retried_and_the_channel_is_told_once_after_an_hour(live: Live) -> None:
    finance = setup(live)
    live.clock.advance(hours=1)
    due = live.clock()
    sender = live.services.digest_sender
    down = Scripted(503, {"message": "Service Unavailable"}, {"Retry-After": "0"})
    tries = 0
    while True:
        # One try lists the invoices four times (the client's own retries); each fails.
        live.fake.script("GET", INVOICES, down, down, down, down)
        assert sender.run() == 0
        tries += 1
        (run,) = runs(live)
        assert run.state == DigestRunState.PENDING
        if run.delayed_notice_at is not None:
            break
        assert posts(finance) == []  # silence only for the first hour
        assert run.next_attempt_at <= due + dt.timedelta(hours=1)
        live.clock.now = run.next_attempt_at
    assert live.clock() == due + dt.timedelta(hours=1) and tries >= 5
    (notice,) = posts(finance)
    assert notice["text"].startswith(":hourglass: Digest delayed: FreshBooks is not answering (HTTP 503")
    assert "metadata" not in notice
    live.fake.script("GET", INVOICES, down, down, down, down)
    live.clock.now = runs(live)[0].next_attempt_at
    assert sender.run() == 0
    assert len(posts(finance)) == 1  # told once
    live.clock.now = runs(live)[0].next_attempt_at  # FreshBooks answers again
    assert sender.run() == 1
    assert posts(finance)[-1]["blocks"][0]["text"]["text"].startswith("Daily cash-flow digest")
    outcomes = audit_outcomes(live)
    assert outcomes.count("delayed") == 1 and outcomes[-1] == "delivered"
    # Searchable: `/freshbooks audit digest` lists what became of it, newest first.
    trail = say(live, "audit digest").splitlines()
    assert trail[0] == "Digests, newest first:"
    assert "digest #1 · *delivered* · <#C0FIN>" in trail[1]
    assert any("*delayed*" in line and "`freshbooks_server`" in line for line in trail)


@pytest.mark.date_sensitive
def test_a_revoked_connection_skips_and_says_so_once(live: Live) -> None:
    finance = setup(live)
    with live.services.db.session() as session:
        connection_id = connections.connections_of_team(session, "T0001")[0].id
        connections.mark_needs_reconnect(session, connection_id=connection_id, reason="revoked")
    sender = live.services.digest_sender
    live.clock.advance(hours=1)
    assert sender.run() == 0
    (notice,) = posts(finance)
    assert notice["text"].startswith(":warning: Digest skipped: FreshBooks is disconnected")
    live.clock.advance(days=1)
    assert sender.run() == 0
    assert len(posts(finance)) == 1  # the next day's is skipped without a word
    assert [r.state for r in runs(live)] == [DigestRunState.SKIPPED, DigestRunState.SKIPPED]
    assert live.fake.calls_to("GET", INVOICES) == []


def test_the_chart_hook_gets_the_posted_digest_and_cannot_unsend_it(live: Live) -> None:
    """The chart goes after the message (slack_files: a message posted after an upload can land
    above it), with the message's ts; a chart that fails leaves the digest delivered, once."""
    finance = setup(live)
    live.clock.advance(hours=1)
    seen: list[DigestPosted] = []

    def broken_chart(posted: DigestPosted) -> None:
        seen.append(posted)
        raise RuntimeError("the upload failed")

    assert other_sender(live, "with-chart", chart=broken_chart).run() == 1
    (posted,) = seen
    (message,) = posts(finance)
    assert (posted.channel_id, posted.ts, posted.team_id) == ("C0FIN", message["ts"], "T0001")
    assert posted.digest.period.cadence.value == "daily"
    (run,) = runs(live)
    assert run.state == DigestRunState.DELIVERED
    live.clock.advance(minutes=10)
    assert other_sender(live, "with-chart", chart=broken_chart).run() == 0 and len(seen) == 1


def test_a_digest_waits_its_turn_in_a_channel_the_delivery_engine_is_posting_to(live: Live) -> None:
    finance = setup(live)
    live.clock.advance(hours=1)
    with live.services.db.session() as session:
        (schedule,) = digests.schedules(session)
        # An event's post to #finance is on its way (the engine holds the channel's turn).
        assert outbox.take_channel(
            session,
            workspace_id=schedule.workspace_id,
            channel_id="C0FIN",
            now=live.clock(),
            busy=dt.timedelta(seconds=60),
        )
    sender = live.services.digest_sender
    assert sender.run() == 0
    (run,) = runs(live)
    assert run.state == DigestRunState.PENDING and posts(finance) == []
    with live.services.db.session() as session:
        outbox.release_channel(
            session,
            workspace_id=schedule.workspace_id,
            channel_id="C0FIN",
            now=live.clock(),
            posted_at=live.clock(),
        )
    live.clock.advance(seconds=0.5)
    assert sender.run() == 0  # a second after the event's post, not sooner
    live.clock.advance(seconds=1)
    assert sender.run() == 1
    assert len(posts(finance)) == 1


def test_every_process_runs_the_digest_job_each_minute(live: Live) -> None:
    job = live.services.scheduler.get_job("digests")
    assert job is not None and job.func == live.services.digest_sender.run
    assert job.trigger.interval == dt.timedelta(minutes=1) and job.max_instances == 1


def test_the_chart_is_shared_just_below_its_digest(live: Live) -> None:
    finance = setup(live)
    live.clock.advance(hours=1)
    assert live.services.digest_sender.run() == 1
    live.slack.process_uploads()  # Slack shares the file once it has processed it
    digest, chart = finance.messages
    assert "metadata" in digest and chart["upload"] is True
    assert float(chart["ts"]) > float(digest["ts"])
    (shown,) = chart["files"]
    assert shown["mimetype"] == "image/png" and shown["alt_txt"]
    assert "chart_failed" not in audit_outcomes(live)


def test_a_chart_slack_refuses_is_audited_and_the_digest_stays_posted_once(live: Live) -> None:
    finance = setup(live)
    live.clock.advance(hours=1)
    live.slack.script("files.getUploadURLExternal", "file_uploads_disabled")
    assert live.services.digest_sender.run() == 1
    live.slack.process_uploads()
    assert len(finance.messages) == 1
    assert audit_outcomes(live)[-2:] == ["delivered", "chart_failed"]
    live.clock.advance(minutes=10)
    assert live.services.digest_sender.run() == 0 and len(finance.messages) == 1
