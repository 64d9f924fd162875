"""The App Home's Digests section, its form (a modal) and its Preview (a modal showing the digest's
message computed now). Builders are pure; the listeners are scoped to the signed request's
workspace and check `may_manage` before anything that changes or reveals the books.

Within App Home limits: the section lists at most HOME_DIGESTS schedules (one block each; the rest
are counted, `/freshbooks digests` lists them all), so it adds at most HOME_DIGESTS + 4 blocks.
A preview is at most the digest's 17 blocks plus a note, far below a modal's 100.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from connector.features.digest.period import MONDAY, Cadence
from connector.features.digest.schedule import DEFAULT_TIME, WEEKDAYS, ScheduleRequest
from connector.features.digest.service import DigestError, ScheduleLine, user_zone
from connector.features.permissions import refusal
from connector.features.rules.modal import message_modal
from connector.features.rules.service import ensure_postable
from slack_ui.commands import CommandServices
from slack_ui.digest_commands import NO_ZONE_NOTE, UTC, schedule_line

log = logging.getLogger(__name__)

HOME_DIGESTS = 10
NEW_ACTION = "home_digest_new"
REMOVE_ACTION = "home_digest_remove"
PREVIEW_ACTION = "home_digest_preview"
CALLBACK_ID = "digest_new"
CHANNEL_BLOCK, CADENCE_BLOCK, DAY_BLOCK, TIME_BLOCK = (
    "digest_channel",
    "digest_cadence",
    "digest_day",
    "digest_time",
)
_TIME = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text}


def _text(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}


def _button(label: str, action_id: str, value: str, **extra: Any) -> dict[str, Any]:
    return {"type": "button", "text": _plain(label), "action_id": action_id, "value": value, **extra}


def home_section(lines: list[ScheduleLine], *, can_manage: bool) -> list[dict[str, Any]]:
    """Header, the managers' buttons (New digest, Preview daily or weekly), one line per schedule."""
    blocks: list[dict[str, Any]] = [{"type": "header", "text": _plain("Cash-flow digests")}]
    if can_manage:
        blocks.append({"type": "actions", "block_id": "digests_new", "elements": [
            _button("New digest", NEW_ACTION, "new", style="primary"),
            _button("Preview daily", PREVIEW_ACTION, Cadence.DAILY.value),
            _button("Preview weekly", PREVIEW_ACTION, Cadence.WEEKLY.value),
        ]})  # fmt: skip
    if not lines:
        blocks.append(_text("No digests yet: a daily or weekly summary of cash collected, invoiced, owed, "
                            "bills due and expenses, posted to a channel."))  # fmt: skip
    for line in lines[:HOME_DIGESTS]:
        block = _text(schedule_line(line))
        if can_manage:
            confirm = {
                "title": _plain(f"Remove digest #{line.schedule.id}?"),
                "text": {"type": "mrkdwn", "text": "Its channel stops getting this digest."},
                "confirm": _plain("Remove"),
                "deny": _plain("Keep it"),
                "style": "danger",
            }
            block["accessory"] = _button(
                "Remove", REMOVE_ACTION, str(line.schedule.id), style="danger", confirm=confirm
            )
        blocks.append(block)
    if len(lines) > HOME_DIGESTS:
        more = len(lines) - HOME_DIGESTS
        note = f"…and {more} more: `/freshbooks digests` lists them all."
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": note}]})
    return blocks


def _option(label: str, value: str) -> dict[str, Any]:
    return {"text": _plain(label), "value": value}


def new_digest_modal() -> dict[str, Any]:
    """The form: channel, how often, which day (weekly), what time (in the person's time zone)."""
    cadences = [
        _option("Daily (yesterday's figures)", "daily"),
        _option("Weekly (the last 7 days)", "weekly"),
    ]
    days = [_option(day.title(), str(n)) for n, day in enumerate(WEEKDAYS)]
    return {
        "type": "modal",
        "callback_id": CALLBACK_ID,
        "title": _plain("New digest"),
        "submit": _plain("Schedule"),
        "close": _plain("Cancel"),
        "private_metadata": "",
        "blocks": [
            {"type": "input", "block_id": CHANNEL_BLOCK, "label": _plain("Channel"),
             "element": {"type": "conversations_select", "action_id": "channel",
                         "filter": {"include": ["public", "private"], "exclude_bot_users": True}}},
            {"type": "input", "block_id": CADENCE_BLOCK, "label": _plain("How often"),
             "element": {"type": "static_select", "action_id": "cadence", "options": cadences,
                         "initial_option": cadences[0]}},
            {"type": "input", "block_id": DAY_BLOCK, "label": _plain("Day (weekly digests)"),
             "optional": True, "element": {"type": "static_select", "action_id": "day", "options": days,
                         "initial_option": days[MONDAY]}},
            {"type": "input", "block_id": TIME_BLOCK, "label": _plain("Time (your Slack time zone)"),
             "element": {"type": "timepicker", "action_id": "time", "initial_time": f"{DEFAULT_TIME:%H:%M}"}},
        ],
    }  # fmt: skip


def _selected(values: dict[str, Any], block: str, action: str) -> Any:
    return (values.get(block) or {}).get(action) or {}


