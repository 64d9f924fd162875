"""The `/` setup page: each step's state in HTML (pure), what the database says (both databases),
and the page served by the real app over HTTP, which once set up tells a stranger nothing."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import yaml
from cryptography.fernet import Fernet
from slack_sdk.oauth.installation_store import Installation

from connector.domain.events import SUPPORTED_EVENTS
from connector.ops.setup_page import (
    DEMO_COMMAND,
    MANIFEST_PATH,
    PAGE_HEADERS,
    SLACK_CREATE_APP_URL,
    Connections,
    SetupState,
    StepStatus,
    gather_setup_state,
    load_manifest_template,
    render_setup_page,
    setup_steps,
    summarize_connections,
)
from storage import connections
from storage.crypto import Cipher
from storage.db import Database
from storage.installations import EncryptedInstallationStore
from storage.models import ConnectionStatus
from tests.support.fakes.slack import FakeSlack
from tests.support.live import FakeClock, add_connection, clock_start, make_settings
from tests.support.pages import Page, parse_page, serve_app

HOST = "https://fb.example.test"
STEPS = (
    "database",
    "encryption",
    "public-url",
    "slack-app",
    "slack-mode",
    "workspace",
    "freshbooks-app",
    "freshbooks-connection",
)
# Values that must never reach the page, whatever the state.
SIGNING_SECRET = "signing-secret-never-shown"
CLIENT_SECRET = "slack-client-secret-never-shown"
BOT_TOKEN = "xoxb-bot-token-never-shown"
FB_SECRET = "freshbooks-secret-never-shown"
TEMPLATE = load_manifest_template()

FRESH = SetupState(
    database_dialect="sqlite",
    database_ok=True,
    encryption_keys_set=False,
    public_url=None,
    signing_secret_set=False,
    bot_token_set=False,
    client_pair_set=False,
    workspace_installed=None,
    freshbooks_credentials_set=False,
    connections=Connections.NONE,
    manifest_template=TEMPLATE,
)
# Everything done in multi-workspace mode.
COMPLETE = dataclasses.replace(
    FRESH,
    encryption_keys_set=True,
    public_url=HOST,
    signing_secret_set=True,
    client_pair_set=True,
    workspace_installed=True,
    freshbooks_credentials_set=True,
    connections=Connections.VERIFIED,
)


def statuses(page: Page) -> dict[str, str]:
    return {key: page.by_id[f"step-{key}"].attrs["data-status"] for key in STEPS}


def next_of(page: Page) -> str:
    (current,) = [e.attrs["id"] for e in page.elements if "next" in e.attrs.get("class", "").split()]
    return current.removeprefix("step-")


def copy_values(page: Page) -> dict[str, str]:
    """What each copy button copies: the text of the element it names."""
    return {b.attrs["data-copy"]: page.text_of(b.attrs["data-copy"]) for b in page.with_attr("data-copy")}


def manifest_of_link(href: str) -> dict[str, object]:
    parts = urlsplit(href)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}?{parts.query}".startswith(SLACK_CREATE_APP_URL)
    query = parse_qs(parts.query)
    assert query["new_app"] == ["1"]
    manifest = json.loads(query["manifest_json"][0])
    assert isinstance(manifest, dict)
    return manifest


def urls_in(manifest: object) -> list[str]:
    found: list[str] = []
    if isinstance(manifest, dict):
        for value in manifest.values():
            found += urls_in(value)
    elif isinstance(manifest, list):
        for value in manifest:
            found += urls_in(value)
    elif isinstance(manifest, str) and manifest.startswith("http"):
        found.append(manifest)
    return found


# -- pure: state in, HTML out ----------------------------------------------------------------------


def test_a_fresh_install_asks_for_the_public_url_first_and_offers_the_demo() -> None:
    page = parse_page(render_setup_page(FRESH))

    assert statuses(page) == {
        "database": "done",
        "encryption": "warn",
        "public-url": "todo",
        "slack-app": "todo",
        "slack-mode": "todo",
        "workspace": "todo",
        "freshbooks-app": "todo",
        "freshbooks-connection": "todo",
    }
    assert next_of(page) == "public-url"
    assert "PUBLIC_URL" in page.text_of("step-public-url")
    # Slack is not configured: the demo is offered, with its command to copy.
    assert "Try it with sample data" in page.text_of("try-it")
    assert copy_values(page) == {"demo-command": DEMO_COMMAND}


def test_each_step_shows_its_instructions_only_when_it_is_next() -> None:
    page = parse_page(render_setup_page(FRESH))
    # The later steps say what is missing, without their values (which need PUBLIC_URL anyway).
    assert "create-app" not in page.by_id
    assert "freshbooks-redirect-uri" not in page.by_id
    assert "Register a FreshBooks app" in page.text_of("step-freshbooks-app")


def test_an_http_public_url_is_not_enough() -> None:
    page = parse_page(render_setup_page(dataclasses.replace(FRESH, public_url="http://192.168.1.5:3000")))

    assert statuses(page)["public-url"] == "todo"
    assert next_of(page) == "public-url"
    assert "only call https" in page.text_of("step-public-url")


def test_with_an_https_url_the_next_step_is_the_slack_app_with_every_value_to_paste() -> None:
    page = parse_page(render_setup_page(dataclasses.replace(FRESH, public_url=HOST)))

    assert next_of(page) == "slack-app"
    values = copy_values(page)
    assert values["slack-request-url"] == f"{HOST}/slack/events"
    assert values["slack-redirect-url"] == f"{HOST}/slack/oauth_redirect"
    assert values["demo-command"] == DEMO_COMMAND

    # The manifest to paste is manifest.yml with this host in every URL...
    manifest_yaml = values["manifest"]
    assert TEMPLATE is not None
    assert yaml.safe_load(manifest_yaml) == yaml.safe_load(TEMPLATE.replace("https://example.com", HOST))
    assert "example.com" not in manifest_yaml
    # ...and the create-app link carries the same manifest, as JSON.
    manifest = manifest_of_link(page.by_id["create-app"].attrs["href"])
    assert manifest == yaml.safe_load(manifest_yaml)
    assert sorted(set(urls_in(manifest))) == [f"{HOST}/slack/events", f"{HOST}/slack/oauth_redirect"]
    # The page says what happens with Slack's first check of the request URL, and where Retry is.
    text = page.text_of("step-slack-app")
    assert "answers that one check" in text
    assert "Event Subscriptions" in text and "Retry" in text


def test_a_public_url_under_a_path_goes_into_every_url() -> None:
    url = "https://example.org/fbslack"
    page = parse_page(render_setup_page(dataclasses.replace(FRESH, public_url=url)))

    manifest = manifest_of_link(page.by_id["create-app"].attrs["href"])
    assert sorted(set(urls_in(manifest))) == [f"{url}/slack/events", f"{url}/slack/oauth_redirect"]


def test_without_manifest_yml_the_page_says_what_to_replace() -> None:
    state = dataclasses.replace(FRESH, public_url=HOST, manifest_template=None)
    page = parse_page(render_setup_page(state))

    assert "create-app" not in page.by_id and "manifest" not in page.by_id
    assert f"replaced by {HOST}" in page.text_of("step-slack-app")
    assert copy_values(page)["slack-request-url"] == f"{HOST}/slack/events"


def test_after_the_signing_secret_the_next_step_is_the_slack_credentials() -> None:
    page = parse_page(render_setup_page(dataclasses.replace(FRESH, public_url=HOST, signing_secret_set=True)))

    assert statuses(page)["slack-app"] == "done"
    assert next_of(page) == "slack-mode"
    text = page.text_of("step-slack-mode")
    assert "SLACK_CLIENT_ID" in text and "SLACK_BOT_TOKEN" in text
    assert "try-it" in page.by_id  # Slack still is not configured


def test_multi_workspace_mode_offers_add_to_slack_through_the_public_url() -> None:
    state = dataclasses.replace(
        FRESH, public_url=HOST, signing_secret_set=True, client_pair_set=True, workspace_installed=False
    )
    page = parse_page(render_setup_page(state))

    assert statuses(page)["slack-mode"] == "done"
    assert next_of(page) == "workspace"
    # Absolute: the install's state cookie must be set on the host Slack sends the installer back to.
    assert page.by_id["add-to-slack"].attrs["href"] == f"{HOST}/slack/install"
    assert copy_values(page) == {"install-url": f"{HOST}/slack/install"}
    assert "try-it" not in page.by_id  # Slack is configured: no demo

    installed = parse_page(render_setup_page(dataclasses.replace(state, workspace_installed=True)))
    assert statuses(installed)["workspace"] == "done"
    assert next_of(installed) == "freshbooks-app"
    assert copy_values(installed) == {"freshbooks-redirect-uri": f"{HOST}/freshbooks/oauth/callback"}


def test_single_workspace_mode_is_installed_by_its_token() -> None:
    state = dataclasses.replace(FRESH, public_url=HOST, signing_secret_set=True, bot_token_set=True)
    page = parse_page(render_setup_page(state))

    assert statuses(page)["workspace"] == "done"
    assert "add-to-slack" not in page.by_id
    assert next_of(page) == "freshbooks-app"


@pytest.mark.parametrize(
    ("linked", "status", "words"),
    [
        (Connections.NONE, "todo", "Connect a FreshBooks business"),
        (Connections.UNVERIFIED, "waiting", "has not verified every webhook"),
        (Connections.NEEDS_RECONNECT, "todo", "connect again"),
        (Connections.UNKNOWN, "unknown", "database does not answer"),
    ],
)
def test_the_last_step_follows_the_connections(linked: Connections, status: str, words: str) -> None:
    page = parse_page(render_setup_page(dataclasses.replace(COMPLETE, connections=linked)))

    assert statuses(page)["freshbooks-connection"] == status
    assert next_of(page) == "freshbooks-connection"
    assert words in page.text_of("step-freshbooks-connection")
    if status == "todo":
        assert copy_values(page) == {"connect-command": "/freshbooks connect"}


def test_an_unreachable_database_is_the_next_step() -> None:
    state = dataclasses.replace(
        COMPLETE, database_ok=False, workspace_installed=None, connections=Connections.UNKNOWN
    )
    page = parse_page(render_setup_page(state))

    assert next_of(page) == "database"
    assert statuses(page)["workspace"] == "unknown"


def test_once_complete_the_page_says_only_that_it_runs() -> None:
    markup = render_setup_page(COMPLETE)

    page = parse_page(markup)
    assert [e.tag for e in page.elements if e.tag in ("li", "pre", "button", "a", "script")] == []
    body = re.sub(r"<style>.*</style>", "", markup, flags=re.S)
    assert " ".join(re.sub(r"<[^>]+>", " ", body).split()) == (
        "FreshBooks for Slack FreshBooks for Slack Running and configured."
    )
    # The development key does not hold the page open (it is a warning, not a missing step).
    assert render_setup_page(dataclasses.replace(COMPLETE, encryption_keys_set=False)) == markup


def test_everything_shown_is_escaped() -> None:
    hostile = "https://h.example/<script>alert('x')</script>&amp"
    markup = render_setup_page(dataclasses.replace(FRESH, public_url=hostile, manifest_template="a: '<b>'\n"))

    assert "<script>alert" not in markup
    assert "&lt;script&gt;" in markup
    page = parse_page(markup)
    assert page.text_of("slack-request-url") == f"{hostile}/slack/events"  # exact once unescaped


def test_the_page_is_the_same_for_the_same_state() -> None:
    assert render_setup_page(COMPLETE) == render_setup_page(COMPLETE)
    state = dataclasses.replace(FRESH, public_url=HOST)
    assert render_setup_page(state) == render_setup_page(state)


def test_connections_in_one_state() -> None:
    every = frozenset(SUPPORTED_EVENTS)
    one_short = frozenset(list(SUPPORTED_EVENTS)[1:])
    active, broken = ConnectionStatus.ACTIVE, ConnectionStatus.NEEDS_RECONNECT
    assert summarize_connections([]) is Connections.NONE
    assert summarize_connections([(active, one_short)]) is Connections.UNVERIFIED
    assert summarize_connections([(broken, every)]) is Connections.NEEDS_RECONNECT
    assert summarize_connections([(broken, every), (active, frozenset())]) is Connections.UNVERIFIED
    assert summarize_connections([(active, one_short), (active, every)]) is Connections.VERIFIED


def test_the_steps_are_in_the_readme_order() -> None:
    assert tuple(step.key for step in setup_steps(FRESH)) == STEPS
    assert all(step.status is StepStatus.DONE for step in setup_steps(COMPLETE))


def test_manifest_yml_is_found() -> None:
    assert MANIFEST_PATH.name == "manifest.yml" and TEMPLATE is not None
    assert "https://example.com/slack/events" in TEMPLATE


# -- gathering: settings and the database (SQLite and PostgreSQL) ---------------------------------


def _verify_all(db: Database, cipher: Cipher, connection_id: int, events: list[str]) -> None:
    with db.session() as session:
        for number, event in enumerate(events, start=1):
            callback = connections.record_callback(
                session, connection_id=connection_id, callback_id=number, event=event, now=clock_start()
            )
            connections.adopt_verifier(
                session, callback_row_id=callback.id, verifier_enc=cipher.encrypt("v"), now=clock_start()
            )


def test_the_state_comes_from_the_settings_and_the_database(
    db: Database, cipher: Cipher, tmp_path: Path
) -> None:
    settings = make_settings(
        tmp_path,
        PUBLIC_URL=HOST,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_CLIENT_ID="123.456",
        SLACK_CLIENT_SECRET=CLIENT_SECRET,
    )
    state = gather_setup_state(settings, db, manifest_template=None)
    assert state == dataclasses.replace(
        FRESH,
        database_dialect=db.dialect,
        public_url=HOST,
        signing_secret_set=True,
        client_pair_set=True,
        workspace_installed=False,
        manifest_template=None,
    )

    store = EncryptedInstallationStore(client_id="123.456", engine=db.engine, cipher=cipher)
    store.save(Installation(app_id="A1", team_id="T1", user_id="U1", bot_token="xoxb-1", bot_id="B1"))
    other_app = EncryptedInstallationStore(client_id="999.999", engine=db.engine, cipher=cipher)
    other_app.save(Installation(app_id="A2", team_id="T2", user_id="U2", bot_token="xoxb-2", bot_id="B2"))
    assert gather_setup_state(settings, db, manifest_template=None).workspace_installed is True
    store.delete_installation(enterprise_id=None, team_id="T1")
    assert gather_setup_state(settings, db, manifest_template=None).workspace_installed is False

    gone = add_connection(db, cipher, "GONE", disconnected=True)
    _verify_all(db, cipher, gone, list(SUPPORTED_EVENTS))
    assert gather_setup_state(settings, db, manifest_template=None).connections is Connections.NONE
    live = add_connection(db, cipher, "LIVE")
    _verify_all(db, cipher, live, list(SUPPORTED_EVENTS)[:-1])
    assert gather_setup_state(settings, db, manifest_template=None).connections is Connections.UNVERIFIED
    _verify_all(db, cipher, live, list(SUPPORTED_EVENTS))
    assert gather_setup_state(settings, db, manifest_template=None).connections is Connections.VERIFIED


def test_an_unreachable_database_is_reported_not_raised(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, SLACK_CLIENT_ID="123.456", SLACK_CLIENT_SECRET=CLIENT_SECRET)
    nowhere = Database("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    try:
        state = gather_setup_state(settings, nowhere, manifest_template=None)
    finally:
        nowhere.dispose()
    assert (state.database_ok, state.workspace_installed, state.connections) == (
        False,
        None,
        Connections.UNKNOWN,
    )


# -- over HTTP, through the real app ----------------------------------------------------------------


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def _get(url: str) -> httpx.Response:
    response = httpx.get(f"{url}/", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    for name, value in PAGE_HEADERS.items():
        assert response.headers[name] == value
    return response


def test_a_fresh_server_serves_the_setup_page(tmp_path: Path) -> None:
    with serve_app(tmp_path) as served:
        page = parse_page(_get(served.url).text)

    assert next_of(page) == "public-url"
    assert statuses(page)["database"] == "done"
    assert copy_values(page) == {"demo-command": DEMO_COMMAND}


def test_the_served_page_has_the_values_for_creating_the_slack_app(tmp_path: Path) -> None:
    with serve_app(
        tmp_path, PUBLIC_URL=HOST, FRESHBOOKS_CLIENT_ID="fb", FRESHBOOKS_CLIENT_SECRET=FB_SECRET
    ) as served:
        markup = _get(served.url).text

    page = parse_page(markup)
    assert next_of(page) == "slack-app"
    assert statuses(page)["freshbooks-app"] == "done"
    assert copy_values(page)["slack-request-url"] == f"{HOST}/slack/events"
    assert set(urls_in(manifest_of_link(page.by_id["create-app"].attrs["href"]))) == {
        f"{HOST}/slack/events",
        f"{HOST}/slack/oauth_redirect",
    }
    assert FB_SECRET not in markup


def test_multi_workspace_setup_from_install_to_complete_over_http(
    tmp_path: Path, encryption_key: str
) -> None:
    env = {
        "PUBLIC_URL": HOST,
        "ENCRYPTION_KEYS": encryption_key,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_CLIENT_ID": "123.456",
        "SLACK_CLIENT_SECRET": CLIENT_SECRET,
        "FRESHBOOKS_CLIENT_ID": "fb",
        "FRESHBOOKS_CLIENT_SECRET": FB_SECRET,
    }
    with serve_app(tmp_path, **env) as served:
        db, cipher = served.services.db, served.services.cipher
        page = parse_page(_get(served.url).text)
        assert next_of(page) == "workspace"
        assert page.by_id["add-to-slack"].attrs["href"] == f"{HOST}/slack/install"

        store = EncryptedInstallationStore(client_id="123.456", engine=db.engine, cipher=cipher)
        store.save(
            Installation(
                app_id="A1", team_id="T1", team_name="Acme Widgets", user_id="U1", bot_token=BOT_TOKEN
            )
        )
        assert next_of(parse_page(_get(served.url).text)) == "freshbooks-connection"

        connection = add_connection(db, cipher, "ACCT42")  # business "Acme" of workspace T1
        with db.session() as session:
            webhook_token = connections.webhook_token(session, cipher, connection)
        _verify_all(db, cipher, connection, list(SUPPORTED_EVENTS))
        complete = _get(served.url).text

    assert "Running and configured" in complete
    # A stranger learns nothing: no names, ids, URLs, counts, secrets or tokens.
    for never in (
        "Acme",
        "T1",
        "ACCT42",
        HOST,
        "fb.example.test",
        "/slack/install",
        "/freshbooks/webhooks",
        webhook_token,
        SIGNING_SECRET,
        CLIENT_SECRET,
        BOT_TOKEN,
        FB_SECRET,
        encryption_key,
        "SLACK_",
        "FRESHBOOKS_",
    ):
        assert never not in complete, never
    text = re.sub(r"<[^>]+>", " ", complete[complete.index("<body>") :])
    assert not re.search(r"\d", text), text  # no count of anything


def test_single_workspace_setup_complete_over_http(
    tmp_path: Path, fake_slack: FakeSlack, encryption_key: str
) -> None:
    env = {
        "PUBLIC_URL": HOST,
        "ENCRYPTION_KEYS": encryption_key,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_API_URL": fake_slack.base_url,
        "FRESHBOOKS_CLIENT_ID": "fb",
        "FRESHBOOKS_CLIENT_SECRET": FB_SECRET,
    }
    with serve_app(tmp_path, **env) as served:
        db, cipher = served.services.db, served.services.cipher
        assert next_of(parse_page(_get(served.url).text)) == "freshbooks-connection"
        connection = add_connection(db, cipher, "ACCT42")
        _verify_all(db, cipher, connection, list(SUPPORTED_EVENTS)[:2])
        waiting = parse_page(_get(served.url).text)
        assert statuses(waiting)["freshbooks-connection"] == "waiting"
        _verify_all(db, cipher, connection, list(SUPPORTED_EVENTS))
        assert "Running and configured" in _get(served.url).text

        # The database going away reopens the page at that step, and still names nobody.
        working = served.services.db
        served.services.db = Database("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
        try:
            down = _get(served.url).text
        finally:
            served.services.db.dispose()
            served.services.db = working
    assert next_of(parse_page(down)) == "database"
    assert "ACCT42" not in down and "Acme" not in down


def test_no_secret_reaches_the_page_in_any_state(tmp_path: Path, encryption_key: str) -> None:
    key = Fernet.generate_key().decode()
    env = {
        "ENCRYPTION_KEYS": f"{encryption_key},{key}",
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_CLIENT_ID": "123.456",
        "SLACK_CLIENT_SECRET": CLIENT_SECRET,
        "FRESHBOOKS_CLIENT_ID": "fb",
        "FRESHBOOKS_CLIENT_SECRET": FB_SECRET,
        "METRICS_TOKEN": "metrics-token-never-shown",
    }
    with serve_app(tmp_path, clock=FakeClock(), **env) as served:
        markup = _get(served.url).text
    for never in (SIGNING_SECRET, CLIENT_SECRET, FB_SECRET, encryption_key, key, "metrics-token-never-shown"):
        assert never not in markup
    assert "Set PUBLIC_URL" in parse_page(markup).text_of("step-public-url")
