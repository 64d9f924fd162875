"""Connecting FreshBooks as a user does: the /freshbooks connect link, the OAuth approval, the DMs."""

from __future__ import annotations

import html
import re

import httpx

from tests.support.live import ADMIN, Live


def connect_link(live: Live, user_id: str = ADMIN) -> str:
    response = live.slash("connect", user_id=user_id)
    assert response.status_code == 200
    payload = response.json()
    assert payload["response_type"] == "ephemeral"
    button = payload["blocks"][0]["accessory"]
    return str(button["url"])


def form_fields(page: str) -> dict[str, str]:
    """The hidden fields of the return page's confirmation form."""
    return {name: html.unescape(value) for name, value in re.findall(r"name='(\w+)' value='([^']*)'", page)}


def confirm(
    browser: httpx.Client, live: Live, page: httpx.Response, action: str = "connect"
) -> httpx.Response:
    assert page.status_code == 200, page.text
    assert "Connect FreshBooks to Slack?" in page.text
    return browser.post(
        f"{live.url}/freshbooks/oauth/confirm", data={**form_fields(page.text), "action": action}
    )


def approve(live: Live, link: str) -> httpx.Response:
    """The user's browser: FreshBooks' authorize page redirects back to our callback, which asks
    which Slack workspace the books join; the person presses Connect."""
    with httpx.Client() as browser:
        redirect = browser.get(link)
        assert redirect.status_code == 302
        return confirm(browser, live, browser.get(redirect.headers["location"]))


def dm_texts(live: Live, user_id: str = ADMIN) -> list[str]:
    return [m["text"] for m in live.slack.dms(user_id)]


def wait_for_dm(live: Live, n: int = 1) -> list[str]:
    live.slack.wait_for_calls("chat.postMessage", n, timeout=30)
    return dm_texts(live)
