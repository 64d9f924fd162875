"""The live app over real HTTP (Live, serve_live), its settings, clock and signed Slack requests."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import os
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
from prometheus_client import REGISTRY
from slack_sdk.signature import SignatureVerifier
from werkzeug.serving import make_server

from app import Services
from connector.domain.settings import Settings, load_settings
from connector.pipeline.ingest.signature import SIGNATURE_HEADER
from storage import connections
from storage.connections import NewConnection
from storage.crypto import Cipher
from storage.db import Database
from tests.support.fakes.freshbooks import FakeFreshBooks
from tests.support.fakes.slack import FakeSlack

# Each slash command gets a response_url of its own, so a handed-over answer is found by name.
_RESPONSE_NAMES = itertools.count(1)

PG_DSN = os.environ.get("TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_reachable() -> str | None:
    try:
        with psycopg.connect(PG_DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL at {PG_DSN} is not reachable ({type(exc).__name__}); skipping the PostgreSQL leg"
    return None


PG_UNAVAILABLE = _pg_reachable()


def signed_slack_post(
    base_url: str,
    body: str,
    *,
    content_type: str = "application/x-www-form-urlencoded",
    secret: str | None = None,
    timeout: float = 10,
) -> httpx.Response:
    """POST to /slack/events signed as Slack signs (v0 HMAC of timestamp and body), over real HTTP."""
    timestamp = str(int(time.time()))
    verifier = SignatureVerifier(secret or SLACK_SIGNING_SECRET)
    signature = verifier.generate_signature(timestamp=timestamp, body=body)
    assert signature is not None
    return httpx.post(
        f"{base_url}/slack/events",
        content=body,
        headers={
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": signature,
        },
        timeout=timeout,
    )


# Where the injected clock starts. `.ci/run` runs the date-sensitive tests a second time from a
# leap day just before midnight in FreshBooks' zone (and so a month end), e.g.
# FBSLACK_TEST_CLOCK_START="2028-02-29T23:59 America/New_York"; a test must pass from any start.
CLOCK_START_VARIABLE = "FBSLACK_TEST_CLOCK_START"


DEFAULT_CLOCK_START = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)


def clock_start() -> dt.datetime:
    """The start of every test's clock: ISO date-time, then optionally an IANA zone after a space."""
    raw = os.environ.get(CLOCK_START_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_CLOCK_START
    moment, _, zone = raw.partition(" ")
    start = dt.datetime.fromisoformat(moment)
    if zone:
        start = start.replace(tzinfo=ZoneInfo(zone))
    if start.tzinfo is None:
        raise ValueError(f"{CLOCK_START_VARIABLE} needs an offset or a zone: {raw!r}")
    return start.astimezone(dt.UTC)


class FakeClock:
    """An injected clock: tests move time forward instead of sleeping."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self.now = start or clock_start()

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += dt.timedelta(**kwargs)


def add_connection(db: Database, cipher: Cipher, account_id: str, *, disconnected: bool = False) -> int:
    """A FreshBooks connection of workspace T1 (live, or disconnected), for storage-level tests."""
    with db.session() as session:
        workspace = connections.ensure_workspace(session, team_id="T1", now=clock_start())
        connection = connections.create_connection(
            session,
            cipher,
            workspace_id=workspace.id,
            account_id=account_id,
            business_id=1,
            business_name="Acme",
            access_token="a",
            refresh_token="r",
            token_expires_at=None,
            now=clock_start(),
        ).connection
        if disconnected:
            connections.mark_disconnected(session, connection_id=connection.id, now=clock_start())
        return connection.id


def make_settings(tmp_path: Path, **env: str) -> Settings:
    base = {"DATA_DIR": str(tmp_path / "data")}
    base.update(env)
    return load_settings(base)


FB_ACCOUNT = "p7rQW5"


FB_TOKEN = "fb-access-token"


FB_REFRESH = "fb-refresh-token"


class _Delegate:
    """A WSGI app that forwards to the real one once it exists (its PUBLIC_URL needs the port first)."""

    def __init__(self) -> None:
        self.app: Any = None

    def __call__(self, environ: Any, start_response: Any) -> Any:
        return self.app(environ, start_response)


SLACK_SIGNING_SECRET = "slack-signing-secret"


SLACK_BOT_TOKEN = "xoxb-test"


ADMIN = "UADMIN"


MEMBER = "UMEMBER"


@dataclass
class Live:
    url: str
    settings: Settings
    services: Services
    fake: FakeFreshBooks
    slack: FakeSlack
    clock: FakeClock

    def slash(
        self, text: str, *, user_id: str = ADMIN, team_id: str = "T0001", follow: bool = True
    ) -> httpx.Response:
        """A signed /freshbooks command, over real HTTP, as Slack sends it; its answer.

        On a busy machine a command may acknowledge with a short "working on it" line and send its
        answer to the response_url (slack_ui.answer): with `follow`, that answer is returned as if it
        had been the acknowledgement (and taken out of `slack.responses`), so tests read one answer
        whatever the machine's load. Tests of the hand-over itself pass follow=False."""
        handed_over = REGISTRY.get_sample_value("fbslack_slash_commands_handed_over_total") or 0.0
        name = f"c{next(_RESPONSE_NAMES)}"
        answer = self._post_slash(
            text, user_id=user_id, team_id=team_id, response_url=self.slack.response_url(name)
        )
        if (
            not follow
            or (REGISTRY.get_sample_value("fbslack_slash_commands_handed_over_total") or 0.0) == handed_over
        ):
            return answer
        follow_up = self.slack.take_response(name)
        return httpx.Response(200, json=follow_up, request=answer.request)

    def _post_slash(self, text: str, *, user_id: str, team_id: str, response_url: str) -> httpx.Response:
        body = urllib.parse.urlencode(
            {
                "token": "unused",
                "team_id": team_id,
                "team_domain": "acme",
                "channel_id": "C0GENERAL",
                "user_id": user_id,
                "command": "/freshbooks",
                "text": text,
                "response_url": response_url,
                "trigger_id": "13345224609.738474920.8088930838d88f008e0",
            }
        )
        return signed_slack_post(self.url, body)

    def connect(self, *, team_id: str = "T0001", account_id: str = FB_ACCOUNT) -> NewConnection:
        self.fake.grant(FB_TOKEN, FB_REFRESH)
        with self.services.db.session() as session:
            workspace = connections.ensure_workspace(session, team_id=team_id, now=self.clock())
            return connections.create_connection(
                session,
                self.services.cipher,
                workspace_id=workspace.id,
                account_id=account_id,
                business_id=14393743,
                business_name="Acme Bookkeeping",
                access_token=FB_TOKEN,
                refresh_token=FB_REFRESH,
                token_expires_at=self.clock() + dt.timedelta(hours=12),
                now=self.clock(),
            )

    def connect_and_register(self, *events: str) -> NewConnection:
        new = self.connect()
        assert self.services.registrar is not None
        for event in events:
            self.services.registrar.register(new.connection.id, event)
        return new

    def post_webhook(
        self, token: str, body: bytes | str, *, signature: str | None = None, content_type: str | None = None
    ) -> httpx.Response:
        headers = {"Content-Type": content_type or "application/x-www-form-urlencoded"}
        if signature is not None:
            headers[SIGNATURE_HEADER] = signature
        return httpx.post(f"{self.url}/freshbooks/webhooks/{token}", content=body, headers=headers)


@contextlib.contextmanager
def serve_live(
    *,
    database_url: str,
    encryption_key: str,
    fake_freshbooks: FakeFreshBooks,
    slack: FakeSlack,
    clock: FakeClock,
    tmp_path: Path,
    **slack_env: str,
) -> Iterator[Live]:
    """The real app (background loops off: tests drive them) on a real HTTP server, wired to the
    fakes. `slack_env` picks the Slack mode (SLACK_BOT_TOKEN, or SLACK_CLIENT_ID/SECRET...)."""
    from app import create_app

    fake_freshbooks.now = lambda: clock().timestamp()
    delegate = _Delegate()
    server = make_server("127.0.0.1", 0, delegate, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    settings = make_settings(
        tmp_path,
        DATABASE_URL=database_url,
        ENCRYPTION_KEYS=encryption_key,
        PUBLIC_URL=url,
        FRESHBOOKS_API_URL=fake_freshbooks.base_url,
        FRESHBOOKS_AUTH_URL=fake_freshbooks.base_url,
        FRESHBOOKS_CLIENT_ID="fb-client",
        FRESHBOOKS_CLIENT_SECRET="fb-secret",
        SLACK_SIGNING_SECRET=SLACK_SIGNING_SECRET,
        SLACK_API_URL=slack.base_url,
        **slack_env,
    )
    flask_app = create_app(settings, clock=clock, start_background=False)
    delegate.app = flask_app
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    services: Services = flask_app.extensions["fbslack"]
    try:
        yield Live(
            url=url, settings=settings, services=services, fake=fake_freshbooks, slack=slack, clock=clock
        )
    finally:
        server.shutdown()
        server.server_close()
        services.stop()


def drain(live: Live, rounds: int = 30) -> None:
    """Run the background stages until nothing is left, moving the clock past each channel's pacing."""
    for _ in range(rounds):
        work = live.services.inbox_worker.run_once() + live.services.router.run_once()
        work += live.services.engine.run_once()
        live.clock.advance(seconds=1.1)
        if not work:
            with live.services.db.read() as session:
                from storage import outbox

                if not outbox.has_due(session, now=live.clock()):
                    return
