"""The App Home view: a pure builder from HomeData to Block Kit.

Every list (rules, deliveries waiting for a person, recent deliveries, allowed people) shows one
page of connector.features.home.PAGE items with Previous/Next buttons, so the view stays far below
Slack's 100-block limit however much there is: at most about 70 blocks (counted in
tests/features/home/test_app_home.py).
The pages shown travel in the view's private_metadata and in the buttons' values.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from connector.features.home import DeliveryLine, HomeData, Page, Pages
from connector.features.permissions import WHO_MAY_MANAGE
from connector.pipeline.render.formatting import escape
from slack_ui import views

MAX_BLOCKS = 100
MAX_ALERTS = 5
PAGE_ACTION_PREFIX = "home_page_"
STATE_ICONS = {"delivered": ":white_check_mark:", "pending": ":hourglass:", "in_doubt": ":mag:",
               "parked": ":double_vertical_bar:", "failed": ":x:"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Viewer:
    """What the person looking may do: change the setup, and (admins) change who else may."""

    can_manage: bool
    admin: bool


def _text(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": text}}


QUIET_OFF_ACTION_ID = "home_quiet_off"
QUIET_SET_ACTION_ID = "home_quiet_set"
HOME_QUIET = 5  # channels with quiet hours shown with their own Turn off; `/freshbooks quiet` lists all


def _button(
    label: str, action_id: str, value: str, style: str | None = None, confirm: dict[str, Any] | None = None
) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": label},
        "action_id": action_id,
        "value": value,
    }
    if style:
        button["style"] = style
    if confirm:
        button["confirm"] = confirm
    return button


def _delivery(line: DeliveryLine, now: dt.datetime) -> str:
    icon = STATE_ICONS.get(line.state, "")
    reason = f" ({escape(line.reason)})" if line.reason and line.state != "delivered" else ""
    return (
        f"{icon} `{line.event_name}` → <#{line.channel_id}> {line.state}{reason}, {views.ago(line.at, now)}"
    )


def _pager(page: Page[Any], name: str, pages: Pages, noun: str) -> list[dict[str, Any]]:
    """'11-20 of 35 rules' and Previous/Next buttons carrying the pages they lead to; nothing for one page."""
    if page.count <= 1:
        return []
    last = page.first + len(page.items) - 1
    buttons = []
    if page.has_previous:
        buttons.append(_button("← Previous", f"{PAGE_ACTION_PREFIX}{name}_previous",
                               pages.turned(name, page.number - 1).encode()))  # fmt: skip
    if page.has_next:
        buttons.append(_button("Next →", f"{PAGE_ACTION_PREFIX}{name}_next",
                               pages.turned(name, page.number + 1).encode()))  # fmt: skip
    return [
        {"type": "context", "elements": [
            {"type": "mrkdwn", "text": f"{page.first}-{last} of {page.total} {noun}"}]},
        {"type": "actions", "block_id": f"pager_{name}", "elements": buttons},
    ]  # fmt: skip


def _alerts(causes: list[str]) -> list[dict[str, Any]]:
    if not causes:
        return []
    lines = []
    for cause in causes[:MAX_ALERTS]:
        code, _, channel = cause.partition(":")
        where = f" in <#{channel}>" if channel else ""
        lines.append(f":warning: *Needs attention*{where}: messages are on hold (`{escape(code)}`).")
    if len(causes) > MAX_ALERTS:
        lines.append(f"…and {len(causes) - MAX_ALERTS} more problems.")
    return [_text("\n".join(lines))]


def _rules(data: HomeData, viewer: Viewer) -> list[dict[str, Any]]:
    page = data.rules
    blocks = [_header("Routing rules")]
    if viewer.can_manage:
        blocks.append({"type": "actions", "block_id": "rules_new",
                       "elements": [_button("New rule", "home_rule_new", "new", "primary")]})  # fmt: skip
    if not page.items:
        empty = views.rules_text([])
        blocks.append(
            _text(empty.replace("Add one with", "Add one with *New rule* or") if viewer.can_manage else empty)
        )
    if not viewer.can_manage:
        if page.items:
            blocks.append(_text("\n".join(views.rule_line(rule) for rule in page.items)))
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": f"Only {WHO_MAY_MANAGE} can change rules."}]})  # fmt: skip
    else:
        for rule in page.items:
            toggle = ("Resume", "home_rule_resume") if rule.paused else ("Pause", "home_rule_pause")
            confirm = {
                "title": {"type": "plain_text", "text": f"Delete rule #{rule.id}?"},
                "text": {"type": "mrkdwn", "text": "Its channel stops getting these events."},
                "confirm": {"type": "plain_text", "text": "Delete"},
                "deny": {"type": "plain_text", "text": "Keep it"},
                "style": "danger",
            }
            blocks.append(_text(views.rule_line(rule)))
            blocks.append({"type": "actions", "block_id": f"rule_{rule.id}", "elements": [
                _button("Edit", "home_rule_edit", str(rule.id)),
                _button(toggle[0], toggle[1], str(rule.id)),
                _button("Delete", "home_rule_delete", str(rule.id), "danger", confirm),
            ]})  # fmt: skip
    if viewer.can_manage:
        blocks += _quiet_controls(data)
    elif data.quiet:  # one block, only when a channel has quiet hours
        blocks.append(_text(views.quiet_text(data.quiet)))
    return [*blocks, *_pager(page, "rules", data.pages, "rules")]


def _quiet_controls(data: HomeData) -> list[dict[str, Any]]:
    """Quiet hours for those who may change them: *Set quiet hours*, then a block per channel with
    its *Turn off*, at most HOME_QUIET of them (the Home's block budget; the first block says how
    many more there are)."""
    shown = data.quiet[:HOME_QUIET]
    more = len(data.quiet) - len(shown)
    lines = ["*Quiet hours* (urgent rules post anyway)"]
    if not data.quiet:
        lines.append("None: messages are posted as they come.")
    elif more:
        lines.append(f"{len(shown)} of {len(data.quiet)} channels below; `/freshbooks quiet` lists them all.")
    lines.append("_Or type_ `/freshbooks quiet #channel 19:00-08:00 [weekends]`.")
    head = _text("\n".join(lines))
    head["accessory"] = _button("Set quiet hours", QUIET_SET_ACTION_ID, "set")
    blocks = [head]
    for hours in shown:
        block = _text(f"<#{hours.channel_id}> {hours.describe()}")
        block["accessory"] = _button("Turn off", QUIET_OFF_ACTION_ID, hours.channel_id)
        blocks.append(block)
    return blocks


def _attention(data: HomeData, viewer: Viewer, now: dt.datetime) -> list[dict[str, Any]]:
    blocks = [_header("Waiting for a person")]
    if not data.attention.items:
        blocks.append(_text("Nothing parked or failed."))
    for line in data.attention.items:
        block = _text(_delivery(line, now))
        if viewer.can_manage:
            block["accessory"] = _button("Replay", "home_replay", str(line.delivery_id), "primary")
        blocks.append(block)
    return [*blocks, *_pager(data.attention, "attention", data.pages, "deliveries")]


def _recent(data: HomeData, now: dt.datetime) -> list[dict[str, Any]]:
    recent = "\n".join(_delivery(line, now) for line in data.recent.items) or "None yet."
    return [
        _header("Recent deliveries"),
        _text(recent),
        *_pager(data.recent, "recent", data.pages, "deliveries"),
    ]


def _allowlist(data: HomeData, viewer: Viewer) -> list[dict[str, Any]]:
    """Who may change the setup; admins and owners see the controls to change it."""
    if not viewer.can_manage:
        return []
    blocks = [
        _header("Who can change the setup"),
        _text(
            "Workspace admins and owners, plus the people below. Everyone can use `/freshbooks help`, "
            "`status`, `rules` and `test`."
        ),
    ]
    if viewer.admin:
        blocks.append({"type": "actions", "block_id": "allow_users", "elements": [{
            "type": "multi_users_select", "action_id": "home_allow_users",
            "placeholder": {"type": "plain_text", "text": "Allow more people…"}}]})  # fmt: skip
    if not data.allowed.items:
        blocks.append(_text("Nobody else yet."))
    for user_id in data.allowed.items:
        block = _text(f"<@{user_id}>")
        if viewer.admin:
            block["accessory"] = _button("Remove", "home_disallow_user", user_id)
        blocks.append(block)
    return [*blocks, *_pager(data.allowed, "allowed", data.pages, "people")]


def build_home(
    data: HomeData, now: dt.datetime, viewer: Viewer, *, digests: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """`digests`: the Digests section's blocks (slack_ui.digest_home.home_section), after the rules."""
    divider = {"type": "divider"}
    blocks: list[dict[str, Any]] = [
        *_alerts(data.alerts),
        _header("FreshBooks connection"),
        _text(views.status_text(data.connections, now)),
        divider,
        *_rules(data, viewer),
        divider,
        *([*digests, divider] if digests else []),
        *_attention(data, viewer, now),
        divider,
        *_recent(data, now),
    ]
    allowlist = _allowlist(data, viewer)
    if allowlist:
        blocks += [divider, *allowlist]
    # The page sizes keep this far below the limit; a view over it would be refused whole by Slack.
    assert len(blocks) <= MAX_BLOCKS, f"App Home has {len(blocks)} blocks"
    return {"type": "home", "private_metadata": data.pages.encode(), "blocks": blocks}
