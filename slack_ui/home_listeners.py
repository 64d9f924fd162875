"""App Home: publish it when opened, and handle its buttons (admins only), then publish again."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from connector.clock import Clock
from connector.home import HomeService
from slack_ui.commands import is_admin
from slack_ui.home import build_home

log = logging.getLogger(__name__)


def register(app: App, home: HomeService, clock: Clock) -> None:
    def publish(client: WebClient, team_id: str, user_id: str) -> None:
        view = build_home(home.gather(team_id), clock())
        try:
            client.views_publish(user_id=user_id, view=view)
        except SlackApiError as exc:
            log.warning("views.publish failed: %s", exc.response.get("error"))

    def opened(event: dict[str, Any], context: BoltContext, client: WebClient) -> None:
        if event.get("tab", "home") == "home":
            publish(client, str(context.team_id), str(event["user"]))

    def button(do: Callable[[str, int], bool]) -> Callable[..., None]:
        def handle(ack: Ack, body: dict[str, Any], context: BoltContext, client: WebClient) -> None:
            ack()
            user_id = body["user"]["id"]
            if not is_admin(client, user_id):
                client.chat_postEphemeral(
                    channel=user_id, user=user_id, text="Only workspace admins and owners can change this."
                )
                return
            value = str(body["actions"][0].get("value", ""))
            if value.isdigit():
                do(str(context.team_id), int(value))
            publish(client, str(context.team_id), user_id)

        return handle

    app.event("app_home_opened")(opened)
    app.action("home_rule_pause")(
        button(lambda team, rid: home.set_paused(team_id=team, rule_id=rid, paused=True))
    )
    app.action("home_rule_resume")(
        button(lambda team, rid: home.set_paused(team_id=team, rule_id=rid, paused=False))
    )
    app.action("home_rule_delete")(button(lambda team, rid: home.delete_rule(team_id=team, rule_id=rid)))
    app.action("home_replay")(button(lambda team, did: home.replay(team_id=team, delivery_id=did)))
