"""`fbslack doctor`: check a setup end to end and say how to fix what is wrong.

Each check returns Findings: PASS, FAIL (with the fix) or SKIPPED (with the reason; never a pass).
Nothing here changes the setup or creates a file or database, except a FreshBooks token refresh,
which is how a token is proven to work.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import enum
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy.exc import SQLAlchemyError

from connector.domain.events import SUPPORTED_EVENTS
from connector.domain.settings import Settings
from connector.freshbooks.client import FreshBooksClient, FreshBooksError
from connector.freshbooks.tokens import NoToken, TokenSource
from connector.ops import preflight
from storage import connections, migrate
from storage.crypto import DEV_KEY_FILE, Cipher, DecryptionError
from storage.db import Database

# The bot scopes the manifest asks for; each is used by a feature (README: "Create the Slack app").
REQUIRED_SCOPES = frozenset(
    {"commands", "chat:write", "channels:join", "channels:read", "groups:read", "channels:history",
     "groups:history", "im:write", "users:read", "files:write"}
)  # fmt: skip
MAX_CLOCK_SKEW = dt.timedelta(minutes=2)


class Status(enum.StrEnum):
    PASS = "PASS"  # noqa: S105 - a status, not a password
    FAIL = "FAIL"
    SKIPPED = "SKIPPED"  # not checked, with the reason: never counted as a pass


@dataclass(frozen=True, slots=True)
class Finding:
    check: str  # the label: printed once per report
    status: Status
    detail: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.status is Status.PASS

    @property
    def failed(self) -> bool:
        return self.status is Status.FAIL


def passed(check: str, detail: str) -> Finding:
    return Finding(check, Status.PASS, detail)


def failed(check: str, detail: str, fix: str = "") -> Finding:
    return Finding(check, Status.FAIL, detail, fix)


def skipped(check: str, reason: str) -> Finding:
    return Finding(check, Status.SKIPPED, reason)


def check_settings(settings: Settings) -> list[Finding]:
    """What the settings alone say: the public address, the Slack mode, FreshBooks, the key."""
    return [
        _check_public_url(settings),
        _check_slack_app(settings),
        _check_freshbooks_app(settings),
        _check_encryption_key(settings),
    ]


def _check_public_url(settings: Settings) -> Finding:
    if not settings.public_url:
        return failed(
            "public url",
            "PUBLIC_URL is not set",
            fix="set it to the https address Slack and FreshBooks can reach this app at "
            "(webhook and OAuth redirect URLs are built from it)",
        )
    return passed("public url", settings.public_url)


def _check_slack_app(settings: Settings) -> Finding:
    """Which Slack mode the settings choose, and what that mode still lacks: never asks for a
    setting that is there, nor for the other mode's."""
    where_it_is = "copy the Signing Secret (Basic Information > App Credentials) into SLACK_SIGNING_SECRET"
    if settings.slack_bot_token:
        if not settings.slack_signing_secret:
            return failed(
                "slack app", "one workspace (SLACK_BOT_TOKEN), no SLACK_SIGNING_SECRET", where_it_is
            )
        return passed("slack app", "one workspace (SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET set)")
    if settings.slack_client_id:
        if not settings.slack_signing_secret:
            return failed(
                "slack app", "many workspaces (SLACK_CLIENT_ID), no SLACK_SIGNING_SECRET", where_it_is
            )
        if not settings.public_url:
            return failed(
                "slack app",
                "many workspaces (SLACK_CLIENT_ID), but the install pages need PUBLIC_URL",
                fix="set PUBLIC_URL (Slack's OAuth redirect URL is built from it)",
            )
        return passed(
            "slack app", "many workspaces (SLACK_CLIENT_ID, SLACK_CLIENT_SECRET, SLACK_SIGNING_SECRET set)"
        )
    either = "SLACK_BOT_TOKEN (one workspace) or SLACK_CLIENT_ID and SLACK_CLIENT_SECRET (many workspaces)"
    if settings.slack_signing_secret:
        return failed(
            "slack app", "SLACK_SIGNING_SECRET is set, but no workspace token or app pair", f"set {either}"
        )
    return failed(
        "slack app",
        "not configured",
        fix=f"create the Slack app from manifest.yml, then set SLACK_SIGNING_SECRET and {either}",
    )


