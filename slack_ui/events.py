"""Slack events that tell us a person fixed something: replay what was parked for it."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import App, BoltContext

from connector.features.rules.service import RuleService

log = logging.getLogger(__name__)


def register(app: App, rules: RuleService) -> None:
    def bot_joined(event: dict[str, Any], context: BoltContext) -> None:
        if event.get("user") == context.bot_user_id:
            replayed = rules.channel_fixed(team_id=str(context.team_id), channel_id=str(event.get("channel")))
            log.info("bot joined a channel: %d parked deliveries replayed", replayed)

    def unarchived(event: dict[str, Any], context: BoltContext) -> None:
        replayed = rules.channel_fixed(team_id=str(context.team_id), channel_id=str(event.get("channel")))
        log.info("channel unarchived: %d parked deliveries replayed", replayed)

    def archived(event: dict[str, Any], context: BoltContext) -> None:
        parked = rules.channel_archived(team_id=str(context.team_id), channel_id=str(event.get("channel")))
        log.info("channel archived: %d waiting deliveries parked until it is unarchived", parked)

    def lost(event: dict[str, Any], context: BoltContext) -> None:
        parked = rules.workspace_lost(team_id=str(context.team_id), reason=str(event.get("type")))
        log.warning("Slack says %s: posting stopped, %d deliveries parked", event.get("type"), parked)

    app.event("member_joined_channel")(bot_joined)
    app.event("app_uninstalled")(lost)
    app.event("tokens_revoked")(lost)
    app.event("channel_archive")(archived)
    app.event("group_archive")(archived)
    app.event("channel_unarchive")(unarchived)
    app.event("group_unarchive")(unarchived)
