"""Telling people in Slack about their setup (not event notifications: those go through delivery)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

log = logging.getLogger(__name__)


class Notifier(Protocol):
    def tell_user(self, *, team_id: str, user_id: str, text: str) -> bool: ...


class SlackNotifier:
    """Direct messages from the app to a user (chat.postMessage to the user ID)."""

    def __init__(self, client_for_team: Callable[[str], WebClient | None]) -> None:
        self._client_for_team = client_for_team

    def tell_user(self, *, team_id: str, user_id: str, text: str) -> bool:
        client = self._client_for_team(team_id)
        if client is None:
            log.warning("cannot message a user: Slack is not configured for this workspace")
            return False
        try:
            client.chat_postMessage(channel=user_id, text=text, unfurl_links=False, unfurl_media=False)
        except SlackApiError as exc:
            log.warning("could not message a user: %s", exc.response.get("error"))
            return False
        return True


class LogNotifier:
    """Used when Slack is not configured yet: says in the log what it would have said."""

    def tell_user(self, *, team_id: str, user_id: str, text: str) -> bool:
        # Not the text: it can name the customer's business.
        log.warning("Slack is not configured: a message for user %s in %s was not sent", user_id, team_id)
        return False


def workspace_name(client: WebClient | None) -> str | None:
    """The workspace's name as Slack shows it (auth.test needs no scope); None when Slack does not say."""
    if client is None:
        return None
    try:
        name = client.auth_test().get("team")
    except SlackApiError as exc:
        log.warning("auth.test failed: %s", exc.response.get("error"))
        return None
    return str(name) if name else None
