"""Shared fixtures. Every storage-touching test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from cryptography.fernet import Fernet
from slack_sdk.signature import SignatureVerifier
from werkzeug.serving import make_server

from app import Services
from connector.domain.settings import Settings, load_settings
from connector.ops.logs import NOISY_LOGGERS, JsonFormatter
from connector.pipeline.ingest.signature import SIGNATURE_HEADER
from storage import connections, migrate
from storage.connections import NewConnection
from storage.crypto import Cipher
from storage.db import Database
from tests.support.fakes.freshbooks import FakeFreshBooks
from tests.support.fakes.slack import FakeSlack

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


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind: a fresh SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    if PG_UNAVAILABLE:
        pytest.skip(PG_UNAVAILABLE)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        base = PG_DSN.replace("postgresql://", "postgresql+psycopg://", 1)
        yield f"{base}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """A migrated database (through Alembic, as in production)."""
    database = Database(database_url, pool_size=5)
    migrate.upgrade(database.engine)
    yield database
    database.dispose()


@pytest.fixture
def encryption_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def cipher(encryption_key: str) -> Cipher:
    return Cipher([encryption_key])


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


# -- a live app over real HTTP, wired to a fake FreshBooks -----------------------------------------

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

    def slash(self, text: str, *, user_id: str = ADMIN, team_id: str = "T0001") -> httpx.Response:
        """A signed /freshbooks command, over real HTTP, as Slack sends it."""
        body = urllib.parse.urlencode(
            {
                "token": "unused",
                "team_id": team_id,
                "team_domain": "acme",
                "channel_id": "C0GENERAL",
                "user_id": user_id,
                "command": "/freshbooks",
                "text": text,
                "response_url": self.slack.response_url(),
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


# What no log line of the app may ever contain, whatever the test does (issue #7): the fixtures'
# tokens and secrets, and customer data from the sample objects. Per-test values (verifiers,
# webhook URL tokens, grants) are added from the `live` fixture when a test uses it.
NEVER_LOGGED = {
    "FreshBooks access token": FB_TOKEN,
    "FreshBooks refresh token": FB_REFRESH,
    "FreshBooks client secret": "fb-secret",
    "Slack bot token": SLACK_BOT_TOKEN,
    "Slack signing secret": SLACK_SIGNING_SECRET,
    "client name": "Gordon Shumway",
    "business name": "Acme Bookkeeping",
}
# The test harness's own servers (werkzeug request lines carry URL tokens; production runs
# gunicorn without an access log) and the fakes are not the app.
_NOT_THE_APP = ("werkzeug", "tests")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.split(".")[0] in _NOT_THE_APP:
            return
        try:
            self.lines.append(self.format(record))
        except Exception:
            return


@pytest.fixture(autouse=True)
def no_secret_in_any_log(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test in the suite doubles as a log scan: its scenario ran with known secrets."""
    # Taken now, so that it is torn down after this scan (it holds the per-test secrets).
    live: Live | None = request.getfixturevalue("live") if "live" in request.fixturenames else None
    collect = _Collect()
    root = logging.getLogger()
    # Production's levels (connector.ops.logs.configure_logging at LOG_LEVEL=INFO), restored afterwards.
    saved = {name: logging.getLogger(name).level for name in NOISY_LOGGERS}
    saved_root = root.level
    root.setLevel(min(saved_root or logging.WARNING, logging.INFO))
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    root.addHandler(collect)
    try:
        yield
    finally:
        root.removeHandler(collect)
        root.setLevel(saved_root)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
    secrets = dict(NEVER_LOGGED)
    if live is not None:
        for callback in list(live.fake.callbacks.values()):
            secrets[f"verifier of callback {callback.callback_id}"] = callback.verifier
            secrets[f"webhook URL of callback {callback.callback_id}"] = callback.uri.rsplit("/", 1)[1]
        for grant in list(live.fake.grants.values()):
            secrets["a FreshBooks access token"] = grant.access_token
            secrets["a FreshBooks refresh token"] = grant.refresh_token
    text = "\n".join(collect.lines)
    # (A test's deliberately tiny stand-in, like a verifier "v", would match any text: skip those.)
    leaked = sorted(name for name, value in secrets.items() if len(value or "") >= 8 and value in text)
    assert leaked == [], f"logged: {leaked}"


@pytest.fixture
def fake_freshbooks() -> Iterator[FakeFreshBooks]:
    with FakeFreshBooks() as fake:
        yield fake


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        fake.add_user(ADMIN, admin=True)
        fake.add_user(MEMBER)
        yield fake


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


@pytest.fixture
def live(
    db: Database,
    database_url: str,
    fake_freshbooks: FakeFreshBooks,
    fake_slack: FakeSlack,
    clock: FakeClock,
    tmp_path: Path,
    encryption_key: str,
) -> Iterator[Live]:
    with serve_live(
        database_url=database_url,
        encryption_key=encryption_key,
        fake_freshbooks=fake_freshbooks,
        slack=fake_slack,
        clock=clock,
        tmp_path=tmp_path,
        SLACK_BOT_TOKEN=SLACK_BOT_TOKEN,
    ) as running:
        yield running
