"""The App Home view: a pure builder from HomeData to Block Kit, within Slack's 100-block limit."""

from __future__ import annotations

import datetime as dt
from typing import Any

from connector.home import DeliveryLine, HomeData
from connector.render import escape
from slack_ui import views

MAX_BLOCKS = 100
MAX_RULES = 20
STATE_ICONS = {"delivered": ":white_check_mark:", "pending": ":hourglass:", "in_doubt": ":mag:",
               "parked": ":double_vertical_bar:", "failed": ":x:"}  # fmt: skip


def _text(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}


def _button(label: str, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": label},
        "action_id": action_id,
        "value": value,
    }
    if style:
        button["style"] = style
    return button


def _delivery(line: DeliveryLine, now: dt.datetime) -> str:
    icon = STATE_ICONS.get(line.state, "")
    reason = f" ({escape(line.reason)})" if line.reason and line.state != "delivered" else ""
    return (
        f"{icon} `{line.event_name}` → <#{line.channel_id}> {line.state}{reason}, {views.ago(line.at, now)}"
    )


def build_home(data: HomeData, now: dt.datetime) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = []
    for cause in data.alerts[:5]:
        code, _, channel = cause.partition(":")
        where = f" in <#{channel}>" if channel else ""
        blocks.append(_text(f":warning: *Needs attention*{where}: messages are on hold (`{escape(code)}`)."))
    blocks.append({"type": "header", "text": {"type": "plain_text", "text": "FreshBooks connection"}})
    blocks.append(_text(views.status_text(data.connections, now)))
    blocks.append({"type": "divider"})
    blocks.append({"type": "header", "text": {"type": "plain_text", "text": "Routing rules"}})
    if not data.rules:
        blocks.append(_text(views.rules_text([])))
    for rule in data.rules[:MAX_RULES]:
        toggle = ("Resume", "home_rule_resume") if rule.paused else ("Pause", "home_rule_pause")
        blocks.append(_text(views.rule_line(rule)))
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    _button(toggle[0], toggle[1], str(rule.id)),
                    _button("Delete", "home_rule_delete", str(rule.id), "danger"),
                ],
            }
        )
    if len(data.rules) > MAX_RULES:
        blocks.append(_text(f"…and {len(data.rules) - MAX_RULES} more: `/freshbooks rules` lists them all."))
    blocks.append({"type": "divider"})
    blocks.append({"type": "header", "text": {"type": "plain_text", "text": "Waiting for a person"}})
    if not data.attention:
        blocks.append(_text("Nothing parked or failed."))
    for line in data.attention:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _delivery(line, now)},
                "accessory": _button("Replay", "home_replay", str(line.delivery_id), "primary"),
            }
        )
    blocks.append({"type": "divider"})
    blocks.append({"type": "header", "text": {"type": "plain_text", "text": "Recent deliveries"}})
    recent = "\n".join(_delivery(line, now) for line in data.recent) or "None yet."
    blocks.append(_text(recent))
    return {"type": "home", "blocks": blocks[:MAX_BLOCKS]}
