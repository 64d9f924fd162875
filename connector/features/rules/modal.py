"""The rule modal, pure: a form in, a Slack view out; the submitted state in, a RouteSpec or field errors out.

No I/O and no clock reads (`now` is passed in). The listeners in slack_ui.home_listeners open it,
preview it (views.update) and save it; whether the bot can post in the channel is checked there.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from connector.domain.currencies import ISO_4217
from connector.domain.rules import DEFAULT_COLLAPSE_AT, RouteSpec, Rule
from connector.features.rules.preview import SCAN_CAP, Preview
from connector.features.rules.syntax import (
    MAX_ID_DIGITS,
    TOO_LARGE,
    AmountProblem,
    RouteSyntaxError,
    amount_problem,
    ascii_spelling,
    parse_amount,
    parse_collapse,
    parse_patterns,
)
from connector.pipeline.render.formatting import clip, format_date, format_money, one_line
from connector.pipeline.route.matching import KINDS, facts_of, pattern_matches

CALLBACK_ID = "rule_modal"
PREVIEW_ACTION_ID = "rule_modal_preview"
CHANNEL_BLOCK = "channel"
MIN_BLOCK, MAX_BLOCK, CURRENCY_BLOCK = "min", "max", "currency"
BILLABLE_BLOCK, CLIENT_BLOCK, VENDOR_BLOCK = "billable", "client", "vendor"
COLLAPSE_BLOCK, URGENT_BLOCK = "collapse", "urgent"
PREVIEW_BLOCK = "preview"
NAME_MAX = 100
# Channels a rule (or quiet hours) can name: public and private, never a DM or a bot's conversation.
CHANNEL_FILTER: dict[str, Any] = {"include": ["public", "private"], "exclude_bot_users": True}
AMOUNT_INPUT_MAX = 40  # characters the amount inputs take; "1,234,567.89" style needs room for commas

# One checkbox group per kind: Slack allows at most 10 options in a checkboxes element, and the
# events (17, plus "every event of this kind") do not fit in one.
EVENT_BLOCKS: dict[str, str] = {kind: f"events_{kind}" for kind in KINDS}
_KIND_LABELS = {"invoice": "Invoices", "payment": "Payments", "bill": "Bills", "expense": "Expenses"}
EVENT_LABELS: dict[str, str] = {
    "invoice": "Every invoice event",
    "invoice.create": "Created",
    "invoice.update": "Updated",
    "invoice.sendByEmail": "Sent by email",
    "invoice.delete": "Deleted",
    "invoice.paid": "Paid in full",
    "invoice.partially_paid": "Partly paid",
    "invoice.overdue": "Overdue",
    "payment": "Every payment event",
    "payment.create": "Received",
    "payment.update": "Updated",
    "payment.delete": "Deleted",
    "bill": "Every bill event",
    "bill.create": "Created",
    "bill.update": "Updated",
    "bill.delete": "Deleted",
    "bill.paid": "Paid",
    "expense": "Every expense event",
    "expense.create": "Created",
    "expense.update": "Updated",
    "expense.delete": "Deleted",
}
_ROLE_KINDS = {"client": ("invoice", "payment"), "vendor": ("bill", "expense")}


@dataclass(frozen=True, slots=True)
class RuleForm:
    """What the modal shows or what was submitted, as typed (so a re-render keeps the person's input)."""

    rule_id: int | None = None  # None: a new rule
    patterns: tuple[str, ...] = ()  # checked boxes: kinds and/or exact event names
    channel_id: str | None = None
    min_text: str = ""
    max_text: str = ""
    currency: str = ""
    billable: bool = False
    client: str = ""
    vendor: str = ""
    collapse: str = str(DEFAULT_COLLAPSE_AT)  # a burst size, or "off"
    urgent: bool = False
    from_command: bool = False  # opened by /freshbooks route: default to the channel it was run in


@dataclass(frozen=True, slots=True)
class FormErrors:
    """Field errors, keyed by input block id, for `response_action: errors`."""

    errors: dict[str, str] = field(default_factory=dict)


# -- form <-> rule ------------------------------------------------------------------------------


def _kinds_of(patterns: tuple[str, ...]) -> set[str]:
    return {facts_of(name, None).kind for name in _event_names(patterns)}


def _event_names(patterns: tuple[str, ...]) -> list[str]:
    return [name for name in EVENT_LABELS if "." in name and any(pattern_matches(p, name) for p in patterns)]


def form_from_rule(rule: Rule) -> RuleForm:
    """A saved rule as the edit form shows it."""
    patterns = KINDS if rule.patterns == ("all",) else rule.patterns
    # The rule keeps one name for both roles; show it where the rule's events use it (client first).
    client_side = bool(_kinds_of(patterns) & {"invoice", "payment"})
    name = rule.counterparty or ""
    return RuleForm(
        rule_id=rule.id,
        patterns=tuple(patterns),
        channel_id=rule.channel_id,
        min_text=amount_text(rule.min_amount),
        max_text=amount_text(rule.max_amount),
        currency=rule.currency or "",
        billable=rule.billable_only,
        client=name if client_side else "",
        vendor="" if client_side else name,
        collapse="off" if rule.collapse_at is None else str(rule.collapse_at),
        urgent=rule.urgent,
    )


def amount_text(amount: Decimal | None, max_length: int = AMOUNT_INPUT_MAX) -> str:
    """A saved amount as its input shows it: with thousands separators when they fit, else plain
    digits (a 31-digit minimum is 41 characters with commas): Slack refuses to open a view whose
    initial value is longer than its input's max_length. Pure."""
    if amount is None:
        return ""
    grouped = f"{amount:,f}"
    return grouped if len(grouped) <= max_length else f"{amount:f}"


def _selected(values: Mapping[str, Any], block_id: str) -> dict[str, Any]:
    block = values.get(block_id) or {}
    element = next(iter(block.values()), None) if isinstance(block, Mapping) else None
    return element if isinstance(element, dict) else {}


def _text(values: Mapping[str, Any], block_id: str) -> str:
    return str(_selected(values, block_id).get("value") or "").strip()


def _checked(values: Mapping[str, Any], block_id: str) -> list[str]:
    options = _selected(values, block_id).get("selected_options") or []
    return [str(option.get("value")) for option in options if isinstance(option, dict)]


def form_from_state(values: Mapping[str, Any], *, metadata: str | None) -> RuleForm:
    """The submitted (or previewed) view state as a form; missing fields read as empty."""
    meta = read_metadata(metadata)
    patterns = tuple(p for kind in KINDS for p in _checked(values, EVENT_BLOCKS[kind]))
    channel = _selected(values, CHANNEL_BLOCK).get("selected_conversation")
    return RuleForm(
        rule_id=meta.get("rule_id"),
        patterns=patterns,
        channel_id=str(channel) if channel else None,
        min_text=_text(values, MIN_BLOCK),
        max_text=_text(values, MAX_BLOCK),
        currency=_text(values, CURRENCY_BLOCK),
        billable=bool(_checked(values, BILLABLE_BLOCK)),
        client=_text(values, CLIENT_BLOCK),
        vendor=_text(values, VENDOR_BLOCK),
        collapse=_text(values, COLLAPSE_BLOCK),
        urgent=bool(_checked(values, URGENT_BLOCK)),
        from_command=bool(meta.get("from_command")),
    )


def metadata_of(form: RuleForm) -> str:
    return json.dumps({"rule_id": form.rule_id, "from_command": form.from_command}, separators=(",", ":"))


def read_metadata(text: str | None) -> dict[str, Any]:
    """The modal's private_metadata; anything unreadable is a new rule (the team scopes every save)."""
    try:
        meta = json.loads(text or "{}")
    except ValueError:
        meta = {}
    if not isinstance(meta, dict):
        meta = {}
    rule_id = meta.get("rule_id")
    valid_id = isinstance(rule_id, int) and not isinstance(rule_id, bool) and 0 < rule_id < 10**MAX_ID_DIGITS
    return {
        "rule_id": rule_id if valid_id else None,
        "from_command": meta.get("from_command") is True,
    }


# -- validation ---------------------------------------------------------------------------------

_AMOUNT_HINT = "Write an amount like 5000, 5,000 or 5000.50."


def _amount_problem(text: str) -> str:
    """The modal's wording of syntax.amount_problem: it names the field, not the text."""
    match amount_problem(text):
        case AmountProblem.NEGATIVE:
            return "Amounts here are zero or more."
        case AmountProblem.CURRENCY_SYMBOL:
            return "Leave out the currency symbol; set the currency below instead."
        case AmountProblem.OTHER_SCRIPT:
            return f"Write it with the digits 0-9, like {(ascii_spelling(text) or '')[:20]}."
        case AmountProblem.TOO_LARGE:
            return f"That is too large. {TOO_LARGE}"
        case AmountProblem.DECIMALS:
            return f"Use at most two decimal places. {_AMOUNT_HINT}"
        case AmountProblem.COMMAS:
            return "Commas go between groups of three digits, like 1,234,567.89."
        case AmountProblem.MISSING | AmountProblem.NOT_AN_AMOUNT:
            return f"That is not an amount. {_AMOUNT_HINT}"


def _amount(text: str, block: str, errors: dict[str, str]) -> Decimal | None:
    if not text:
        return None
    try:
        return parse_amount(text)
    except RouteSyntaxError:
        errors[block] = _amount_problem(text)
        return None


def _patterns(form: RuleForm, errors: dict[str, str]) -> tuple[str, ...]:
    checked = [p for p in form.patterns if p in EVENT_LABELS]
    if not checked:
        errors[EVENT_BLOCKS["invoice"]] = "Pick at least one event to post (in any of the four groups)."
        return ()
    patterns = parse_patterns(",".join(checked))  # canonical, duplicates and covered ones dropped
    return ("all",) if set(KINDS) <= set(patterns) else patterns


def _currency(text: str, errors: dict[str, str]) -> str | None:
    if not text:
        return None
    code = text.upper()
    if code not in ISO_4217:
        shown = one_line(text)[:12]
        errors[CURRENCY_BLOCK] = (
            f"{shown} is not a currency code I know. Use an ISO code like USD, EUR or CAD."
        )
        return None
    return code


def _counterparty(form: RuleForm, kinds: set[str], errors: dict[str, str]) -> str | None:
    if form.client and form.vendor:
        errors[VENDOR_BLOCK] = "Fill in a client or a vendor, not both: a rule filters on one name."
        return None
    role = "client" if form.client else "vendor" if form.vendor else None
    if role is None:
        return None
    block = CLIENT_BLOCK if role == "client" else VENDOR_BLOCK
    name = " ".join((form.client or form.vendor).split())
    if len(name) > NAME_MAX:
        errors[block] = f"Names are at most {NAME_MAX} characters."
        return None
    wanted = _ROLE_KINDS[role]
    if kinds and not kinds & set(wanted):
        errors[block] = (
            f"A {role} name filters {wanted[0]} and {wanted[1]} events, and this rule picks none of them."
        )
        return None
    return name


def validate(form: RuleForm) -> RouteSpec | FormErrors:
    """The form as a RouteSpec, or every field error at once (Slack shows each under its field)."""
    errors: dict[str, str] = {}
    patterns = _patterns(form, errors)
    kinds = _kinds_of(patterns) if patterns else set()
    if not form.channel_id:
        errors[CHANNEL_BLOCK] = "Pick the channel to post in."
    low = _amount(form.min_text, MIN_BLOCK, errors)
    high = _amount(form.max_text, MAX_BLOCK, errors)
    if low is not None and high is not None and low > high:
        errors[MAX_BLOCK] = f"The maximum is below the minimum ({low:,}), so nothing could match."
    currency = _currency(form.currency, errors)
    if form.billable and kinds and "expense" not in kinds:
        errors[BILLABLE_BLOCK] = "This only filters expenses, and this rule picks no expense event."
    counterparty = _counterparty(form, kinds, errors)
    collapse_at: int | None = DEFAULT_COLLAPSE_AT
    try:
        collapse_at = parse_collapse(form.collapse or str(DEFAULT_COLLAPSE_AT))
    except RouteSyntaxError as exc:
        errors[COLLAPSE_BLOCK] = exc.problem.replace("`", "")
    if errors:
        return FormErrors(errors)
    assert form.channel_id is not None
    return RouteSpec(
        patterns=patterns,
        channel_id=form.channel_id,
        channel_name=None,
        min_amount=low,
        max_amount=high,
        currency=currency,
        billable_only=form.billable,
        counterparty=counterparty,
        collapse_at=collapse_at,
        urgent=form.urgent,
    )


def draft_rule(spec: RouteSpec, rule_id: int | None) -> Rule:
    """The rule being edited, unsaved, for the preview."""
    return Rule(
        id=rule_id or 0,
        patterns=spec.patterns,
        channel_id=spec.channel_id,
        min_amount=spec.min_amount,
        max_amount=spec.max_amount,
        currency=spec.currency,
        billable_only=spec.billable_only,
        counterparty=spec.counterparty,
        collapse_at=spec.collapse_at,
        urgent=spec.urgent,
    )


# -- the view -----------------------------------------------------------------------------------


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text}


