"""Builds the Bolt app from the settings. Listeners live beside this module; views are pure builders."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from slack_bolt import App
from slack_sdk import WebClient

from connector.settings import Settings
from slack_ui.commands import CommandServices
from slack_ui.commands import register as register_commands
from slack_ui.events import register as register_events
from slack_ui.home_listeners import register as register_home

log = logging.getLogger(__name__)


def build_slack_client(settings: Settings) -> WebClient | None:
    """The Web API client for single-workspace mode; None until Slack is configured that way."""
    if settings.slack_mode != "single" or settings.slack_bot_token is None:
        return None
    # No retry handlers: the delivery engine owns retries, and slack_sdk's default
    # connection-error handler would re-post blindly and duplicate messages.
    return WebClient(
        token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url, retry_handlers=[]
    )


def build_bolt_app(settings: Settings, *, client: WebClient | None, commands: CommandServices) -> App | None:
    """The Bolt app for the configured Slack mode, or None when Slack is not configured yet."""
    mode = settings.slack_mode
    if mode is None:
        return None
    assert settings.slack_signing_secret is not None
    if mode == "multi" or client is None:
        # Installing into many workspaces needs the encrypted installation store; until that is in,
        # refuse clearly instead of letting Bolt fall back to its file-based OAuth stores.
        log.error(
            "SLACK_CLIENT_ID/SLACK_CLIENT_SECRET (multi-workspace install) is not supported by this "
            "version yet; set SLACK_BOT_TOKEN for a single workspace instead"
        )
        return None
    app = App(
        signing_secret=settings.slack_signing_secret.get_secret_value(),
        client=client,
        # Do not call auth.test at import time: the app must start even when Slack is unreachable.
        token_verification_enabled=False,
        # Bolt's default pool of 5 starves under load and then misses Slack's 3 s ack.
        listener_executor=ThreadPoolExecutor(max_workers=32, thread_name_prefix="bolt"),
    )
    register_commands(app, commands)
    register_events(app, commands.rules)
    register_home(app, commands.home, commands.clock)
    return app
