"""The Slack side end to end: signed HTTP requests into the Flask app, Bolt talking to a fake Slack."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from flask.testing import FlaskClient
from slack_sdk.signature import SignatureVerifier
from werkzeug.test import TestResponse

import app as app_module
from slack_ui.commands import HELP_TEXT
from storage import migrate
from storage.db import Database
from tests.support.fakes.slack import FakeSlack
from tests.support.live import make_settings

SIGNING_SECRET = "s3cret"
BOT_TOKEN = "xoxb-test"


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def _client(tmp_path: Path, **env: str) -> Iterator[FlaskClient]:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    db = Database(url)
    migrate.upgrade(db.engine)
    db.dispose()
    flask_app = app_module.create_app(
        make_settings(tmp_path, DATABASE_URL=url, **env), start_background=False
    )
    yield flask_app.test_client()
    services = flask_app.extensions["fbslack"]
    services.freshbooks.close()
    services.db.dispose()


@pytest.fixture
def client(tmp_path: Path, fake_slack: FakeSlack) -> Iterator[FlaskClient]:
    yield from _client(
        tmp_path,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_API_URL=fake_slack.base_url,
    )


@pytest.fixture
def unconfigured_client(tmp_path: Path) -> Iterator[FlaskClient]:
    yield from _client(tmp_path)


def command_body(text: str) -> str:
    return urlencode(
        {
            "token": "x",
            "team_id": "T0001",
            "user_id": "U1",
            "command": "/freshbooks",
            "text": text,
            "response_url": "http://127.0.0.1:1/resp",
            "trigger_id": "1.2.3",
        }
    )


def post_signed(
    client: FlaskClient, body: str, *, secret: str = SIGNING_SECRET, timestamp: int | None = None
) -> TestResponse:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    return client.post(
        "/slack/events",
        data=body,
        content_type="application/x-www-form-urlencoded",
        headers={"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature},
    )


def test_help_answers_ephemerally(client: FlaskClient, fake_slack: FakeSlack) -> None:
    response = post_signed(client, command_body("help"))

    assert response.status_code == 200
    assert response.get_json() == {"response_type": "ephemeral", "text": HELP_TEXT}


def test_first_request_calls_auth_test_on_the_configured_api_url(
    client: FlaskClient, fake_slack: FakeSlack
) -> None:
    post_signed(client, command_body("help"))

    # Bolt defers auth.test to the first request (token_verification_enabled=False); it reaching
    # the fake proves SLACK_API_URL is honoured, the bearer header proves the bot token is used.
    [(_, _, headers)] = fake_slack.wait_for_calls("auth.test", 1)
    assert headers["authorization"] == f"Bearer {BOT_TOKEN}"
    # The result is cached: a second command does not call auth.test again.
    post_signed(client, command_body("help"))
    assert len(fake_slack.calls_to("auth.test")) == 1


@pytest.mark.parametrize("text", ["", "   ", "HELP", "help me please"])
def test_empty_or_help_text_shows_help(client: FlaskClient, text: str) -> None:
    response = post_signed(client, command_body(text))

    assert response.status_code == 200
    assert response.get_json() == {"response_type": "ephemeral", "text": HELP_TEXT}


def test_unknown_subcommand_is_named_and_usage_shown(client: FlaskClient) -> None:
    response = post_signed(client, command_body("frobnicate everything"))

    assert response.status_code == 200
    payload = response.get_json()
    assert payload["response_type"] == "ephemeral"
    assert "`frobnicate` is not a /freshbooks command" in payload["text"]
    assert HELP_TEXT in payload["text"]


def test_bad_signature_is_refused(client: FlaskClient, fake_slack: FakeSlack) -> None:
    response = post_signed(client, command_body("help"), secret="not-the-secret")

    assert response.status_code == 401
    # Refused before authorization: nothing reached Slack.
    assert fake_slack.calls == []


def test_stale_timestamp_is_refused(client: FlaskClient) -> None:
    # Slack's replay window is five minutes; a correctly signed but old request is still refused.
    response = post_signed(client, command_body("help"), timestamp=int(time.time()) - 600)

    assert response.status_code == 401


def test_revoked_bot_token_gives_the_user_an_answer(client: FlaskClient, fake_slack: FakeSlack) -> None:
    fake_slack.valid_tokens.clear()

    response = post_signed(client, command_body("help"))

    # Bolt answers with its user-facing authorization error instead of failing the request.
    assert response.status_code == 200
    assert response.get_data(as_text=True)
    assert HELP_TEXT not in response.get_data(as_text=True)
    assert fake_slack.calls_to("auth.test")


def test_unconfigured_slack_answers_503(unconfigured_client: FlaskClient) -> None:
    response = unconfigured_client.post(
        "/slack/events", data=command_body("help"), content_type="application/x-www-form-urlencoded"
    )

    assert response.status_code == 503
    assert "Slack is not configured" in response.get_data(as_text=True)
