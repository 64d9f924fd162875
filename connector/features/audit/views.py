"""Pure builders for the audit and replay answers (Slack mrkdwn); the CLI prints its own plain text."""

from __future__ import annotations

import datetime as dt
from typing import Any

from connector.features.audit.replay import BulkPlan, BulkResult, Outcome, ReplayAnswer, describe
from connector.features.audit.search import (
    AUDIT_USAGE,
    AuditHit,
    AuditQuery,
    AuditResult,
    DeliveryHistory,
    HistoryLine,
    describe_state,
)
from connector.features.permissions import refusal
from connector.pipeline.render.formatting import escape, format_money, one_line

REFUSED = refusal("replay deliveries")
CONFIRM_ACTION = "freshbooks_replay_confirm"
CANCEL_ACTION = "freshbooks_replay_cancel"


def _when(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def hit_line(hit: AuditHit) -> str:
    parts = [f"`D{hit.delivery_id}`" if hit.delivery_id is not None else "`—`", f"`{hit.event_name}`"]
    if hit.number:
        parts.append(escape(one_line(hit.number))[:40])
    if hit.counterparty:
        parts.append(escape(one_line(hit.counterparty))[:60])
    if hit.amount is not None:
        parts.append(format_money(hit.amount))
    if hit.channel_id:
        parts.append(f"<#{hit.channel_id}>")
    state = escape(describe_state(hit))
    if hit.permalink and hit.state == "delivered":
        state = f"<{hit.permalink}|{state}>"
    parts.append(f"*{state}*" if hit.state in ("failed", "parked") else state)
    if hit.attempts > 1:
        parts.append(f"{hit.attempts} attempts")
    parts.append(_when(hit.received_at))
    return " · ".join(parts)


def search_text(result: AuditResult, query: AuditQuery) -> str:
    if result.too_slow:
        return (
            "That search matches too much of the audit trail to finish in time. Narrow it: a date "
            "(`since:7d`), a kind (`invoice.paid`), a status or a `#channel`, or a rarer word."
        )
    if not result.hits:
        hint = "" if not query.is_empty else "\n\n" + AUDIT_USAGE
        return "Nothing in the audit trail matches." + hint
    header = "Newest first" + (" (older matches exist: narrow the search)" if result.more else "") + ":"
    lines = [header, *(f"• {hit_line(hit)}" for hit in result.hits)]
    lines.append("Replay one with `/freshbooks replay D123`; `/freshbooks audit D123` shows its history.")
    return "\n".join(lines)


def history_text(history: DeliveryHistory) -> str:
    lines = [hit_line(history.hit)]
    for line in history.lines:
        who = f" by <@{line.actor}>" if line.actor and line.actor.startswith(("U", "W")) else ""
        if line.kind == "delivery_attempt":
            what = f"attempt {line.detail.get('attempt', '?')}: {line.outcome}"
            if line.detail.get("error"):
                what += f" (`{escape(str(line.detail['error']))[:64]}`)"
        elif line.kind == "replay":
            what = f"replay {line.outcome}{who}"
        else:
            what = f"{line.kind}: {line.outcome}{who}"
        lines.append(f"• {_when(line.at)}  {what}")
    if not history.lines:
        lines.append("No attempt yet.")
    return "\n".join(lines)


def replay_answer_text(answer: ReplayAnswer, asked_id: int) -> str:
    text = describe(answer, asked_id, lambda channel_id: f"<#{channel_id}>")
    match answer.outcome:
        case Outcome.REQUEUED:
            return f"{text}; it goes out in a moment."
        case Outcome.NOT_FOUND:
            return f"{text}. `/freshbooks audit` finds ids."
        case _:
            return f"{text}."


def _buttons(confirm_text: str, value: str, *, danger: bool) -> dict[str, Any]:
    confirm: dict[str, Any] = {
        "type": "button",
        "action_id": CONFIRM_ACTION,
        "text": {"type": "plain_text", "text": confirm_text},
        "value": value,
        "style": "danger" if danger else "primary",
    }
    cancel = {
        "type": "button",
        "action_id": CANCEL_ACTION,
        "text": {"type": "plain_text", "text": "Cancel"},
        "value": "cancel",
    }
    return {"type": "actions", "elements": [confirm, cancel]}


def confirm_repost(answer: ReplayAnswer, value: str) -> dict[str, Any]:
    """Already delivered: posting again duplicates a message people have seen; ask explicitly."""
    seen = f" (<{answer.permalink}|see it>)" if answer.permalink else ""
    text = (
        f"D{answer.delivery_id} was already delivered to <#{answer.channel_id}>{seen}. "
        "Posting it again puts a second copy in the channel."
    )
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            _buttons("Post it again", value, danger=True),
        ],
    }


def _scope(plan: BulkPlan) -> str:
    since = f" since {plan.since.isoformat()}" if plan.since else ""
    where = f"to <#{plan.to_channel}>" if plan.to_channel else "to their channels"
    return f"{since} {where}"


def confirm_bulk(plan: BulkPlan, value: str) -> dict[str, Any]:
    noun = "delivery" if plan.count == 1 else "deliveries"
    text = f"{plan.count} failed or parked {noun}{_scope(plan)} will be sent again."
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            _buttons(f"Replay {plan.count}", value, danger=False),
        ],
    }


def nothing_failed(plan: BulkPlan) -> str:
    since = f" since {plan.since.isoformat()}" if plan.since else ""
    return f"Nothing failed or parked{since}: nothing to replay."


def bulk_done(plan: BulkPlan, result: BulkResult) -> str:
    text = (
        f"Queued {result.requeued} of {plan.count} {'delivery' if plan.count == 1 else 'deliveries'} again."
    )
    if result.skipped:
        text += (
            f" {result.skipped} were already delivered or waiting in that channel, so they were left alone."
        )
    return text


def digest_trail_text(lines: list[HistoryLine]) -> str:
    """`/freshbooks audit digest`: what became of each digest, newest first."""
    if not lines:
        return "No digest in the audit trail yet. Schedule one with `/freshbooks digest #channel daily`."
    shown = ["Digests, newest first:"]
    for line in lines:
        number = line.kind.partition(":")[2]
        what = f"digest #{number}" if number.isdigit() else "digest now"
        parts = [_when(line.at), what, f"*{escape(line.outcome)}*"]
        if line.detail.get("channel"):
            parts.append(f"<#{escape(str(line.detail['channel']))}>")
        if line.detail.get("period_start"):
            parts.append(f"period from {escape(str(line.detail['period_start']))[:16]} UTC")
        if line.detail.get("error"):
            parts.append(f"`{escape(str(line.detail['error']))[:64]}`")
        if line.actor and line.actor.startswith(("U", "W")):
            parts.append(f"by <@{line.actor}>")
        shown.append("• " + " · ".join(parts))
    return "\n".join(shown)
