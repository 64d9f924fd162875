"""/metrics over real HTTP: every metric moves with real traffic, the queue gauges are read from the
database at scrape time, the optional bearer token, and `fbslack serve` merging the samples of its
web workers and its background process into one scrape. Both databases."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select
from werkzeug.serving import make_server

from connector.domain.settings import ConfigError, Settings
from connector.pipeline.ingest.signature import SIGNATURE_HEADER, compute_signature
from connector.telemetry import metrics
from storage import connections
from storage.crypto import Cipher
from storage.db import Database
from storage.models import Delivery, DeliveryState
from tests.support.builders import invoice_json
from tests.support.fakes.freshbooks import FakeFreshBooks
from tests.support.fakes.slack import RATE_LIMITED, TEAM_ID, Channel, FakeSlack
from tests.support.live import (
    ADMIN,
    FB_ACCOUNT,
    FB_REFRESH,
    FB_TOKEN,
    SLACK_BOT_TOKEN,
    SLACK_SIGNING_SECRET,
    FakeClock,
    Live,
    make_settings,
    signed_slack_post,
)

ACCOUNTING, ARCHIVE = "C0ACCOUNT", "C0ARCHIVE"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, keyed by (sample name, labels)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape(url: str, token: str | None = None) -> Samples:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(f"{url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return parse(response.text)


def delta(after: Samples, before: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


# -- the live app, one process ---------------------------------------------------------------------


def test_every_metric_moves_with_real_traffic(live: Live) -> None:
    live.slack.add_channel(Channel(ACCOUNTING, name="accounting"))
    live.slack.add_channel(Channel(ARCHIVE, name="old-projects"))
    new = live.connect_and_register("invoice.create")
    for channel in (ACCOUNTING, ARCHIVE):
        assert live.slash(f"route invoice <#{channel}>").json()["text"].startswith("Rule saved")
    live.fake.add_object(FB_ACCOUNT, "invoices", invoice_json("7500.00", "2026-11-24 09:00:00"))
    before = scrape(live.url)

    # Refused at the door: a bad signature, an unknown URL.
    assert live.post_webhook(new.webhook_token, "name=invoice.create", signature="AAAA").status_code == 401
    assert live.post_webhook("A" * 43, "name=invoice.create", signature="AAAA").status_code == 404
    # Accepted: one for the invoice FreshBooks has, one for an invoice it answers 404 for.
    assert live.fake.deliver(FB_ACCOUNT, "invoice.create", "987654").status_code == 200
    assert live.fake.deliver(FB_ACCOUNT, "invoice.create", "404404").status_code == 200
    accepted_at = live.clock()

    live.clock.advance(seconds=5)
    waiting = scrape(live.url)
    assert value(waiting, "fbslack_metrics_database_up") == 1
    assert value(waiting, "fbslack_queue_depth", queue="inbox") == 2
    assert value(waiting, "fbslack_queue_oldest_age_seconds", queue="inbox") == 5.0
    assert value(waiting, "fbslack_queue_depth", queue="outbox") == 0
    assert value(waiting, "fbslack_queue_oldest_age_seconds", queue="outbox") == 0
    assert delta(waiting, before, "fbslack_webhooks_rejected_total", reason="bad_signature") == 1
    assert delta(waiting, before, "fbslack_webhooks_rejected_total", reason="unknown_token") == 1
    assert delta(waiting, before, "fbslack_webhooks_received_total", event="invoice.create") == 2
    assert delta(waiting, before, "fbslack_webhook_ack_seconds_count") == 4

    # Enrich (one fetch answered 404) and route: two deliveries of the one event.
    assert live.services.inbox_worker.run_once() == 2
    assert live.services.router.run_once()
    live.clock.advance(seconds=2)
    routed = scrape(live.url)
    assert value(routed, "fbslack_queue_depth", queue="inbox") == 0
    assert value(routed, "fbslack_queue_depth", queue="outbox") == 2
    assert value(routed, "fbslack_queue_oldest_age_seconds", queue="outbox") == 2.0
    assert (
        delta(
            routed, before, "fbslack_events_total", kind="invoice", event="invoice.create", source="webhook"
        )
        == 1
    )
    assert delta(routed, before, "fbslack_inbox_processed_total", outcome="done") == 1
    assert delta(routed, before, "fbslack_inbox_processed_total", outcome="ignored") == 1
    assert delta(routed, before, "fbslack_freshbooks_api_errors_total", kind="not_found") == 1

    # Slack: the first post is rate limited, the archive channel is archived meanwhile (parked).
    live.slack.channels[ARCHIVE].is_archived = True
    live.slack.script("chat.postMessage", RATE_LIMITED)
    live.services.engine.run_once()
    live.clock.advance(seconds=1.1)
    live.services.engine.run_once()
    live.clock.advance(seconds=1.1)
    live.services.engine.run_once()
    after = scrape(live.url)
    assert delta(after, before, "fbslack_slack_429_total") == 1
    assert delta(after, before, "fbslack_deliveries_total", outcome="delivered") == 1
    assert delta(after, before, "fbslack_deliveries_total", outcome="needs_person") == 1
    assert value(after, "fbslack_queue_depth", queue="outbox") == 0
    assert value(after, "fbslack_deliveries_parked") == 1
    assert value(after, "fbslack_deliveries_in_doubt") == 0
    # Webhook-to-post is timed with the injected clock: exactly from acceptance to the post.
    with live.services.db.read() as session:
        (posted_at,) = session.scalars(select(Delivery.delivered_at).where(Delivery.slack_ts.is_not(None)))
    assert delta(after, before, "fbslack_webhook_to_post_seconds_count") == 1
    assert posted_at is not None
    expected = (posted_at - accepted_at).total_seconds()
    assert delta(after, before, "fbslack_webhook_to_post_seconds_sum") == pytest.approx(expected)


def test_queue_gauges() -> None:
    """Pure: outbox = pending plus in doubt, its age from the oldest of both; never a negative age."""
    now = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
    families = metrics.queue_families(
        inbox_backlog=(3, now + dt.timedelta(seconds=4)),  # another host's clock runs ahead
        deliveries={
            DeliveryState.PENDING: (2, now - dt.timedelta(seconds=30)),
            DeliveryState.IN_DOUBT: (1, now - dt.timedelta(seconds=90)),
            DeliveryState.PARKED: (7, now - dt.timedelta(days=2)),
        },
        now=now,
    )
    samples = {(s.name, tuple(s.labels.values())): s.value for f in families for s in f.samples}
    assert samples == {
        ("fbslack_queue_depth", ("inbox",)): 3,
        ("fbslack_queue_depth", ("outbox",)): 3,
        ("fbslack_queue_oldest_age_seconds", ("inbox",)): 0.0,
        ("fbslack_queue_oldest_age_seconds", ("outbox",)): 90.0,
        ("fbslack_deliveries_in_doubt", ()): 1,
        ("fbslack_deliveries_parked", ()): 7,
    }


def test_unreadable_database_leaves_out_the_gauges_not_the_counters(tmp_path: Path) -> None:
    empty = Database(f"sqlite:///{tmp_path / 'no-schema.db'}")  # no tables: every query fails
    try:
        samples = parse(metrics.exposition(metrics.QueueCollector(db=empty, clock=FakeClock())).decode())
    finally:
        empty.dispose()
    assert value(samples, "fbslack_metrics_database_up") == 0
    assert not any(name.startswith("fbslack_queue_") for name, _ in samples)
    assert ("fbslack_webhook_ack_seconds_count", frozenset()) in samples


# -- METRICS_TOKEN ----------------------------------------------------------------------------------

METRICS_TOKEN = "metrics-token-0123456789abcdef"


@pytest.fixture
def protected(db: Database, database_url: str, tmp_path: Path, encryption_key: str) -> Iterator[str]:
    """The app with METRICS_TOKEN set, served over real HTTP; yields its base URL."""
    from app import create_app

    settings = make_settings(
        tmp_path, DATABASE_URL=database_url, ENCRYPTION_KEYS=encryption_key, METRICS_TOKEN=METRICS_TOKEN
    )
    flask_app = create_app(settings, start_background=False)
    server = make_server("127.0.0.1", 0, flask_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        flask_app.extensions["fbslack"].stop()


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer wrong-token-0123456789",
        f"Basic {METRICS_TOKEN}",
        f"Bearer {METRICS_TOKEN}x",
    ],
)
def test_metrics_token_is_required_when_set(protected: str, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = httpx.get(f"{protected}/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "fbslack_" not in response.text


def test_metrics_token_opens_the_metrics(protected: str) -> None:
    samples = scrape(protected, token=METRICS_TOKEN)
    assert value(samples, "fbslack_metrics_database_up") == 1
    assert httpx.get(f"{protected}/healthz").status_code == 200  # only /metrics is protected


@pytest.mark.parametrize("token", ["short", "has a space in it somewhere"])
def test_a_weak_metrics_token_is_refused_without_echoing_it(token: str) -> None:
    from connector.domain.settings import load_settings

    with pytest.raises(ConfigError) as caught:
        load_settings({"METRICS_TOKEN": token})
    assert "METRICS_TOKEN" in str(caught.value)
    assert token not in str(caught.value)


def test_metrics_token_is_a_secret_setting() -> None:
    settings = Settings.model_validate({"metrics_token": METRICS_TOKEN})
    assert METRICS_TOKEN not in repr(settings)


# -- `fbslack serve`: several processes, one scrape ------------------------------------------------

VERIFIER = "metrics-test-verifier"
CALLBACK_ID = 4242
SERVE_DEADLINE_S = 60.0


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _poll(check: object, deadline: float, what: str, log: Path) -> None:
    """Call `check` until it returns true or the deadline passes (polling a running server)."""
    assert callable(check)
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)  # polling other processes, with a deadline
    raise AssertionError(f"{what} not reached in time; server log:\n{log.read_text()[-4000:]}")


def _seed_connection(db: Database, cipher: Cipher, now: dt.datetime) -> str:
    """A connected workspace with one verified invoice.create callback; returns its webhook token."""
    with db.session() as session:
        workspace = connections.ensure_workspace(session, team_id=TEAM_ID, now=now)
        new = connections.create_connection(
            session,
            cipher,
            workspace_id=workspace.id,
            account_id=FB_ACCOUNT,
            business_id=14393743,
            business_name="Acme Bookkeeping",
            access_token=FB_TOKEN,
            refresh_token=FB_REFRESH,
            token_expires_at=now + dt.timedelta(hours=12),
            now=now,
        )
        callback = connections.record_callback(
            session, connection_id=new.connection.id, callback_id=CALLBACK_ID, event="invoice.create", now=now
        )
        connections.adopt_verifier(
            session, callback_row_id=callback.id, verifier_enc=cipher.encrypt(VERIFIER), now=now
        )
    return new.webhook_token


def _slash(url: str, text: str) -> httpx.Response:
    body = urllib.parse.urlencode(
        {
            "team_id": TEAM_ID,
            "channel_id": ACCOUNTING,
            "user_id": ADMIN,
            "command": "/freshbooks",
            "text": text,
        }
    )
    return signed_slack_post(url, body)


def test_serve_merges_the_metrics_of_every_process(
    db: Database,
    database_url: str,
    cipher: Cipher,
    encryption_key: str,
    fake_freshbooks: FakeFreshBooks,
    fake_slack: FakeSlack,
    tmp_path: Path,
) -> None:
    """Two gunicorn web workers take the webhooks, the background process posts them: one scrape
    shows both sides' counters, and the run's metrics directory is gone after a clean stop."""
    fake_freshbooks.grant(FB_TOKEN, FB_REFRESH)
    fake_slack.add_channel(Channel(ACCOUNTING, name="accounting"))
    ids = [str(1000 + i) for i in range(3)]  # one channel: Slack's pace of 1 post/s sets the time
    for object_id in ids:
        fake_freshbooks.add_object(
            FB_ACCOUNT, "invoices", {**invoice_json("100.00", "2026-11-24 09:00:00"), "id": int(object_id)}
        )
    token = _seed_connection(db, cipher, dt.datetime.now(dt.UTC))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    known = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in known and k != metrics.MULTIPROC_ENV}
    env.update(
        DATABASE_URL=database_url,
        ENCRYPTION_KEYS=encryption_key,
        DATA_DIR=str(tmp_path / "data"),
        HOST="127.0.0.1",
        PORT=str(port),
        PUBLIC_URL=url,
        WEB_WORKERS="2",
        WEB_THREADS="2",
        LOG_LEVEL="WARNING",
        FRESHBOOKS_API_URL=fake_freshbooks.base_url,
        FRESHBOOKS_AUTH_URL=fake_freshbooks.base_url,
        FRESHBOOKS_CLIENT_ID="fb-client",
        FRESHBOOKS_CLIENT_SECRET="fb-secret",
        SLACK_SIGNING_SECRET=SLACK_SIGNING_SECRET,
        SLACK_BOT_TOKEN=SLACK_BOT_TOKEN,
        SLACK_API_URL=fake_slack.base_url,
        TMPDIR=str(tmp_path),  # where the run's metrics directory (and wake socket) go
        PYTHONUNBUFFERED="1",
    )
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "connector.ops.cli", "serve"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + SERVE_DEADLINE_S

        def healthy() -> bool:
            assert server.poll() is None, f"fbslack serve exited early:\n{log_path.read_text()}"
            try:
                return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        _poll(healthy, deadline, "/healthz", log_path)
        (metrics_dir,) = tmp_path.glob("fbslack-metrics-*")
        assert _slash(url, f"route invoice <#{ACCOUNTING}>").json()["text"].startswith("Rule saved")
        before = scrape(url)
        for object_id in ids:
            fields = fake_freshbooks.webhook_fields(FB_ACCOUNT, "invoice.create", object_id)
            response = httpx.post(
                f"{url}/freshbooks/webhooks/{token}",
                content=urllib.parse.urlencode(fields),
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    SIGNATURE_HEADER: compute_signature(fields, VERIFIER),
                    "Connection": "close",  # each on a new connection: either web worker may take it
                },
                timeout=10,
            )
            assert response.status_code == 200, response.text

        seen: Samples = {}

        def all_posted() -> bool:
            nonlocal seen
            seen = scrape(url)
            return delta(seen, before, "fbslack_deliveries_total", outcome="delivered") >= len(ids)

        _poll(all_posted, deadline, "every delivery counted", log_path)
        n = len(ids)
        # Counted in the web workers:
        assert delta(seen, before, "fbslack_webhooks_received_total", event="invoice.create") == n
        assert delta(seen, before, "fbslack_webhook_ack_seconds_count") == n
        # Counted in the background process:
        assert delta(seen, before, "fbslack_inbox_processed_total", outcome="done") == n
        assert (
            delta(
                seen, before, "fbslack_events_total", kind="invoice", event="invoice.create", source="webhook"
            )
            == n
        )
        assert delta(seen, before, "fbslack_deliveries_total", outcome="delivered") == n
        assert delta(seen, before, "fbslack_webhook_to_post_seconds_count") == n
        # Read from the database by whichever worker answered:
        assert value(seen, "fbslack_queue_depth", queue="inbox") == 0
        assert value(seen, "fbslack_metrics_database_up") == 1
        # The counts are the same whichever web worker answers the scrape.
        for _ in range(4):
            again = scrape(url)
            assert delta(again, before, "fbslack_deliveries_total", outcome="delivered") == n
        assert list(metrics_dir.glob("*.db"))
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)
    output = log_path.read_text()
    assert server.returncode == 0, output
    assert "Traceback" not in output
    assert list(tmp_path.glob("fbslack-metrics-*")) == []  # a fresh directory per run, removed at exit