def _option(value: str) -> dict[str, Any]:
    option: dict[str, Any] = {"text": _plain(EVENT_LABELS[value]), "value": value}
    if "." in value:
        option["description"] = _plain(value)
    return option


def _events_block(kind: str, form: RuleForm) -> dict[str, Any]:
    values = [kind, *(name for name in EVENT_LABELS if name.startswith(f"{kind}."))]
    element: dict[str, Any] = {
        "type": "checkboxes",
        "action_id": "events",
        "options": [_option(v) for v in values],
    }
    checked = [_option(v) for v in values if v in form.patterns]
    if checked:
        element["initial_options"] = checked
    return {
        "type": "input",
        "block_id": EVENT_BLOCKS[kind],
        "optional": True,
        "label": _plain(_KIND_LABELS[kind]),
        "element": element,
    }


def _text_input(
    block_id: str, label: str, value: str, placeholder: str, *, hint: str | None = None, max_length: int = 40
) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "plain_text_input",
        "action_id": "value",
        "placeholder": _plain(placeholder),
        # Never below the value shown: Slack would refuse to open the view at all.
        "max_length": max(max_length, len(value)),
    }
    if value:
        element["initial_value"] = value
    block: dict[str, Any] = {
        "type": "input",
        "block_id": block_id,
        "optional": True,
        "label": _plain(label),
        "element": element,
    }
    if hint:
        block["hint"] = _plain(hint)
    return block


