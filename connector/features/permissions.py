"""Who may change the setup: workspace admins and owners, plus the people they allowed in the App Home.

Everyone may read (help, status, rules, test); changing anything (connect, route, unroute, replay,
rule modals, App Home buttons) needs `may_manage`; changing the allowlist itself needs an admin.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from connector.domain.clock import Clock
from storage import allowlist, connections
from storage.db import Database

log = logging.getLogger(__name__)
T = TypeVar("T")

WHO_MAY_MANAGE = "workspace admins, owners and people they allow in the FreshBooks app's Home tab"
ALLOWLIST_REFUSAL = "Only workspace admins and owners can change who else may manage the FreshBooks app."


def refusal(action: str) -> str:
    """What a refused person reads: who can do it instead, e.g. refusal("run `/freshbooks route`")."""
    return f"Only {WHO_MAY_MANAGE} can {action}. Ask one of them."


def is_admin(client: WebClient, user_id: str) -> bool:
    """Workspace admins and owners (users.info); an error counts as no."""
    try:
        user = client.users_info(user=user_id)["user"]
    except SlackApiError as exc:
        log.warning("users.info failed: %s", exc.response.get("error"))
        return False
    return bool(user.get("is_admin") or user.get("is_owner") or user.get("is_primary_owner"))


@dataclass(frozen=True, slots=True)
class Access:
    admin: bool  # may also change the allowlist
    allowed: bool  # on the workspace's allowlist

    @property
    def can_manage(self) -> bool:
        return self.admin or self.allowed


class Permissions:
    """Every answer is for one workspace: an allowlisted user of one team is nobody in another."""

    def __init__(self, *, db: Database) -> None:
        self._db = db

    def allowlisted(self, team_id: str, user_id: str) -> bool:
        with self._db.read() as session:
            workspace = connections.workspace_of_team(session, team_id)
            return workspace is not None and allowlist.is_allowed(
                session, workspace_id=workspace, user_id=user_id
            )

    def access(self, client: WebClient, team_id: str, user_id: str) -> Access:
        """Both answers, for views that show different controls to admins and allowed users."""
        return Access(admin=is_admin(client, user_id), allowed=self.allowlisted(team_id, user_id))

    def may_manage(self, client: WebClient, team_id: str, user_id: str) -> bool:
        # The allowlist is a local read; users.info (a Slack call) only when it says no.
        return self.allowlisted(team_id, user_id) or is_admin(client, user_id)


# -- what a member may see ----------------------------------------------------------------------

VISIBILITY_CACHE = dt.timedelta(seconds=60)
_PAGE = 200  # Slack recommends no more than 200 results a page


def _conversations(client: WebClient, *, types: str, user: str | None = None) -> dict[str, bool]:
    """users.conversations, every page: channel id -> is_private."""
    found: dict[str, bool] = {}
    cursor = ""
    while True:
        page = client.users_conversations(limit=_PAGE, cursor=cursor or None, types=types, user=user)
        for channel in page.get("channels") or []:
            found[str(channel["id"])] = bool(channel.get("is_private"))
        cursor = (page.get("response_metadata") or {}).get("next_cursor") or ""
        if not cursor:
            return found


def _is_private(client: WebClient, channel_id: str) -> bool:
    """conversations.info for a channel the app is not in; one it cannot see counts as private."""
    try:
        return bool(client.conversations_info(channel=channel_id)["channel"].get("is_private"))
    except SlackApiError:
        return True


def _private_check(client: WebClient, channel_id: str) -> Callable[[], bool]:
    return lambda: _is_private(client, channel_id)


class ChannelVisibility:
    """Which channels' rules and deliveries a member (someone who may not manage) must not see:
    private channels they are not in. Admins and allowlisted people see everything (callers check).

    Two users.conversations calls answer it (Tier 3, about 50 a minute): the app's own channels
    (which are private), then the member's private channels that the app shares ("non-public
    channels are restricted to those where the calling user shares membership"). A private channel
    the app has left is hidden from members, and so is everything when Slack does not answer.
    Answers are cached for VISIBILITY_CACHE (per process), so opening the Home again costs nothing.
    """

    def __init__(self, *, clock: Clock, ttl: dt.timedelta = VISIBILITY_CACHE) -> None:
        self._clock = clock
        self._ttl = ttl
        self._cache: dict[tuple[str, ...], tuple[dt.datetime, object]] = {}
        self._lock = threading.Lock()

    def _cached(self, key: tuple[str, ...], load: Callable[[], T]) -> T:
        now = self._clock()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and now - hit[0] < self._ttl:
                return hit[1]  # type: ignore[return-value]
        value = load()
        with self._lock:
            if len(self._cache) > 10_000:  # many people and channels: start again rather than grow
                self._cache.clear()
            self._cache[key] = (now, value)
        return value

    def hidden(
        self,
        client: WebClient,
        *,
        team_id: str,
        user_id: str,
        channel_ids: Iterable[str],
        sees_all: bool = False,
    ) -> frozenset[str]:
        """The channels among `channel_ids` this person must not see; none for someone who
        `sees_all` (who may manage the setup), without asking Slack."""
        wanted = set(channel_ids)
        if sees_all or not wanted:
            return frozenset()
        try:
            apps = self._cached(
                ("app", team_id), lambda: _conversations(client, types="public_channel,private_channel")
            )
        except SlackApiError as exc:
            log.warning("users.conversations failed: %s", exc.response.get("error"))
            return frozenset(wanted)
        private = {c for c in wanted if apps.get(c, True)}
        for channel_id in [c for c in private if c not in apps]:  # the app is not in it
            if not self._cached(("info", team_id, channel_id), _private_check(client, channel_id)):
                private.discard(channel_id)
        if not private:
            return frozenset()
        try:
            mine = self._cached(
                ("user", team_id, user_id),
                lambda: _conversations(client, user=user_id, types="private_channel"),
            )
        except SlackApiError as exc:
            log.warning("users.conversations failed: %s", exc.response.get("error"))
            return frozenset(private)
        return frozenset(private - set(mine))
