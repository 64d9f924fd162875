"""Shared fixtures, and only fixtures (helpers live in tests/support). Every storage-touching test runs
on SQLite and on PostgreSQL."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest
from cryptography.fernet import Fernet

from connector.ops.cli import ENV_FILE_VARIABLE
from connector.ops.logs import NOISY_LOGGERS
from storage import migrate
from storage.crypto import Cipher
from storage.db import Database
from storage.models import FreshBooksConnection
from tests.support.browser import headless_chrome
from tests.support.desk import ACCOUNTING, SALES, Desk
from tests.support.fakes.freshbooks import FakeFreshBooks
from tests.support.fakes.slack import (
    Channel,
    FakeSlack,
)
from tests.support.live import (
    ADMIN,
    MEMBER,
    PG_DSN,
    PG_UNAVAILABLE,
    SLACK_BOT_TOKEN,
    FakeClock,
    Live,
    serve_live,
)
from tests.support.secret_logs import NEVER_LOGGED, CollectRecords

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver


@pytest.fixture(autouse=True, scope="session")
def no_env_file_in_commands() -> Iterator[None]:
    """`fbslack` reads .env from its working folder, often this clone's root: the commands tests
    start (inheriting this environment) read none, so a developer's .env cannot change them."""
    saved = os.environ.get(ENV_FILE_VARIABLE)
    os.environ[ENV_FILE_VARIABLE] = ""
    yield
    if saved is None:
        del os.environ[ENV_FILE_VARIABLE]
    else:
        os.environ[ENV_FILE_VARIABLE] = saved


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


# -- a live app over real HTTP, wired to a fake FreshBooks -----------------------------------------


@pytest.fixture(autouse=True)
def no_secret_in_any_log(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test in the suite doubles as a log scan: its scenario ran with known secrets."""
    # Taken now, so that it is torn down after this scan (it holds the per-test secrets).
    live: Live | None = request.getfixturevalue("live") if "live" in request.fixturenames else None
    collect = CollectRecords()
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


@pytest.fixture
def desk(live: Live) -> Desk:
    live.slack.clock = lambda: live.clock().timestamp()  # Slack's ts follow the test's clock
    live.slack.add_channel(Channel(ACCOUNTING, name="accounting"))
    live.slack.add_channel(Channel(SALES, name="sales"))
    new = live.connect_and_register("invoice.create")
    with live.services.db.session() as session:
        session.get_one(FreshBooksConnection, new.connection.id).connected_by_user_id = ADMIN
    return Desk(live=live, connection_id=new.connection.id, workspace_id=new.connection.workspace_id)


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    """A headless chromium (tests/support/browser.py); the test is skipped, saying why, without one."""
    with headless_chrome() as driver:
        yield driver