def _check_freshbooks_app(settings: Settings) -> Finding:
    if not settings.freshbooks_configured:
        return failed(
            "freshbooks app",
            "FRESHBOOKS_CLIENT_ID and FRESHBOOKS_CLIENT_SECRET are not set",
            fix="register an app in the FreshBooks developer portal (redirect URI: "
            "PUBLIC_URL/freshbooks/oauth/callback) and set them",
        )
    return passed("freshbooks app", "FRESHBOOKS_CLIENT_ID and FRESHBOOKS_CLIENT_SECRET set")


def _check_encryption_key(settings: Settings) -> Finding:
    if settings.encryption_keys:
        count = len(settings.encryption_keys)
        return passed("encryption key", f"{count} key{'s' if count > 1 else ''} in ENCRYPTION_KEYS")
    path = (settings.data_dir / DEV_KEY_FILE).absolute()
    if not path.exists():
        # Reading the stored tokens needs the key that wrote them: a new one would read nothing.
        return failed(
            "encryption key",
            f"ENCRYPTION_KEYS is not set and there is no development key at {path}: are you in the "
            "right folder? `fbslack serve` creates it",
        )
    return passed("encryption key", f"development key in {path} (set ENCRYPTION_KEYS for real use)")


def reach_database(settings: Settings) -> tuple[Finding | None, str | None]:
    """The database's problem if it cannot be opened (a missing SQLite file is not created), else
    None and the URL to open."""
    target = preflight.database_target(settings)
    if problem := preflight.missing_database(target):
        return failed("database", problem), None
    try:
        preflight.check_database(settings, create=False)
    except preflight.StartupError as exc:
        return failed("database", str(exc).removeprefix("DATABASE_URL: ")), None
    return None, target.url


def check_database(db: Database) -> list[Finding]:
    try:
        db.ping()
        current, head = migrate.current_revision(db.engine), migrate.head_revision(db.engine)
    except SQLAlchemyError as exc:
        return [
            failed("database", f"unreachable ({preflight.driver_reason(exc)})", fix="check DATABASE_URL"),
            skipped("migrations", "the database could not be read"),
        ]
    if current != head:
        return [
            passed("database", f"reachable ({db.dialect})"),
            failed(
                "migrations", f"schema at {current or 'nothing'}, latest {head}", fix="fbslack db upgrade"
            ),
        ]
    return [passed("database", f"reachable ({db.dialect})"), passed("migrations", f"at {head}")]


def check_slack_workspaces(
    client_for_team: Callable[[str], WebClient | None], team_ids: list[str]
) -> list[Finding]:
    """Multi-workspace mode: every installed workspace's bot token (renewed first if it expires)."""
    if not team_ids:
        return [
            failed(
                "slack workspaces",
                "no workspace has installed the app yet",
                fix="open PUBLIC_URL/slack/install (the link is below)",
            )
        ]
    findings: list[Finding] = []
    for team_id in team_ids:
        client = client_for_team(team_id)
        if client is None:
            findings.append(
                failed(
                    f"slack {team_id}",
                    "no working bot token (uninstalled, revoked or not renewable)",
                    fix="reinstall the app in that workspace (PUBLIC_URL/slack/install)",
                )
            )
            continue
        findings += [Finding(f"{f.check} {team_id}", f.status, f.detail, f.fix) for f in check_slack(client)]
    return findings


def bot_client(settings: Settings) -> WebClient | None:
    """The single-workspace bot token's client, whether or not the rest of Slack's setup is there."""
    if settings.slack_bot_token is None:
        return None
    return WebClient(
        token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url, retry_handlers=[]
    )


