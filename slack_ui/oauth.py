"""Multi-workspace install: Bolt's OAuth flow on our stores, our authorize step, uninstall upkeep.

The pieces Bolt offers are used as designed, with three replacements, each for a reason:
- `InstallFlow.run_installation` stamps token expiry with the injected clock (slack_sdk uses
  time.time()), so every expiry decision and test uses one clock.
- `InstallationAuthorize` takes the bot token from connector.slack.slack_tokens, which refreshes it
  under a cross-process lease (Bolt's InstallationStoreAuthorize refreshes without one).
- The pages after Slack's redirect say what happened and what to do next.
Every OAuthSettings argument is given explicitly: left out, Bolt reads SLACK_* environment
variables (SLACK_REDIRECT_URI, SLACK_SCOPES, ...) and falls back to file-based stores.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from slack_bolt import BoltContext, BoltRequest, BoltResponse
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.authorize import Authorize
from slack_bolt.oauth import OAuthFlow
from slack_bolt.oauth.callback_options import CallbackOptions, FailureArgs, SuccessArgs
from slack_bolt.oauth.oauth_settings import OAuthSettings
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.oauth.installation_store import Installation, InstallationStore
from slack_sdk.oauth.state_store import OAuthStateStore
from sqlalchemy.exc import SQLAlchemyError

from connector.domain.clock import Clock
from storage.installations import StoredBot

log = logging.getLogger(__name__)

INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"
STATE_SECONDS = 600
# The bot scopes requested at install: the same list as manifest.yml (tests/slack_ui/test_slack_oauth.py
# checks), where each is justified. No user scopes: the app never acts as a person.
BOT_SCOPES = (
    "commands",
    "chat:write",
    "channels:join",
    "channels:read",
    "groups:read",
    "channels:history",
    "groups:history",
    "im:write",
    "users:read",
    "files:write",
)
# Events after which the stored install no longer works.
LOST_EVENTS = frozenset({"app_uninstalled", "tokens_revoked"})
_TEAM_ID = re.compile(r"^[TE][A-Z0-9]{2,31}$")


@dataclass(frozen=True, slots=True)
class InstallConfig:
    """What the install needs from the settings."""

    client_id: str
    client_secret: str
    redirect_uri: str  # PUBLIC_URL + REDIRECT_PATH, registered in the manifest
    authorize_url: str  # SLACK_AUTHORIZE_URL


def installation_from_oauth(
    answer: Mapping[str, Any], *, bot_id: str | None, now: dt.datetime
) -> Installation:
    """The Installation for an oauth.v2.access answer, its expiry on our clock. Pure."""
    team = answer.get("team") or {}
    enterprise = answer.get("enterprise") or {}
    installer = answer.get("authed_user") or {}
    webhook = answer.get("incoming_webhook") or {}

    def expiry(seconds: Any) -> int | None:
        return None if seconds is None else int(now.timestamp()) + int(seconds)

    return Installation(
        app_id=answer.get("app_id"),
        enterprise_id=enterprise.get("id"),
        enterprise_name=enterprise.get("name"),
        team_id=team.get("id"),
        team_name=team.get("name"),
        bot_token=answer.get("access_token"),
        bot_id=bot_id,
        bot_user_id=answer.get("bot_user_id"),
        bot_scopes=answer.get("scope") or "",
        bot_refresh_token=answer.get("refresh_token"),
        bot_token_expires_at=expiry(answer.get("expires_in")),
        user_id=str(installer.get("id") or ""),
        user_token=installer.get("access_token"),
        user_scopes=installer.get("scope") or "",
        user_refresh_token=installer.get("refresh_token"),
        user_token_expires_at=expiry(installer.get("expires_in")),
        incoming_webhook_url=webhook.get("url"),
        incoming_webhook_channel=webhook.get("channel"),
        incoming_webhook_channel_id=webhook.get("channel_id"),
        incoming_webhook_configuration_url=webhook.get("configuration_url"),
        is_enterprise_install=bool(answer.get("is_enterprise_install")),
        token_type=answer.get("token_type"),
        installed_at=now.timestamp(),
    )


class InstallFlow(OAuthFlow):
    """Bolt's OAuth flow (state cookie and store, callback checks, pages) with our clock."""

    def __init__(self, *, client: WebClient, settings: OAuthSettings, clock: Clock) -> None:
        super().__init__(client=client, logger=log, settings=settings)
        self._clock = clock

    def build_authorize_url(self, state: str, request: BoltRequest) -> str:
        # Bolt pastes `?team=` from the install link into the URL unescaped: keep only real IDs.
        teams = request.query.get("team") or []
        team = teams[0] if teams and _TEAM_ID.match(teams[0]) else None
        url: str = self.settings.authorize_url_generator.generate(state=state, team=team)
        return url

    def run_installation(self, code: str) -> Installation | None:
        try:
            answer = self.client.oauth_v2_access(
                code=code,
                client_id=self.settings.client_id,
                client_secret=self.settings.client_secret,
                redirect_uri=self.settings.redirect_uri,
            )
            token = answer.get("access_token")
            bot_id = self.client.auth_test(token=token).get("bot_id") if token else None
        except SlackApiError as exc:
            log.warning("Slack refused the install code: %s", exc.response.get("error"))
            return None
        except OSError as exc:
            log.warning("Slack could not be reached to finish an install (%s)", type(exc).__name__)
            return None
        data = answer.data if isinstance(answer.data, dict) else {}
        if not (data.get("team") or {}).get("id"):
            # An org-wide (Enterprise Grid) install: the manifest does not offer it (org_deploy_enabled).
            log.warning("an install without a workspace (org-wide) was refused")
            return None
        return installation_from_oauth(data, bot_id=bot_id, now=self._clock())


