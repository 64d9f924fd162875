"""Slack's first check of the request URL: answered before the signing secret is set (only a
well-formed url_verification, only its challenge), signed once it is, and by Bolt once Slack runs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from slack_sdk.signature import SignatureVerifier

from slack_ui.url_check import MAX_CHECK_BYTES, url_check_challenge
from tests.support.fakes.slack import FakeSlack
from tests.support.live import FakeClock
from tests.support.pages import serve_app

CHALLENGE = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"  # Slack's documented example
SECRET = "signing-secret"
NOW = 1_800_000_000.0


def check_body(challenge: object = CHALLENGE, **extra: object) -> bytes:
    payload = {"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": challenge, "type": "url_verification"}
    payload.update(extra)
    return json.dumps(payload).encode()


def signed(body: bytes, *, secret: str = SECRET, at: float = NOW) -> dict[str, str]:
    timestamp = str(int(at))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    assert signature is not None
    return {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature,
    }


# -- pure ----------------------------------------------------------------------------------------


def test_without_a_signing_secret_a_well_formed_check_is_answered_with_its_challenge() -> None:
    assert url_check_challenge(check_body(), {}, signing_secret=None, now=NOW) == CHALLENGE


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        json.dumps({"type": "event_callback", "challenge": CHALLENGE}).encode(),
        json.dumps({"challenge": CHALLENGE}).encode(),
        check_body(challenge=42),
        check_body(challenge=""),
        check_body(challenge="<script>alert(1)</script>"),
        check_body(challenge="a" * 257),
        check_body(event={"type": "message"}),  # more than a check carries
        check_body() + b" " * MAX_CHECK_BYTES,
        b"command=%2Ffreshbooks&text=help",
    ],
)
def test_anything_else_is_not_answered(body: bytes) -> None:
    assert url_check_challenge(body, {}, signing_secret=None, now=NOW) is None


def test_with_a_signing_secret_the_check_must_be_signed_with_it() -> None:
    body = check_body()
    assert url_check_challenge(body, signed(body), signing_secret=SECRET, now=NOW) == CHALLENGE
    assert url_check_challenge(body, {}, signing_secret=SECRET, now=NOW) is None
    assert url_check_challenge(body, signed(body, secret="other"), signing_secret=SECRET, now=NOW) is None
    stale = signed(body, at=NOW - 600)  # Slack's window is five minutes
    assert url_check_challenge(body, stale, signing_secret=SECRET, now=NOW) is None
    garbled = {**signed(body), "X-Slack-Request-Timestamp": "yesterday"}
    assert url_check_challenge(body, garbled, signing_secret=SECRET, now=NOW) is None


# -- over HTTP, through the real app ----------------------------------------------------------------


def _post(url: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(
        f"{url}/slack/events",
        content=body,
        headers=headers or {"Content-Type": "application/json"},
        timeout=10,
    )


def test_a_new_app_passes_slacks_first_check_before_the_secret_is_copied(tmp_path: Path) -> None:
    with serve_app(tmp_path, PUBLIC_URL="https://fb.example.test") as served:
        answer = _post(served.url, check_body())
        command = _post(
            served.url,
            b"command=%2Ffreshbooks&text=help",
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
        event = _post(served.url, json.dumps({"type": "event_callback", "event": {}}).encode())
        hostile = _post(served.url, check_body(challenge="<img src=x onerror=alert(1)>"))

    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"challenge": CHALLENGE}
    # Nothing else is served without the secret.
    for response in (command, event, hostile):
        assert response.status_code == 503
        assert "not configured" in response.text
        assert CHALLENGE not in response.text and "onerror" not in response.text


def test_with_the_secret_but_no_credentials_yet_the_check_must_be_signed(tmp_path: Path) -> None:
    clock = FakeClock()  # the app's clock dates the request, as Slack's timestamp window needs
    with serve_app(tmp_path, clock=clock, SLACK_SIGNING_SECRET=SECRET) as served:
        body = check_body()
        now = clock().timestamp()
        good = _post(served.url, body, signed(body, at=now))
        unsigned = _post(served.url, body)
        forged = _post(served.url, body, signed(body, secret="not-ours", at=now))
        stale = _post(served.url, body, signed(body, at=now - 600))

    assert good.status_code == 200 and good.json() == {"challenge": CHALLENGE}
    assert [r.status_code for r in (unsigned, forged, stale)] == [503, 503, 503]


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def test_once_slack_is_configured_bolt_answers_the_signed_check_only(
    tmp_path: Path, fake_slack: FakeSlack
) -> None:
    env = {
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_API_URL": fake_slack.base_url,
    }
    with serve_app(tmp_path, **env) as served:
        body = check_body()
        good = _post(served.url, body, signed(body, at=time.time()))  # Bolt reads the wall clock
        unsigned = _post(served.url, body)

    assert good.status_code == 200 and CHALLENGE in good.text
    assert unsigned.status_code == 401