def check_slack(client: WebClient) -> list[Finding]:
    try:
        answer = client.auth_test()
    except SlackApiError as exc:
        error = exc.response.get("error")
        return [
            failed(
                "slack auth.test", f"Slack answered {error}", fix="reinstall the app; check SLACK_BOT_TOKEN"
            ),
            skipped("slack scopes", "the token did not work"),
        ]
    except OSError as exc:
        return [
            failed("slack auth.test", f"Slack unreachable ({type(exc).__name__})", fix="check SLACK_API_URL"),
            skipped("slack scopes", "Slack could not be reached"),
        ]
    findings = [passed("slack auth.test", f"bot {answer.get('user_id')} in team {answer.get('team_id')}")]
    granted = {s.strip() for s in str(answer.headers.get("x-oauth-scopes", "")).split(",") if s.strip()}
    if not granted:
        findings.append(skipped("slack scopes", "Slack did not list the token's scopes"))
    elif missing := sorted(REQUIRED_SCOPES - granted):
        findings.append(
            failed("slack scopes", "missing " + ", ".join(missing), fix="reinstall the app from manifest.yml")
        )
    else:
        findings.append(passed("slack scopes", "all required scopes granted"))
    return findings


def check_connections(
    db: Database, cipher: Cipher, tokens: TokenSource, client: FreshBooksClient
) -> list[Finding]:
    findings: list[Finding] = []
    try:
        with db.read() as session:
            ids = connections.active_connection_ids(session)
            verified = {
                cid: len({c.event for c in connections.callbacks_of(session, cid) if c.verified})
                for cid in ids
            }
            accounts = {cid: connections.account_id(session, cid) for cid in ids}
    except (SQLAlchemyError, DecryptionError) as exc:
        return [failed("freshbooks connections", f"cannot read them ({type(exc).__name__})")]
    if not ids:
        return [failed("freshbooks connections", "none", fix="run /freshbooks connect in Slack")]
    for cid in ids:
        name = f"freshbooks connection {cid}"
        account_id = accounts[cid]

        def list_callbacks(token: str, account_id: str = account_id) -> object:
            return client.list_callbacks(token=token, account_id=account_id)

        try:
            tokens.call(cid, list_callbacks)
        except NoToken as exc:
            findings.append(failed(name, f"no usable token ({exc})", fix="run /freshbooks connect again"))
            continue
        except FreshBooksError as exc:
            findings.append(failed(name, f"FreshBooks refused ({exc.kind})", fix="see /freshbooks status"))
            continue
        expected = len(SUPPORTED_EVENTS)
        detail = f"token works; {verified[cid]}/{expected} webhooks verified"
        if verified[cid] == expected:
            findings.append(passed(name, detail))
        else:
            fix = "wait for the next callback check (15 min), or run /freshbooks connect again"
            findings.append(failed(name, detail, fix=fix))
    return findings


def check_clock(url: str, now: Callable[[], dt.datetime]) -> list[Finding]:
    """Slack rejects requests signed more than 5 minutes off; compare with a server's Date header."""
    try:
        response = httpx.head(url, timeout=5)
        remote = email.utils.parsedate_to_datetime(response.headers["date"])
    except (httpx.HTTPError, KeyError, TypeError, ValueError) as exc:
        return [skipped("clock", f"could not compare with {url} ({type(exc).__name__})")]
    skew = abs(now() - remote)
    if skew > MAX_CLOCK_SKEW:
        return [failed("clock", f"{skew.total_seconds():.0f} s off {url}", fix="enable NTP on this host")]
    return [passed("clock", f"within {skew.total_seconds():.0f} s of {url}")]


def format_report(findings: list[Finding], urls: Sequence[tuple[str, str]] = ()) -> str:
    """One line per check (its status, label, what was found and, for a failure, the fix), the
    URLs to paste into Slack and FreshBooks, and the count."""
    width = max(len(status) for status in Status)
    lines = []
    for finding in findings:
        line = f"{finding.status:<{width}}  {finding.check}: {finding.detail}"
        if finding.fix:
            line += f"; fix: {finding.fix}"
        lines.append(line)
    if urls:
        lines += ["", "URLs to paste (built from PUBLIC_URL):"]
        lines += [f"  {label}: {url}" for label, url in urls]
    count = Counter(f.status for f in findings)
    to_fix = count[Status.FAIL]
    verdict = "all good" if not to_fix else f"{to_fix} to fix"
    lines.append(f"\n{count[Status.PASS]} pass, {to_fix} fail, {count[Status.SKIPPED]} skipped: {verdict}")
    return "\n".join(lines)
