"""Connecting FreshBooks as a user does: the /freshbooks connect link, the OAuth approval, the DMs."""

from __future__ import annotations

import httpx

from tests.support.live import ADMIN, Live


def connect_link(live: Live, user_id: str = ADMIN) -> str:
    response = live.slash("connect", user_id=user_id)
    assert response.status_code == 200
    payload = response.json()
    assert payload["response_type"] == "ephemeral"
    button = payload["blocks"][0]["accessory"]
    return str(button["url"])


def approve(live: Live, link: str) -> httpx.Response:
    """The user's browser: FreshBooks' authorize page redirects back to our callback."""
    redirect = httpx.get(link)
    assert redirect.status_code == 302
    return httpx.get(redirect.headers["location"])


def dm_texts(live: Live, user_id: str = ADMIN) -> list[str]:
    return [m["text"] for m in live.slack.dms(user_id)]


def wait_for_dm(live: Live, n: int = 1) -> list[str]:
    live.slack.wait_for_calls("chat.postMessage", n, timeout=30)
    return dm_texts(live)
