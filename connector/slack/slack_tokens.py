"""Slack bot tokens in multi-workspace mode: one per installed workspace, refreshed before it expires.

With token rotation on, a bot token lives 12 hours and is renewed with a refresh token that Slack
revokes once used (reference slack.md §4), so two processes refreshing together would lose the
install. Like connector.freshbooks.tokens, a refresh takes a lease on the install row first
(compare-and-swap, no lock held across the HTTP call); whoever finds the lease taken uses the
current token while it still works, or waits for the holder's result. Requests (Bolt's authorize
step, slack_ui.oauth) and the background worker (delivery engine, notifier) both come here; Bolt's
own rotation (InstallationStoreAuthorize) would refresh without any coordination.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from connector.domain.clock import Clock
from connector.domain.process import worker_id
from storage import installations
from storage.crypto import Cipher
from storage.db import Database
from storage.installations import StoredBot

log = logging.getLogger(__name__)

# Refresh this long before the token expires (Slack's tokens live 12 hours). A refresh that fails
# for now leaves the current token in use until it really expires.
REFRESH_MARGIN = dt.timedelta(minutes=10)
LEASE = dt.timedelta(seconds=60)
# Answers to a refresh that no retry will change: the install is gone, a reinstall is needed.
REFUSED = frozenset(
    {"invalid_refresh_token", "invalid_grant", "token_revoked", "invalid_client_id", "bad_client_secret"}
)


def needs_refresh(bot: StoredBot, now: dt.datetime, margin: dt.timedelta = REFRESH_MARGIN) -> bool:
    """An expiring token with a refresh token to renew it. Pure."""
    return bot.expires_at is not None and bot.refresh_token is not None and bot.expires_at - margin <= now


def still_valid(bot: StoredBot, now: dt.datetime) -> bool:
    """Slack still accepts it (it expires later, or never). Pure."""
    return bot.expires_at is None or bot.expires_at > now


def web_client(token: str | None, api_url: str) -> WebClient:
    """Every Web API client of the app. No retry handlers: the delivery engine owns retries, and
    slack_sdk's default connection-error handler would re-post blindly and duplicate messages."""
    return WebClient(token=token, base_url=api_url, retry_handlers=[])


class SlackTokens:
    """The bot token of each installed workspace, fresh; `client_for_team` for the worker."""

    def __init__(
        self,
        *,
        db: Database,
        cipher: Cipher,
        client_id: str,
        client_secret: str,
        api_url: str,
        clock: Clock,
        margin: dt.timedelta = REFRESH_MARGIN,
        wait: Callable[[float], None] = time.sleep,
        wait_rounds: int = 100,
    ) -> None:
        self._db = db
        self._cipher = cipher
        self._client_id = client_id
        self._client_secret = client_secret
        self._api_url = api_url
        self._clock = clock
        self._margin = margin
        self._wait = wait
        self._wait_rounds = wait_rounds
        self._owner = worker_id()

    def client_for_team(self, team_id: str) -> WebClient | None:
        """A Web API client with the workspace's bot token; None when it is not installed (or its
        token expired and cannot be renewed right now)."""
        bot = self.bot(team_id)
        return None if bot is None else web_client(bot.token, self._api_url)

    def _read(self, team_id: str) -> StoredBot | None:
        with self._db.read() as session:
            return installations.current_bot(
                session, self._cipher, client_id=self._client_id, team_id=team_id
            )

    def bot(self, team_id: str) -> StoredBot | None:
        """The workspace's bot credentials, refreshed first when the token expires within the margin."""
        for _ in range(self._wait_rounds):
            bot = self._read(team_id)
            now = self._clock()
            if bot is None or not needs_refresh(bot, now, self._margin):
                return bot
            with self._db.session() as session:
                acquired = installations.take_refresh_lease(
                    session, row_id=bot.row_id, owner=self._owner, now=now, until=now + LEASE
                )
            if acquired:
                return self._refresh(team_id)
            if still_valid(bot, now):
                return bot  # another process is renewing it; this one works meanwhile
            self._wait(0.05)  # expired: the holder's result is what we need
        log.warning("gave up waiting for another process to renew a Slack token", extra=_context(team_id))
        return None

    def _refresh(self, team_id: str) -> StoredBot | None:
        """Under the lease: renew the token (unless someone just did) and store the new pair."""
        bot = self._read(team_id)  # re-read under the lease: maybe renewed meanwhile
        try:
            if bot is None or not needs_refresh(bot, self._clock(), self._margin):
                return bot
            assert bot.refresh_token is not None
            try:
                answer = web_client(None, self._api_url).oauth_v2_access(
                    client_id=self._client_id,
                    client_secret=self._client_secret,
                    grant_type="refresh_token",
                    refresh_token=bot.refresh_token,
                )
                token, refresh_token = str(answer["access_token"]), str(answer["refresh_token"])
                lifetime = dt.timedelta(seconds=int(answer["expires_in"]))
            except SlackApiError as exc:
                return self._refused(team_id, bot, str(exc.response.get("error") or exc.response.status_code))
            except (OSError, KeyError, TypeError, ValueError) as exc:  # unreachable, or not an answer
                return self._refused(team_id, bot, type(exc).__name__)
            expires_at = self._clock() + lifetime
            with self._db.session() as session:
                stored = installations.store_refreshed(
                    session,
                    self._cipher,
                    bot=bot,
                    client_id=self._client_id,
                    token=token,
                    refresh_token=refresh_token,
                    expires_at=expires_at,
                )
            if not stored:
                log.warning(
                    "a Slack token was renewed for an install removed meanwhile", extra=_context(team_id)
                )
                return None
            log.info("slack bot token renewed", extra=_context(team_id))
            return dataclasses.replace(bot, token=token, refresh_token=refresh_token, expires_at=expires_at)
        finally:
            if bot is not None:
                with self._db.session() as session:
                    installations.release_refresh_lease(session, row_id=bot.row_id, owner=self._owner)

    def _refused(self, team_id: str, bot: StoredBot, code: str) -> StoredBot | None:
        """The refresh failed. If someone else renewed the token meanwhile (a lease that ran out),
        theirs is the one to use; otherwise the current token serves while it still works."""
        latest = self._read(team_id)
        if latest is not None and latest.refresh_token != bot.refresh_token:
            return latest
        if code in REFUSED:
            log.error(
                "Slack refused to renew a workspace's bot token (%s): the app must be reinstalled there",
                code,
                extra=_context(team_id),
            )
        else:
            log.warning("Slack token renewal failed for now (%s)", code, extra=_context(team_id))
        return bot if still_valid(bot, self._clock()) else None


def _context(team_id: str) -> dict[str, dict[str, str]]:
    return {"context": {"team_id": team_id}}
