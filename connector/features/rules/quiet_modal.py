"""The quiet-hours modal of the App Home, pure: the view out; the submitted state in, a QuietRequest
or field errors out. No I/O: slack_ui.home_listeners opens it and saves through RuleService.set_quiet,
the same call as `/freshbooks quiet`, which also looks up the admin's time zone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connector.domain.quiet import QuietHoursError, QuietRequest, parse_time
from connector.features.rules.modal import CHANNEL_FILTER, FormErrors

CALLBACK_ID = "quiet_modal"
CHANNEL_BLOCK, START_BLOCK, END_BLOCK, WEEKENDS_BLOCK = "channel", "start", "end", "weekends"
DEFAULT_START, DEFAULT_END = "19:00", "08:00"
# Which field shows a QuietHoursError: a range that ends where it starts is the end's problem.
_FIELD_BLOCKS = {"channel": CHANNEL_BLOCK, "time": END_BLOCK}


@dataclass(frozen=True, slots=True)
class QuietForm:
    """The submitted state, as Slack sent it: HH:mm times (None where the picker was cleared)."""

    channel_id: str | None
    start: str | None
    end: str | None
    weekends: bool


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text}


def _element(values: Mapping[str, Any], block_id: str) -> dict[str, Any]:
    block = values.get(block_id) or {}
    element = next(iter(block.values()), None) if isinstance(block, Mapping) else None
    return element if isinstance(element, dict) else {}


def _string(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def form_from_state(values: Mapping[str, Any]) -> QuietForm:
    """view.state.values of a submission; anything missing or odd reads as empty."""
    options = _element(values, WEEKENDS_BLOCK).get("selected_options") or []
    return QuietForm(
        channel_id=_string(_element(values, CHANNEL_BLOCK).get("selected_conversation")),
        start=_string(_element(values, START_BLOCK).get("selected_time")),
        end=_string(_element(values, END_BLOCK).get("selected_time")),
        weekends=any(isinstance(o, dict) and o.get("value") == "weekends" for o in options),
    )


def _time(text: str | None, block: str, missing: str, errors: dict[str, str]) -> int | None:
    if text is None:
        errors[block] = missing
        return None
    try:
        return parse_time(text)
    except QuietHoursError as exc:
        errors[block] = str(exc).replace("`", "")  # field errors are plain text
        return None


def validate(form: QuietForm) -> QuietRequest | FormErrors:
    """The form as a QuietRequest (its own checks, as the command's), or every field error at once."""
    errors: dict[str, str] = {}
    if form.channel_id is None:
        errors[CHANNEL_BLOCK] = "Pick the channel to keep quiet."
    start = _time(form.start, START_BLOCK, "Pick when the quiet hours start.", errors)
    end = _time(form.end, END_BLOCK, "Pick when the quiet hours end.", errors)
    if errors or form.channel_id is None or start is None or end is None:
        return FormErrors(errors)
    try:
        return QuietRequest(form.channel_id, start, end, weekends=form.weekends)
    except QuietHoursError as exc:
        return FormErrors({_FIELD_BLOCKS.get(exc.field, END_BLOCK): str(exc).replace("`", "")})


_WEEKENDS_OPTION = {"text": _plain("Weekends too: all of Saturday and Sunday"), "value": "weekends"}


_INTRO = (
    "What is routed to the channel in its quiet hours waits, and goes out as one summary when they "
    "end; rules marked *urgent* post at once. New quiet hours replace the channel's old ones."
)
_ZONE_HINT = (
    "In your Slack profile's time zone, kept across daylight-saving changes; the end may be the next morning."
)


def _time_block(block_id: str, label: str, initial: str, hint: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {
        "type": "input",
        "block_id": block_id,
        "label": _plain(label),
        "element": {"type": "timepicker", "action_id": "time", "initial_time": initial},
    }
    if hint:
        block["hint"] = _plain(hint)
    return block


def quiet_modal() -> dict[str, Any]:
    """The form: which channel, from when to when (in the admin's Slack time zone), weekends too."""
    return {
        "type": "modal",
        "callback_id": CALLBACK_ID,
        "title": _plain("Set quiet hours"),
        "submit": _plain("Save"),
        "close": _plain("Cancel"),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": _INTRO}},
            {
                "type": "input",
                "block_id": CHANNEL_BLOCK,
                "label": _plain("Channel"),
                "element": {
                    "type": "conversations_select",
                    "action_id": "channel",
                    "placeholder": _plain("Pick a channel"),
                    "filter": CHANNEL_FILTER,
                },
            },
            _time_block(START_BLOCK, "Quiet from", DEFAULT_START),
            _time_block(END_BLOCK, "Until", DEFAULT_END, _ZONE_HINT),
            {
                "type": "input",
                "block_id": WEEKENDS_BLOCK,
                "optional": True,
                "label": _plain("Weekends"),
                "element": {"type": "checkboxes", "action_id": "weekends", "options": [_WEEKENDS_OPTION]},
            },
        ],
    }
