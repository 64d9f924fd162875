"""The /freshbooks slash command."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App

HELP_TEXT = (
    "*FreshBooks for Slack*\n"
    "`/freshbooks help`: this help\n"
    "More commands (connect, status, route, rules, audit, replay, test) are on their way."
)


def handle_freshbooks(ack: Ack, command: dict[str, Any]) -> None:
    text = (command.get("text") or "").strip()
    sub = text.split(maxsplit=1)[0].lower() if text else "help"
    if sub == "help":
        ack(response_type="ephemeral", text=HELP_TEXT)
        return
    ack(response_type="ephemeral", text=f"Unknown subcommand `{sub[:30]}`.\n\n{HELP_TEXT}")


def register(app: App) -> None:
    app.command("/freshbooks")(handle_freshbooks)
