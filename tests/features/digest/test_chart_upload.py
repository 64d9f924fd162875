"""The digest's chart from FreshBooks to Slack, over real HTTP against both fakes: listed, drawn,
uploaded in three steps, and in the digest's thread once Slack has finished sharing it."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable, Iterator
from typing import TypeVar
from zoneinfo import ZoneInfo

import pytest
from PIL import Image

from connector.features.digest.chart import alt_text, chart_for, chart_size
from connector.features.digest.chart_upload import share_chart
from connector.features.digest.fetch import fetch_inputs
from connector.features.digest.figures import DigestInputs, compute
from connector.features.digest.period import Cadence, period_just_ended
from connector.freshbooks.client import FreshBooksClient
from connector.slack.files import find_share
from connector.slack.slack_tokens import web_client
from tests.support.books import add_paid_bills, random_books
from tests.support.fakes.freshbooks import FakeFreshBooks
from tests.support.fakes.slack import Channel, FakeSlack
from tests.support.live import FakeClock

T = TypeVar("T")
ACCOUNT, FB_TOKEN, SLACK_TOKEN = "p7rQW5", "fb-access-token", "xoxb-test"
NEW_YORK = ZoneInfo("America/New_York")
# Monday Dec 7, 2026: last week is Mon Nov 30 - Sun Dec 6, across a month end.
NOW = dt.datetime(2026, 12, 7, 8, tzinfo=NEW_YORK)


class OneToken:
    def call(self, connection_id: int, fn: Callable[[str], T]) -> T:
        return fn(FB_TOKEN)

    def forget(self, connection_id: int) -> None:
        pass


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW.astimezone(dt.UTC))


@pytest.fixture
def slack(clock: FakeClock) -> Iterator[FakeSlack]:
    with FakeSlack(clock=lambda: clock().timestamp()) as server:
        server.add_channel(Channel("C1", name="finance"))
        yield server


def _inputs(books_seed: int | None) -> DigestInputs:
    period = period_just_ended(NOW, cadence=Cadence.WEEKLY, zone=NEW_YORK)
    with FakeFreshBooks() as freshbooks:
        freshbooks.valid_tokens.add(FB_TOKEN)
        if books_seed is not None:
            today = dt.date(2026, 12, 6)
            books = random_books(books_seed, today=today, invoices=120, payments=150, bills=20, expenses=90)
            add_paid_bills(
                books, books_seed, today=today, count=20, currencies=("USD", "EUR", "CAD"), days_back=10
            )
            books.load_into(freshbooks, ACCOUNT)
        client = FreshBooksClient(base_url=freshbooks.base_url, sleep=lambda _: None)
        try:
            return fetch_inputs(
                client=client, tokens=OneToken(), connection_id=1, account_id=ACCOUNT, period=period
            )
        finally:
            client.close()


def test_the_chart_lands_in_the_digests_thread_after_the_upload_answers(
    slack: FakeSlack, clock: FakeClock
) -> None:
    inputs = _inputs(21)
    period = period_just_ended(NOW, cadence=Cadence.WEEKLY, zone=NEW_YORK)
    digest = compute(inputs, period, NOW)
    client = web_client(SLACK_TOKEN, slack.base_url)
    parent = client.chat_postMessage(channel="C1", text="Cash-flow digest")["ts"]

    uploaded = share_chart(client, channel_id="C1", thread_ts=parent, digest=digest, inputs=inputs)

    assert uploaded is not None
    drawn = chart_for(digest, inputs)
    [(_, asked, _)] = slack.calls_to("files.getUploadURLExternal")
    assert asked["alt_txt"] == alt_text(drawn)
    png = slack.files[uploaded.file_id].data
    assert png is not None and Image.open(io.BytesIO(png)).size == chart_size(drawn)
    assert uploaded.title == drawn.title and "Nov 30 - Dec 6, 2026" in drawn.title
    assert find_share(client, uploaded) is None  # Slack is still sharing it
    clock.advance(seconds=2)
    share_ts = find_share(client, uploaded)
    assert share_ts is not None
    [shown] = [m for m in slack.channels["C1"].messages if m["ts"] == share_ts]
    assert shown["thread_ts"] == parent and shown["files"][0]["alt_txt"] == alt_text(drawn)


def test_nothing_to_draw_uploads_nothing(slack: FakeSlack) -> None:
    inputs = _inputs(None)
    period = period_just_ended(NOW, cadence=Cadence.WEEKLY, zone=NEW_YORK)
    client = web_client(SLACK_TOKEN, slack.base_url)
    digest = compute(inputs, period, NOW)
    assert share_chart(client, channel_id="C1", thread_ts=None, digest=digest, inputs=inputs) is None
    assert slack.calls == []
