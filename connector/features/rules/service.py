"""Managing routing rules for a workspace (the Slack commands and App Home call these)."""

from __future__ import annotations

from dataclasses import dataclass

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from connector.domain.clock import Clock
from connector.domain.quiet import QuietHours, QuietRequest, zone_of
from connector.domain.rules import RouteSpec, Rule
from storage import alerts, connections, outbox, quiet, rules
from storage.crypto import Cipher
from storage.db import Database


class RuleError(Exception):
    """Why a rule cannot be saved, in words for the person who tried."""


@dataclass(frozen=True, slots=True)
class ChannelCheck:
    ok: bool
    reason: str = ""
    joined: bool = False


def ensure_postable(client: WebClient, channel_id: str, *, join: bool = True) -> ChannelCheck:
    """Can the bot post in this channel? Join a public channel it is not in (channels:join) when
    `join` (people who may manage the setup); otherwise say who can add the app."""
    try:
        channel = client.conversations_info(channel=channel_id)["channel"]
    except SlackApiError as exc:
        if exc.response.get("error") == "channel_not_found":
            return ChannelCheck(
                False, "I can't see that channel. If it is private, invite me first: `/invite @FreshBooks`."
            )
        return ChannelCheck(
            False, f"Slack would not tell me about that channel (`{exc.response.get('error')}`)."
        )
    if channel.get("is_archived"):
        return ChannelCheck(False, "That channel is archived.")
    if channel.get("is_member"):
        return ChannelCheck(True)
    if channel.get("is_private"):
        return ChannelCheck(
            False, "That channel is private and I am not in it: invite me first with `/invite @FreshBooks`."
        )
    if not join:
        return ChannelCheck(
            False,
            "I am not in that channel. An admin can add me (`/invite @FreshBooks`), "
            "or try a channel I am in.",
        )
    try:
        client.conversations_join(channel=channel_id)
    except SlackApiError as exc:
        return ChannelCheck(False, f"I could not join that channel (`{exc.response.get('error')}`).")
    return ChannelCheck(True, joined=True)


def _connection_problem(linked: int) -> str | None:
    if not linked:
        return "Connect FreshBooks first: `/freshbooks connect`."
    if linked > 1:
        return "This workspace has several FreshBooks connections, and rules cannot say which one yet."
    return None


class RuleService:
    def __init__(self, *, db: Database, cipher: Cipher, clock: Clock) -> None:
        self._db = db
        self._cipher = cipher
        self._clock = clock

    def not_ready(self, *, team_id: str) -> str | None:
        """Why no rule can be saved in this workspace yet (said before opening a modal), or None."""
        with self._db.read() as session:
            linked = connections.connections_of_team(session, team_id)
        return _connection_problem(len(linked))

    def add(self, *, team_id: str, user_id: str, spec: RouteSpec) -> Rule:
        with self._db.session() as session:
            linked = connections.connections_of_team(session, team_id)
            problem = _connection_problem(len(linked))
            if problem is not None:
                raise RuleError(problem)
            connection = linked[0]
            return rules.create_rule(
                session,
                self._cipher,
                workspace_id=connection.workspace_id,
                connection_id=connection.id,
                spec=spec,
                created_by=user_id,
                now=self._clock(),
            )

    def get(self, *, team_id: str, rule_id: int) -> Rule | None:
        """A rule of this workspace; another workspace's rule id reads as absent."""
        with self._db.read() as session:
            workspace = connections.workspace_of_team(session, team_id)
            if workspace is None:
                return None
            return rules.get_rule(session, self._cipher, workspace_id=workspace, rule_id=rule_id)

    def update(self, *, team_id: str, rule_id: int, spec: RouteSpec) -> Rule:
        """Change a rule of this workspace (it stays paused or active); RuleError if it has no such rule."""
        with self._db.session() as session:
            workspace = connections.workspace_of_team(session, team_id)
            updated = (
                rules.update_rule(session, self._cipher, workspace_id=workspace, rule_id=rule_id, spec=spec)
                if workspace is not None
                else None
            )
        if updated is None:
            raise RuleError(f"There is no rule #{rule_id} in this workspace any more (was it deleted?).")
        return updated

    def list(self, *, team_id: str) -> list[Rule]:
        with self._db.read() as session:
            workspace = connections.workspace_of_team(session, team_id)
            return rules.rules_of_workspace(session, self._cipher, workspace) if workspace else []

    def remove(self, *, team_id: str, rule_id: int) -> bool:
        with self._db.session() as session:
            workspace = connections.workspace_of_team(session, team_id)
            if workspace is None:
                return False
            return rules.delete_rule(session, workspace_id=workspace, rule_id=rule_id)

    def channel_archived(self, *, team_id: str, channel_id: str) -> int:
        """Park what waits for an archived channel; its unarchive (channel_fixed) replays it."""
        with self._db.session() as session:
            workspace = connections.workspace_of_team(session, team_id)
            if workspace is None:
                return 0
            return outbox.park_channel(
                session, workspace_id=workspace, channel_id=channel_id, reason="is_archived"
            )

    def workspace_lost(self, *, team_id: str, reason: str) -> int:
        """app_uninstalled / tokens_revoked: nothing is posted until a reinstall (see
        DeliveryEngine.resume_workspaces); waiting deliveries are parked, never dropped."""
        with self._db.session() as session:
            workspace = connections.workspace_of_team(session, team_id)
            if workspace is None:
                return 0
            return outbox.suspend_workspace(session, workspace_id=workspace, reason=reason)

    def channel_fixed(self, *, team_id: str, channel_id: str) -> int:
        """The bot joined or a channel was unarchived: replay what was parked for it."""
        with self._db.session() as session:
            workspace = connections.workspace_of_team(session, team_id)
            if workspace is None:
                return 0
            alerts.resolve(session, workspace_id=workspace, now=self._clock(), channel_id=channel_id)
            return outbox.requeue_parked(
                session, workspace_id=workspace, channel_id=channel_id, now=self._clock()
            )

    # -- quiet hours (per channel; /freshbooks quiet) ------------------------------------------

    def set_quiet(
        self, client: WebClient, *, team_id: str, user_id: str, request: QuietRequest
    ) -> QuietHours:
        """Quiet hours for a channel, in the Slack time zone (users.info `tz`) of the admin setting
        them: what is routed there in them waits for their end. The one way they are set, from the
        command and the App Home alike; `request` was checked when it was made."""
        try:
            tz = client.users_info(user=user_id)["user"].get("tz")
        except SlackApiError:
            tz = None  # Slack documents `tz` as optional too: UTC, and the answer names the zone
        hours = request.in_zone(zone_of(tz))
        with self._db.session() as session:
            workspace = connections.ensure_workspace(session, team_id=team_id, now=self._clock()).id
            quiet.set_quiet(session, workspace_id=workspace, hours=hours, user_id=user_id, now=self._clock())
        return hours

    def clear_quiet(self, *, team_id: str, channel_id: str) -> bool:
        """No quiet hours in the channel any more; what they held goes out now."""
        with self._db.session() as session:
            workspace = connections.workspace_of_team(session, team_id)
            if workspace is None:
                return False
            return quiet.clear_quiet(
                session, workspace_id=workspace, channel_id=channel_id, now=self._clock()
            )

    def quiet_hours(self, *, team_id: str) -> tuple[QuietHours, ...]:
        with self._db.read() as session:
            workspace = connections.workspace_of_team(session, team_id)
            return tuple(quiet.quiet_of_workspace(session, workspace_id=workspace)) if workspace else ()
