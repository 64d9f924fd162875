"""Builds the Bolt app from the settings. Listeners live beside this module; views are pure builders."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from slack_bolt import App
from slack_sdk import WebClient

from connector.domain.clock import Clock
from connector.domain.settings import Settings
from connector.slack.slack_tokens import SlackTokens, web_client
from slack_ui.commands import CommandServices
from slack_ui.commands import register as register_commands
from slack_ui.events import register as register_events
from slack_ui.home_listeners import register as register_home
from slack_ui.oauth import (
    InstallationAuthorize,
    InstallConfig,
    InstallFlow,
    build_install_flow,
    forget_on_uninstall,
)
from storage import installations
from storage.crypto import Cipher
from storage.db import Database
from storage.installations import EncryptedInstallationStore, HashedOAuthStateStore

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


@dataclass(frozen=True)
class SlackAccess:
    """How the worker reaches Slack: the one client of single-workspace mode, or each installed
    workspace's own token (multi-workspace mode), renewed before it expires."""

    client: WebClient | None = None
    tokens: SlackTokens | None = None

    @property
    def configured(self) -> bool:
        return self.client is not None or self.tokens is not None

    def client_for_team(self, team_id: str) -> WebClient | None:
        return self.tokens.client_for_team(team_id) if self.tokens is not None else self.client


def build_slack_access(settings: Settings, *, db: Database, cipher: Cipher, clock: Clock) -> SlackAccess:
    if settings.slack_mode != "multi":
        return SlackAccess(client=build_slack_client(settings))
    assert settings.slack_client_id and settings.slack_client_secret
    tokens = SlackTokens(
        db=db,
        cipher=cipher,
        client_id=settings.slack_client_id,
        client_secret=settings.slack_client_secret.get_secret_value(),
        api_url=settings.slack_api_url,
        clock=clock,
    )
    return SlackAccess(tokens=tokens)


@dataclass(frozen=True)
class MultiWorkspace:
    """The install flow and authorize step of multi-workspace mode (they need the database)."""

    flow: InstallFlow
    authorize: InstallationAuthorize
    forget: Callable[[str], int]  # team_id -> installs deleted (app_uninstalled, tokens_revoked)


def build_multi_workspace(
    settings: Settings,
    *,
    db: Database,
    cipher: Cipher,
    tokens: SlackTokens | None,
    clock: Clock,
    on_installed: Callable[[str, str | None], None],
) -> MultiWorkspace | None:
    """Multi-workspace mode's pieces over slack_sdk's SQLAlchemy stores (tokens encrypted)."""
    if tokens is None or settings.slack_redirect_uri is None:
        return None
    assert settings.slack_client_id and settings.slack_client_secret
    client_id = settings.slack_client_id

    def forget(team_id: str) -> int:
        with db.session() as session:
            return installations.forget_team(session, client_id=client_id, team_id=team_id)

    flow = build_install_flow(
        config=InstallConfig(
            client_id=client_id,
            client_secret=settings.slack_client_secret.get_secret_value(),
            redirect_uri=settings.slack_redirect_uri,
            authorize_url=settings.slack_authorize_url,
        ),
        installation_store=EncryptedInstallationStore(client_id=client_id, engine=db.engine, cipher=cipher),
        state_store=HashedOAuthStateStore(engine=db.engine, clock=clock),
        client=web_client(None, settings.slack_api_url),
        clock=clock,
        on_installed=on_installed,
    )
    return MultiWorkspace(flow=flow, authorize=InstallationAuthorize(tokens.bot), forget=forget)


def _listener_pool() -> ThreadPoolExecutor:
    # Bolt's default pool of 5 starves under load and then misses Slack's 3 s ack.
    return ThreadPoolExecutor(max_workers=32, thread_name_prefix="bolt")


def build_bolt_app(
    settings: Settings,
    *,
    client: WebClient | None,
    commands: CommandServices,
    multi: MultiWorkspace | None = None,
) -> App | None:
    """The Bolt app for the configured Slack mode, or None when Slack is not configured yet."""
    mode = settings.slack_mode
    if mode is None:
        return None
    assert settings.slack_signing_secret is not None
    if mode == "multi":
        if multi is None:
            log.error("multi-workspace install needs PUBLIC_URL (the OAuth redirect URL is built from it)")
            return None
        app = App(
            signing_secret=settings.slack_signing_secret.get_secret_value(),
            # Per-request clients copy this one (base URL, no retry handlers) with the workspace's token.
            client=web_client(None, settings.slack_api_url),
            installation_store=multi.flow.settings.installation_store,
            # An Authorize instance (Bolt checks with isinstance); its annotation says plain callable.
            authorize=multi.authorize,  # type: ignore[arg-type]
            # Both given: with oauth_settings left out, Bolt builds default file-based stores from the
            # SLACK_CLIENT_ID/SLACK_CLIENT_SECRET environment variables (and then ignores them).
            oauth_settings=multi.flow.settings,
            oauth_flow=multi.flow,
            listener_executor=_listener_pool(),
        )
        app.use(forget_on_uninstall(multi.forget))
    elif client is None:
        return None
    else:
        app = App(
            signing_secret=settings.slack_signing_secret.get_secret_value(),
            client=client,
            # Do not call auth.test at import time: the app must start even when Slack is unreachable.
            token_verification_enabled=False,
            listener_executor=_listener_pool(),
        )
    register_commands(app, commands)
    register_events(app, commands.rules)
    register_home(app, commands)
    return app