def _channel_block(form: RuleForm) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "conversations_select",
        "action_id": "channel",
        "placeholder": _plain("Pick a channel"),
        "filter": CHANNEL_FILTER,
    }
    if form.channel_id:
        element["initial_conversation"] = form.channel_id
    elif form.from_command:
        element["default_to_current_conversation"] = True
    return {
        "type": "input",
        "block_id": CHANNEL_BLOCK,
        "label": _plain("Post to"),
        "element": element,
        "hint": _plain("A private channel needs the app invited first: /invite @FreshBooks"),
    }


_BILLABLE_OPTION = {"text": _plain("Only billable expenses (tied to a client)"), "value": "billable"}


def _billable_block(form: RuleForm) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "checkboxes", "action_id": "billable", "options": [_BILLABLE_OPTION]}
    if form.billable:
        element["initial_options"] = [_BILLABLE_OPTION]
    return {
        "type": "input",
        "block_id": BILLABLE_BLOCK,
        "optional": True,
        "label": _plain("Expenses"),
        "element": element,
    }


_URGENT_OPTION = {
    "text": _plain("Urgent: post at once, even in the channel's quiet hours"),
    "value": "urgent",
}


def _urgent_block(form: RuleForm) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "checkboxes", "action_id": "urgent", "options": [_URGENT_OPTION]}
    if form.urgent:
        element["initial_options"] = [_URGENT_OPTION]
    return {
        "type": "input",
        "block_id": URGENT_BLOCK,
        "optional": True,
        "label": _plain("Urgency"),
        "element": element,
    }


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}


