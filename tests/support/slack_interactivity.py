"""Signed interactivity requests (block actions, view submissions) as Slack sends them, over real HTTP,
and the modal state Slack would send back for a view the app opened."""

from __future__ import annotations

import json
import time
import urllib.parse
from typing import Any

import httpx

from tests.support.live import ADMIN, Live, signed_slack_post

TRIGGER = "13345224609.738474920.8088930838d88f008e0"


def interact(live: Live, payload: dict[str, Any]) -> httpx.Response:
    body = urllib.parse.urlencode({"payload": json.dumps(payload)})
    return signed_slack_post(live.url, body)


def home_action(
    live: Live,
    action_id: str,
    value: str = "",
    *,
    user: str = ADMIN,
    team: str = "T0001",
    pages: str | None = None,
    **extra: Any,
) -> httpx.Response:
    """A button (or select, with `extra` such as selected_users) pressed in the App Home."""
    view: dict[str, Any] = {"id": f"V{user}", "type": "home"}
    if pages is not None:
        view["private_metadata"] = pages
    action = {"type": "button", "action_id": action_id, "value": value, "block_id": "b",
              "action_ts": f"{time.time():.6f}", **extra}  # fmt: skip
    return interact(live, {
        "type": "block_actions", "team": {"id": team}, "user": {"id": user, "team_id": team},
        "api_app_id": "A0001", "container": {"type": "view", "view_id": view["id"]},
        "trigger_id": TRIGGER, "view": view, "actions": [action],
    })  # fmt: skip


def _initial(element: dict[str, Any]) -> dict[str, Any]:
    """What Slack puts in view.state for an element the person has not touched."""
    kind = element["type"]
    if kind == "checkboxes":
        return {"type": kind, "selected_options": element.get("initial_options", [])}
    if kind == "conversations_select":
        return {"type": kind, "selected_conversation": element.get("initial_conversation")}
    if kind == "timepicker":
        return {"type": kind, "selected_time": element.get("initial_time")}
    return {"type": kind, "value": element.get("initial_value")}


def state_of(view: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """view.state.values for `view` after the person changed some fields.

    `changes` by block id: events_<kind>=[values], channel="C..", min/max/currency/client/vendor="text"
    ("" empties it), billable=True/False (True checks a checkboxes' every option), start/end="HH:MM"
    (None clears a timepicker).
    """
    values: dict[str, Any] = {}
    for block in view["blocks"]:
        if block["type"] != "input":
            continue
        element = block["element"]
        state = _initial(element)
        block_id = block["block_id"]
        if block_id in changes:
            change = changes[block_id]
            if element["type"] == "checkboxes":
                every = [o["value"] for o in element["options"]]
                wanted = every if change is True else [] if change is False else list(change)
                state["selected_options"] = [o for o in element["options"] if o["value"] in wanted]
            elif element["type"] == "conversations_select":
                state["selected_conversation"] = change
            elif element["type"] == "timepicker":
                state["selected_time"] = change
            else:
                state["value"] = change or None
        values[block_id] = {element["action_id"]: state}
    return values


def submit(
    live: Live, view_id: str, values: dict[str, Any], *, user: str = ADMIN, team: str = "T0001",
    metadata: str | None = None,
) -> httpx.Response:  # fmt: skip
    """The modal's Submit button: a view_submission for the view the fake Slack holds as `view_id`."""
    view = live.slack.modals[view_id]
    return interact(live, {
        "type": "view_submission", "team": {"id": team}, "user": {"id": user, "team_id": team},
        "api_app_id": "A0001", "trigger_id": TRIGGER,
        "view": {"id": view_id, "type": "modal", "team_id": team, "callback_id": view["callback_id"],
                 "private_metadata": view.get("private_metadata", "") if metadata is None else metadata,
                 "hash": live.slack.view_hash(view_id), "state": {"values": values}},
    })  # fmt: skip


def modal_action(
    live: Live,
    view_id: str,
    action_id: str,
    values: dict[str, Any],
    *,
    user: str = ADMIN,
    team: str = "T0001",
) -> httpx.Response:
    """A button pressed inside a modal (Preview): Slack sends the view with its current state."""
    view = live.slack.modals[view_id]
    return interact(live, {
        "type": "block_actions", "team": {"id": team}, "user": {"id": user, "team_id": team},
        "api_app_id": "A0001", "container": {"type": "view", "view_id": view_id}, "trigger_id": TRIGGER,
        "view": {"id": view_id, "type": "modal", "callback_id": view["callback_id"],
                 "private_metadata": view["private_metadata"], "hash": live.slack.view_hash(view_id),
                 "state": {"values": values}},
        "actions": [{"type": "button", "action_id": action_id, "value": "preview", "block_id": "preview",
                     "action_ts": f"{time.time():.6f}"}],
    })  # fmt: skip


def texts(view: dict[str, Any]) -> str:
    """All of a view as one string, for `in` checks."""
    return json.dumps(view, ensure_ascii=False)
