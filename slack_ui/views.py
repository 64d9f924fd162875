"""Pure builders for what the Slack side shows. Data in, text or blocks out; no I/O, no clock reads."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from connector.domain.quiet import QuietHours
from connector.domain.rules import DEFAULT_COLLAPSE_AT, Rule
from connector.features.status import ConnectionReport
from connector.freshbooks.models import parse_invoice
from connector.pipeline.render.formatting import Message, RenderContext, escape
from connector.pipeline.render.messages import render

HELP_TEXT = (
    "*FreshBooks for Slack*\n"
    "`/freshbooks connect`: link a FreshBooks business to this workspace (admins)\n"
    "`/freshbooks status`: connection, webhooks and token health, last event received\n"
    "`/freshbooks route EVENTS #channel [min AMOUNT] [max AMOUNT] [currency CODE] [billable]`: "
    "send events to a channel (admins), e.g. `/freshbooks route invoice.create #exec-alerts min 5000`; "
    "`/freshbooks route` alone opens a form with a preview\n"
    "`/freshbooks rules`: list the rules; `/freshbooks unroute RULE-ID`: remove one (admins)\n"
    "`/freshbooks quiet #channel 19:00-08:00 [weekends]` or `/freshbooks quiet #channel off`: quiet hours "
    "in your time zone; what arrives in them goes out as one summary when they end (admins); "
    "`/freshbooks quiet` lists them\n"
    "`/freshbooks audit [WORDS] [KIND] [STATUS] [#channel] [since:DATE]`: search what arrived and what was "
    "posted, e.g. `/freshbooks audit acme invoice.paid since:30d` (admins)\n"
    "`/freshbooks replay D123 [to #channel]` or `/freshbooks replay failed [to #channel] [since DATE]`: "
    "send deliveries again (admins)\n"
    "`/freshbooks digest #channel daily|weekly [monday] [at HH:MM]`: a cash-flow digest in your time "
    "zone (admins); `/freshbooks digests`: list them; `/freshbooks undigest N`: remove one (admins); "
    "`/freshbooks digest now [#channel]`: post one at once (admins)\n"
    "`/freshbooks test [#channel]`: post a sample message to see what notifications look like\n"
    "`/freshbooks disconnect`: unlink FreshBooks and remove its webhooks (admins)\n"
    "`/freshbooks help`: this help\n"
    "_(admins)_: workspace admins and owners, and the people they allow in the app's Home tab"
)


def ago(then: dt.datetime, now: dt.datetime) -> str:
    seconds = int((now - then).total_seconds())
    if seconds < 0:
        return "just now"
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return "just now"


def _token_line(report: ConnectionReport, now: dt.datetime) -> str:
    if report.status == "needs_reconnect":
        reason = escape(report.status_reason or "FreshBooks refused the token")
        return f":x: needs reconnecting ({reason}): an admin runs `/freshbooks connect`"
    if report.token_expires_at is None:
        return ":white_check_mark: valid"
    if report.token_expires_at <= now:
        return ":warning: expired; it is refreshed on the next use"
    hours = (report.token_expires_at - now).total_seconds() / 3600
    return f":white_check_mark: valid for {hours:.0f} h, refreshed automatically"


def status_text(reports: list[ConnectionReport], now: dt.datetime) -> str:
    if not reports:
        return "FreshBooks is not connected to this workspace. An admin can run `/freshbooks connect`."
    parts: list[str] = []
    for report in reports:
        webhooks = f"{report.callbacks_verified}/{report.callbacks_expected} verified"
        icon = ":white_check_mark:" if report.callbacks_verified == report.callbacks_expected else ":warning:"
        last = ago(report.last_event_at, now) if report.last_event_at else "none yet"
        parts.append(
            f"*{escape(report.business_name)}*\n"
            f"• Webhooks: {icon} {webhooks}\n"
            f"• Token: {_token_line(report, now)}\n"
            f"• Last event received: {last}"
        )
    return "\n\n".join(parts)


def rule_line(rule: Rule) -> str:
    """One rule, as the person who made it would say it."""
    parts = [f"`#{rule.id}`", ", ".join(f"`{p}`" for p in rule.patterns), f"→ <#{rule.channel_id}>"]
    if rule.min_amount is not None:
        parts.append(f"min {rule.min_amount:,}")
    if rule.max_amount is not None:
        parts.append(f"max {rule.max_amount:,}")
    if rule.currency:
        parts.append(f"currency {rule.currency}")
    if rule.billable_only:
        parts.append("billable only")
    if rule.counterparty:
        parts.append(f"for {escape(rule.counterparty)}")
    if rule.collapse_at is None:
        parts.append("collapse off")
    elif rule.collapse_at != DEFAULT_COLLAPSE_AT:
        parts.append(f"collapse {rule.collapse_at}")
    if rule.urgent:
        parts.append("urgent")
    if rule.paused:
        parts.append("_(paused)_")
    return " ".join(parts)


def quiet_set_text(hours: QuietHours) -> str:
    """What an admin is told once quiet hours are set (command or App Home)."""
    return (
        f"Quiet hours for <#{hours.channel_id}>: {hours.describe()}. What is routed there in them waits "
        "and goes out as one summary when they end; rules marked `urgent` post at once."
    )


def quiet_text(hours: Sequence[QuietHours]) -> str:
    """The channels' quiet hours, one line each."""
    if not hours:
        return "No quiet hours: messages are posted as they come."
    lines = [f"• <#{h.channel_id}> {h.describe()}" for h in hours]
    return "*Quiet hours* (urgent rules post anyway)\n" + "\n".join(lines)


def rules_text(rules: list[Rule]) -> str:
    if not rules:
        return (
            "No rules yet, so nothing is posted. Add one with `/freshbooks route`, "
            "e.g. `/freshbooks route invoice #accounting`."
        )
    return "*Routing rules*\n" + "\n".join(rule_line(rule) for rule in rules)


SAMPLE_INVOICE = {
    "id": 1,
    "invoice_number": "SAMPLE-0042",
    "organization": "Example Client Ltd",
    "amount": {"amount": "7500.00", "code": "USD"},
    "outstanding": {"amount": "7500.00", "code": "USD"},
    "currency_code": "USD",
    "status": 2,
    "v3_status": "sent",
    "due_date": "2026-12-31",
    "vis_state": 0,
}


def sample_message() -> Message:
    """What an invoice notification looks like, with made-up data and a marker saying so."""
    message = render(
        "invoice.create",
        parse_invoice(SAMPLE_INVOICE),
        RenderContext(account_id="sample", delivery_key="sample"),
    )
    note = {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": "_Sample message with made-up data._"}],
    }
    blocks = [b for b in message.blocks if b.get("type") != "actions"]  # no link to a made-up invoice
    return Message(text="(Sample) " + message.text, blocks=[*blocks, note], metadata={})