def read_form(values: dict[str, Any]) -> ScheduleRequest | dict[str, str]:
    """The form's state as a request, or field errors by block id. Pure."""
    errors: dict[str, str] = {}
    channel = _selected(values, CHANNEL_BLOCK, "channel").get("selected_conversation")
    if not channel or not re.fullmatch(r"[CG][A-Z0-9]{2,31}", str(channel)):
        errors[CHANNEL_BLOCK] = "Pick a channel."
    cadence_option = _selected(values, CADENCE_BLOCK, "cadence").get("selected_option") or {}
    cadence = Cadence(cadence_option["value"]) if cadence_option.get("value") in ("daily", "weekly") else None
    if cadence is None:
        errors[CADENCE_BLOCK] = "Pick daily or weekly."
    day_option = _selected(values, DAY_BLOCK, "day").get("selected_option") or {}
    day = int(day_option["value"]) if str(day_option.get("value", "")) in {str(n) for n in range(7)} else None
    found = _TIME.fullmatch(str(_selected(values, TIME_BLOCK, "time").get("selected_time") or ""))
    if found is None:
        errors[TIME_BLOCK] = "Pick a time."
    if errors or cadence is None or found is None:
        return errors
    weekday = (day if day is not None else MONDAY) if cadence is Cadence.WEEKLY else None
    return ScheduleRequest(str(channel), cadence, dt.time(int(found.group(1)), int(found.group(2))), weekday)


def preview_modal(title: str, blocks: list[dict[str, Any]], note: str) -> dict[str, Any]:
    return {
        "type": "modal",
        "title": _plain(title[:24]),
        "close": _plain("Close"),
        "blocks": [{"type": "context", "elements": [{"type": "mrkdwn", "text": note[:3000]}]}, *blocks],
    }


@dataclass(frozen=True)
class DigestHome:
    services: CommandServices
    publish: Callable[[WebClient, str, str], None]  # the Home again, for the person who changed it

    def _zone(self, client: WebClient, user_id: str) -> tuple[ZoneInfo, str]:
        zone = user_zone(client, user_id)
        return (zone, "") if zone is not None else (UTC, NO_ZONE_NOTE)

    def new(self, ack: Ack, body: dict[str, Any], context: BoltContext, client: WebClient) -> None:
        ack()
        team_id = str(context.team_id)
        if not self.services.permissions.may_manage(client, team_id, body["user"]["id"]):
            view = message_modal("Not allowed", refusal("schedule digests"))
        else:
            problem = self.services.digests.service.not_ready(team_id=team_id)
            view = message_modal("Not yet", problem) if problem else new_digest_modal()
        try:
            client.views_open(trigger_id=body["trigger_id"], view=view)
        except SlackApiError as exc:
            log.warning("views.open failed: %s", exc.response.get("error"))

    def submit(self, ack: Ack, body: dict[str, Any], context: BoltContext, client: WebClient) -> None:
        team_id, user_id = str(context.team_id), body["user"]["id"]
        if not self.services.permissions.may_manage(client, team_id, user_id):
            ack(response_action="update", view=message_modal("Not scheduled", refusal("schedule digests")))
            return
        request = read_form(body["view"]["state"]["values"])
        if isinstance(request, dict):
            ack(response_action="errors", errors=request)
            return
        check = ensure_postable(client, request.channel_id)
        if not check.ok:
            ack(response_action="errors", errors={CHANNEL_BLOCK: check.reason.replace("`", "")})
            return
        zone, note = self._zone(client, user_id)
        try:
            line = self.services.digests.service.add(
                team_id=team_id, user_id=user_id, request=request, zone=zone
            )
        except DigestError as exc:
            ack(response_action="update", view=message_modal("Not scheduled", str(exc)))
            return
        joined = " I joined the channel to post there." if check.joined else ""
        ack(
            response_action="update",
            view=message_modal("Digest scheduled", f"{schedule_line(line)}.{joined}{note}"),
        )
        self.publish(client, team_id, user_id)

    def preview(self, ack: Ack, body: dict[str, Any], context: BoltContext, client: WebClient) -> None:
        """Open a modal at once (the trigger lasts 3 s), then fill it with the digest computed now."""
        ack()
        team_id, user_id = str(context.team_id), body["user"]["id"]
        if not self.services.permissions.may_manage(client, team_id, user_id):
            self._open(client, body, message_modal("Not allowed", refusal("preview digests")))
            return
        value = str(body["actions"][0].get("value", ""))
        cadence = Cadence.WEEKLY if value == Cadence.WEEKLY.value else Cadence.DAILY
        view_id = self._open(client, body, message_modal("Digest preview", "Reading FreshBooks…"))
        if view_id is None:
            return
        zone, note = self._zone(client, user_id)
        try:
            message = self.services.digests.service.render_now(
                team_id=team_id, cadence=cadence, zone=zone, delivery_key="preview"
            ).message
            view = preview_modal(
                "Digest preview",
                message.blocks,
                f"The {cadence.value} digest as it would be posted now (nothing was posted).{note}",
            )
        except DigestError as exc:
            view = message_modal("Digest preview", str(exc))
        try:
            client.views_update(view_id=view_id, view=view)
        except SlackApiError as exc:
            log.warning("views.update failed: %s", exc.response.get("error"))

    def _open(self, client: WebClient, body: dict[str, Any], view: dict[str, Any]) -> str | None:
        try:
            return str(client.views_open(trigger_id=body["trigger_id"], view=view)["view"]["id"])
        except SlackApiError as exc:
            log.warning("views.open failed: %s", exc.response.get("error"))
            return None


Managed = Callable[[str, Callable[[str, str, int], object]], Callable[..., None]]


def register(
    app: App, services: CommandServices, publish: Callable[[WebClient, str, str], None], managed: Managed
) -> None:
    home = DigestHome(services, publish)
    digests = services.digests.service
    app.action(NEW_ACTION)(home.new)
    app.action(PREVIEW_ACTION)(home.preview)
    app.view(CALLBACK_ID)(home.submit)
    app.action(REMOVE_ACTION)(
        managed(
            "remove digests",
            lambda team, user, sid: digests.remove(team_id=team, schedule_id=sid, user_id=user),
        )
    )
