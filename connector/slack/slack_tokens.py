"""Slack bot tokens in multi-workspace mode: one per installed workspace, refreshed before it expires.

With token rotation on, a bot token lives 12 hours and is renewed with a refresh token that Slack
revokes once used (reference slack.md §4), so two processes refreshing together would lose the
install. Like connector.freshbooks.tokens, and by the same rules (connector.domain.refresh: a
margin scaled to the token's lifetime, a hard deadline on the refresh call, a lease just longer
than that), a refresh takes a lease on the install row first (compare-and-swap, no lock held
across the HTTP call); whoever finds the lease taken uses the current token while it still works,
or waits for the holder's result, at most until a dead holder's lease has run out twice.
Requests (Bolt's authorize step, slack_ui.oauth) and the background worker (delivery engine,
notifier) both come here; Bolt's own rotation (InstallationStoreAuthorize) would refresh without
any coordination.

What no lease can fix: a renewal Slack carried out whose answer never arrived (given up at the
deadline, or the process was killed) spent the stored refresh token; the next renewal is refused
and the workspace must reinstall the app (the owner is told, as for any refused renewal).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import time
from collections.abc import Callable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

from connector.domain import refresh
from connector.domain.clock import Clock
from connector.domain.process import worker_id
from connector.domain.refresh import LEASE, REFRESH_DEADLINE, WAIT_LIMIT, WAIT_STEP, DeadlinePassed
from storage import installations
from storage.crypto import Cipher
from storage.db import Database
from storage.installations import StoredBot

log = logging.getLogger(__name__)

# Answers to a refresh that no retry will change: the install is gone, a reinstall is needed.
REFUSED = frozenset(
    {"invalid_refresh_token", "invalid_grant", "token_revoked", "invalid_client_id", "bad_client_secret"}
)


def needs_refresh(bot: StoredBot, now: dt.datetime) -> bool:
    """A token within its refresh margin (scaled to its lifetime) with a refresh token to renew
    it. A refresh that fails for now leaves the current token in use until it really expires. Pure."""
    return bot.refresh_token is not None and refresh.is_due(bot.expires_at, bot.issued_at, now)


def still_valid(bot: StoredBot, now: dt.datetime) -> bool:
    """Slack still accepts it (it expires later, or never). Pure."""
    return bot.expires_at is None or bot.expires_at > now


def web_client(token: str | None, api_url: str, *, timeout: int = 30) -> WebClient:
    """Every Web API client of the app. No retry handlers: the delivery engine owns retries, and
    slack_sdk's default connection-error handler would re-post blindly and duplicate messages."""
    return WebClient(token=token, base_url=api_url, retry_handlers=[], timeout=timeout)


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
        wait: Callable[[float], None] = time.sleep,
        wait_rounds: int | None = None,
    ) -> None:
        self._db = db
        self._cipher = cipher
        self._client_id = client_id
        self._client_secret = client_secret
        self._api_url = api_url
        self._clock = clock
        self._wait = wait
        self._wait_rounds = wait_rounds or refresh.wait_rounds()

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
        """The workspace's bot credentials, refreshed first when the token is within its margin."""
        waiting_since: dt.datetime | None = None
        for _ in range(self._wait_rounds):
            bot = self._read(team_id)
            now, taken = self._clock(), time.monotonic()  # the lease's deadline runs from here
            if bot is None or not needs_refresh(bot, now):
                return bot
            # An owner per refresh, not per process: a thread of this process must not release
            # the lease another thread of it took after this one's refresh was stored.
            owner = worker_id()
            with self._db.session() as session:
                acquired = installations.take_refresh_lease(
                    session, row_id=bot.row_id, owner=owner, now=now, until=now + LEASE
                )
            if acquired:
                return self._refresh(team_id, owner, taken=taken)
            if still_valid(bot, now):
                return bot  # another process is renewing it; this one works meanwhile
            # Expired: the holder's result is what we need. Its lease ends within LEASE,
            # answered or not (a holder killed mid-refresh), and then we take over.
            if waiting_since is None:
                waiting_since = now
            elif now - waiting_since > WAIT_LIMIT:
                break
            self._wait(WAIT_STEP)
        log.warning("gave up waiting for another process to renew a Slack token", extra=_context(team_id))
        return None

    def _refresh(self, team_id: str, owner: str, *, taken: float) -> StoredBot | None:
        """Under the lease `owner` took at `taken` (time.monotonic()): renew the token (unless
        someone just did) and store the new pair."""
        bot = self._read(team_id)  # re-read under the lease: maybe renewed meanwhile
        try:
            if bot is None or not needs_refresh(bot, self._clock()):
                return bot
            try:
                # What is left of the deadline after the reads above: the lease outlasts it.
                answer = refresh.within(
                    REFRESH_DEADLINE - (time.monotonic() - taken),
                    lambda deadline: self._refresh_call(bot, deadline),
                    name="slack-refresh-deadline",
                )
                token, refresh_token = str(answer["access_token"]), str(answer["refresh_token"])
                lifetime = dt.timedelta(seconds=int(answer["expires_in"]))
            except SlackApiError as exc:
                return self._refused(team_id, bot, str(exc.response.get("error") or exc.response.status_code))
            except DeadlinePassed:
                return self._refused(team_id, bot, "deadline")
            except (OSError, KeyError, TypeError, ValueError) as exc:  # unreachable, or not an answer
                return self._refused(team_id, bot, type(exc).__name__)
            issued_at = self._clock()
            expires_at = issued_at + lifetime
            with self._db.session() as session:
                stored = installations.store_refreshed(
                    session,
                    self._cipher,
                    bot=bot,
                    client_id=self._client_id,
                    token=token,
                    refresh_token=refresh_token,
                    expires_at=expires_at,
                    issued_at=issued_at,
                )
            if not stored:
                log.warning(
                    "a Slack token was renewed for an install removed meanwhile", extra=_context(team_id)
                )
                return None
            log.info("slack bot token renewed", extra=_context(team_id))
            return dataclasses.replace(
                bot, token=token, refresh_token=refresh_token, expires_at=expires_at, issued_at=issued_at
            )
        finally:
            if bot is not None:
                with self._db.session() as session:
                    installations.release_refresh_lease(session, row_id=bot.row_id, owner=owner)

    def _refresh_call(self, bot: StoredBot, deadline: float) -> SlackResponse:
        """oauth.v2.access with the refresh token; slack_sdk's socket timeout ends by `deadline`
        too, so the helper thread `within` runs this on ends soon after in all but a trickle."""
        assert bot.refresh_token is not None
        timeout = max(1, math.ceil(deadline - time.monotonic()))
        return web_client(None, self._api_url, timeout=timeout).oauth_v2_access(
            client_id=self._client_id,
            client_secret=self._client_secret,
            grant_type="refresh_token",
            refresh_token=bot.refresh_token,
        )

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