class InstallationAuthorize(Authorize):
    """Bolt's authorize step in multi-workspace mode: the requesting workspace's own bot token.

    `bot_for_team` is connector.slack.slack_tokens.SlackTokens.bot: it refreshes an expiring token under
    the lease. No auth.test per request (Bolt's default): the install stored the bot's IDs, and the
    3-second ack has no time to spare. A workspace without a stored install gets Bolt's "reinstall"
    answer.
    """

    def __init__(self, bot_for_team: Callable[[str], StoredBot | None]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._bot_for_team = bot_for_team

    def __call__(
        self,
        *,
        context: BoltContext,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None,
        **_actor: Any,
    ) -> AuthorizeResult | None:
        if not team_id:  # an org-wide install; the manifest does not offer them
            return None
        bot = self._bot_for_team(team_id)
        if bot is None:
            return None
        return AuthorizeResult(
            enterprise_id=bot.enterprise_id or enterprise_id,
            team_id=team_id,
            bot_user_id=bot.bot_user_id,
            bot_id=bot.bot_id,
            bot_token=bot.token,
            bot_scopes=list(bot.scopes),
        )


def forget_on_uninstall(forget: Callable[[str], int]) -> Callable[..., BoltResponse]:
    """A Bolt middleware: app_uninstalled or a bot tokens_revoked deletes the workspace's stored
    install before the listeners run (slack_ui.events parks its deliveries). A reinstall stores a
    new one and resumes them."""

    def middleware(
        body: dict[str, Any], context: BoltContext, next: Callable[[], BoltResponse]
    ) -> BoltResponse:
        event = (body.get("event") or {}) if body.get("type") == "event_callback" else {}
        kind = event.get("type")
        # tokens_revoked for user tokens only would leave the bot working; the app has none anyway.
        if kind in LOST_EVENTS and context.team_id and (kind == "app_uninstalled" or _bot_revoked(event)):
            removed = forget(str(context.team_id))
            log.warning("Slack says %s: %d stored install(s) deleted", kind, removed)
        return next()

    return middleware


def _bot_revoked(event: Mapping[str, Any]) -> bool:
    return bool((event.get("tokens") or {}).get("bot"))


# -- the pages after Slack's redirect -------------------------------------------------------------

_PAGE = (
    "<!doctype html><html><head><meta charset='utf-8'><title>FreshBooks for Slack</title></head>"
    "<body><h1>{title}</h1>{body}</body></html>"
)

FAILURE_REASONS = {
    "access_denied": "The install was cancelled in Slack.",
    "invalid_browser": "This page was not reached from an install link opened in this browser in the last "
    "10 minutes (the link sets a cookie, over https only).",
    "invalid_state": "This install link was already used, or it expired (links work once, for 10 minutes).",
    "missing_code": "Slack did not send an authorization code.",
    "invalid_code": "Slack did not accept the authorization code (it may have been used already).",
    "storage_error": "The install could not be saved. The server log says why.",
}


def failure_reason(reason: str) -> str:
    """What went wrong, for the person installing. Pure."""
    return FAILURE_REASONS.get(reason, f"Slack answered `{reason}`.")


def _page(title: str, body: str, *, status: int, cookie: str) -> BoltResponse:
    return BoltResponse(
        status=status,
        body=_PAGE.format(title=html.escape(title), body=body),
        headers={"Content-Type": "text/html; charset=utf-8", "Set-Cookie": [cookie]},
    )


def callback_options(*, install_url: str, on_installed: Callable[[str, str | None], None]) -> CallbackOptions:
    """The success and failure pages; `on_installed(team_id, enterprise_id)` runs after a success
    (workspace row, resume of a suspended workspace)."""

    def success(args: SuccessArgs) -> BoltResponse:
        installation: Installation = args.installation
        team_id = str(installation.team_id or "")
        try:
            on_installed(team_id, installation.enterprise_id)
        except (SQLAlchemyError, SlackApiError, OSError) as exc:
            # The install is stored; the periodic resume job finishes what this could not.
            log.error(
                "after-install steps failed (%s)", type(exc).__name__, extra={"context": {"team_id": team_id}}
            )
        log.info("installed in a workspace", extra={"context": {"team_id": team_id}})
        open_slack = f"https://slack.com/app_redirect?app={installation.app_id}&team={team_id}"
        body = (
            f"<p>FreshBooks for Slack is installed in {html.escape(installation.team_name or team_id)}.</p>"
            "<p>Next, a workspace admin runs <code>/freshbooks connect</code> in Slack to link a "
            "FreshBooks business.</p>"
            f"<p><a href='{html.escape(open_slack)}'>Open Slack</a></p>"
        )
        return _page(
            "Installed", body, status=200, cookie=args.settings.state_utils.build_set_cookie_for_deletion()
        )

    def failure(args: FailureArgs) -> BoltResponse:
        log.warning("install failed: %s", args.reason)
        body = (
            f"<p>{html.escape(failure_reason(args.reason))}</p>"
            f"<p><a href='{html.escape(install_url)}'>Start the install again</a></p>"
        )
        return _page(
            "FreshBooks for Slack was not installed",
            body,
            status=args.suggested_status_code,
            cookie=args.settings.state_utils.build_set_cookie_for_deletion(),
        )

    return CallbackOptions(success=success, failure=failure)


def build_install_flow(
    *,
    config: InstallConfig,
    installation_store: InstallationStore,
    state_store: OAuthStateStore,
    client: WebClient,
    clock: Clock,
    on_installed: Callable[[str, str | None], None],
) -> InstallFlow:
    install_url = config.redirect_uri.removesuffix(REDIRECT_PATH) + INSTALL_PATH
    settings = OAuthSettings(
        client_id=config.client_id,
        client_secret=config.client_secret,
        scopes=list(BOT_SCOPES),
        user_scopes=[],
        redirect_uri=config.redirect_uri,
        install_path=INSTALL_PATH,
        redirect_uri_path=REDIRECT_PATH,
        # Straight to Slack's authorize page (with the state cookie), no intermediate button page.
        install_page_rendering_enabled=False,
        callback_options=callback_options(install_url=install_url, on_installed=on_installed),
        authorization_url=config.authorize_url,
        installation_store=installation_store,
        state_store=state_store,
        state_expiration_seconds=STATE_SECONDS,
        logger=log,
    )
    return InstallFlow(client=client, settings=settings, clock=clock)
