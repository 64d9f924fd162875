"""Run the main scenarios with production logging at DEBUG and known secrets: none may be logged."""

from __future__ import annotations

import io
import logging
import urllib.parse
from collections.abc import Iterator

import pytest

from connector.ops.logs import configure_logging
from tests.support.builders import invoice_json
from tests.support.connect import approve, connect_link, wait_for_dm
from tests.support.fakes.slack import Channel
from tests.support.live import FB_ACCOUNT, SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, Live, drain


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    configure_logging(level="DEBUG", json_lines=True, stream=stream)
    try:
        yield stream
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def test_no_secret_or_customer_data_reaches_the_logs(live: Live, captured: io.StringIO) -> None:
    live.slack.add_channel(Channel("C0ACC", name="accounting"))
    approve(live, connect_link(live))
    wait_for_dm(live)
    assert live.slash("route invoice <#C0ACC|accounting>").json()["text"].startswith("Rule saved")
    live.fake.add_object(FB_ACCOUNT, "invoices", invoice_json("7512.34", "2026-11-24 09:00:00"))
    delivered = live.fake.deliver(FB_ACCOUNT, "invoice.create", "987654")
    assert delivered.status_code == 200
    forged = urllib.parse.urlencode(
        {"name": "invoice.create", "object_id": "987654", "account_id": FB_ACCOUNT}
    )
    callback = next(iter(live.fake.callbacks.values()))
    assert live.post_webhook(callback.uri.rsplit("/", 1)[1], forged, signature="Zm9yZ2Vk").status_code == 401
    drain(live)
    assert live.slack.channels["C0ACC"].messages  # the scenario really ran

    logs = captured.getvalue()
    assert "webhook stored" in logs and "invalid signature" in logs  # and really logged
    grant = next(iter(live.fake.grants.values()))
    secrets = {
        "FreshBooks access token": grant.access_token,
        "FreshBooks refresh token": grant.refresh_token,
        "Slack bot token": SLACK_BOT_TOKEN,
        "Slack signing secret": SLACK_SIGNING_SECRET,
        "FreshBooks client secret": "fb-secret",
        "webhook URL token": callback.uri.rsplit("/", 1)[1],
        "client name": "Gordon Shumway",
        "business name": "Acme Bookkeeping",
        "invoice number": "ACM0042",
        "amount": "7,512.34",
        "raw body": forged,
        "forged signature": "Zm9yZ2Vk",
        **{f"verifier {c.callback_id}": c.verifier for c in live.fake.callbacks.values()},
    }
    leaked = {
        name: logs[logs.index(value) - 300 : logs.index(value)]
        for name, value in secrets.items()
        if value in logs
    }
    assert leaked == {}
