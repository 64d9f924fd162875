"""Who may change the setup: workspace admins and owners, plus the people they allowed in the App Home.

Everyone may read (help, status, rules, test); changing anything (connect, route, unroute, replay,
rule modals, App Home buttons) needs `may_manage`; changing the allowlist itself needs an admin.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from storage import allowlist, connections
from storage.db import Database

log = logging.getLogger(__name__)

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