def _short_date(moment: dt.datetime, now: dt.datetime) -> str:
    text = format_date(moment.date())
    return text.rsplit(",", 1)[0] if moment.year == now.year else text


def preview_text(preview: Preview, now: dt.datetime) -> str:
    """The preview as mrkdwn: how many, where, what kind, and a few examples."""
    channel = f"<#{preview.channel_id}>"
    least = "at least " if preview.capped else ""
    plural = "" if preview.matched == 1 else "s"
    lines = [
        f"Over the last {preview.days} days this rule would have posted {least}*{preview.matched:,}* "
        f"message{plural} to {channel}."
    ]
    if preview.matched == 0:
        lines.append(
            f"None of the {preview.scanned:,} events recorded in that time matched."
            if preview.scanned
            else "No such event was recorded in that time."
        )
    if len(preview.by_event) > 1:
        lines.append(", ".join(f"`{name}` {count:,}" for name, count in preview.by_event[:6]))
    if preview.already_posted:
        lines.append(f"{preview.already_posted:,} of them are in {channel} already.")
    if preview.capped and preview.oldest_scanned is not None:
        back_to = _short_date(preview.oldest_scanned, now)
        lines.append(f"Only the newest {SCAN_CAP:,} events (back to {back_to}) were checked.")
    for example in preview.examples:
        parts = [_short_date(example.at, now), f"`{example.event_name}`"]
        if example.counterparty:
            parts.append(clip(one_line(example.counterparty), 40))
        if example.amount is not None:
            parts.append(format_money(example.amount))
        lines.append("• " + " · ".join(parts))
    return "\n".join(lines)


def _preview_blocks(
    preview: Preview | None, problems: list[str] | None, now: dt.datetime | None
) -> list[dict[str, Any]]:
    button = {
        "type": "button",
        "action_id": PREVIEW_ACTION_ID,
        "text": _plain("Preview" if preview is None else "Preview again"),
        "value": "preview",
    }
    intro = _mrkdwn("*Preview* what this rule would have posted over the last 30 days, before saving it.")
    intro["block_id"] = PREVIEW_BLOCK
    intro["accessory"] = button
    blocks = [{"type": "divider"}, intro]
    if problems:
        blocks.append(_mrkdwn(":warning: Fix the form first:\n" + "\n".join(f"• {p}" for p in problems)))
    elif preview is not None and now is not None:
        blocks.append(_mrkdwn(preview_text(preview, now)))
    return blocks


def rule_modal(
    form: RuleForm,
    *,
    now: dt.datetime | None = None,
    preview: Preview | None = None,
    problems: list[str] | None = None,
) -> dict[str, Any]:
    """The create or edit modal; `preview` or `problems` fill its preview area (after the button)."""
    title = "New routing rule" if form.rule_id is None else f"Edit rule #{form.rule_id}"
    blocks: list[dict[str, Any]] = [
        _mrkdwn(
            "Pick the FreshBooks events to post and where. The filters are optional; amounts are "
            "compared in each event's own currency, never converted."
        ),
        *(_events_block(kind, form) for kind in KINDS),
        _channel_block(form),
        _text_input(MIN_BLOCK, "Minimum amount", form.min_text, "e.g. 5,000", max_length=AMOUNT_INPUT_MAX),
        _text_input(MAX_BLOCK, "Maximum amount", form.max_text, "e.g. 50,000", max_length=AMOUNT_INPUT_MAX),
        _text_input(
            CURRENCY_BLOCK,
            "Currency",
            form.currency,
            "e.g. USD",
            hint="Leave it empty for every currency.",
            max_length=3,
        ),
        _billable_block(form),
        _text_input(
            CLIENT_BLOCK, "Only for client", form.client, "Client name, e.g. Acme Inc", max_length=NAME_MAX
        ),
        _text_input(
            VENDOR_BLOCK,
            "Only for vendor",
            form.vendor,
            "Vendor name, e.g. Office Supply Co",
            max_length=NAME_MAX,
        ),
        _text_input(
            COLLAPSE_BLOCK,
            "Collapse bursts at",
            form.collapse,
            f"e.g. {DEFAULT_COLLAPSE_AT}, or off",
            hint="When this many messages wait for the channel at once, they go out as one summary "
            '(the rest in its thread). "off" posts each one.',
            max_length=4,
        ),
        _urgent_block(form),
        *_preview_blocks(preview, problems, now),
    ]
    return {
        "type": "modal",
        "callback_id": CALLBACK_ID,
        "title": _plain(title),
        "submit": _plain("Save rule"),
        "close": _plain("Cancel"),
        "private_metadata": metadata_of(form),
        "blocks": blocks,
    }


def message_modal(title: str, text: str) -> dict[str, Any]:
    """A modal that only says something (saved, refused, gone); it has no inputs, so no submit."""
    return {
        "type": "modal",
        "title": _plain(title[:24]),
        "close": _plain("Close"),
        "blocks": [_mrkdwn(text)],
    }
