"""`fbslack doctor`: check a setup end to end and say how to fix what is wrong.

Each check returns a Finding; nothing here changes the setup except a FreshBooks token refresh,
which is how a token is proven to work.
"""

from __future__ import annotations

import datetime as dt
import email.utils
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy.exc import SQLAlchemyError

from connector.domain.events import SUPPORTED_EVENTS
from connector.domain.settings import Settings
from connector.freshbooks.client import FreshBooksClient, FreshBooksError
from connector.freshbooks.tokens import NoToken, TokenSource
from storage import connections, migrate
from storage.crypto import Cipher, DecryptionError
from storage.db import Database

# The bot scopes the manifest asks for; each is used by a feature (README: "Create the Slack app").
REQUIRED_SCOPES = frozenset(
    {"commands", "chat:write", "channels:join", "channels:read", "groups:read", "channels:history",
     "groups:history", "im:write", "users:read", "files:write"}
)  # fmt: skip
MAX_CLOCK_SKEW = dt.timedelta(minutes=2)


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    ok: bool
    detail: str
    fix: str = ""


def check_settings(settings: Settings) -> list[Finding]:
    todo = settings.missing_setup()
    if not todo:
        return [Finding("configuration", True, "all settings present")]
    return [Finding("configuration", False, "incomplete", fix=step) for step in todo]


def check_database(db: Database) -> list[Finding]:
    try:
        db.ping()
        current, head = migrate.current_revision(db.engine), migrate.head_revision(db.engine)
    except SQLAlchemyError as exc:
        return [Finding("database", False, f"unreachable ({type(exc).__name__})", fix="check DATABASE_URL")]
    if current != head:
        return [
            Finding("database", True, f"reachable ({db.dialect})"),
            Finding(
                "migrations",
                False,
                f"schema at {current or 'nothing'}, latest {head}",
                fix="fbslack db upgrade",
            ),
        ]
    return [Finding("database", True, f"reachable ({db.dialect})"), Finding("migrations", True, f"at {head}")]


def check_slack_workspaces(
    client_for_team: Callable[[str], WebClient | None], team_ids: list[str]
) -> list[Finding]:
    """Multi-workspace mode: every installed workspace's bot token (renewed first if it expires)."""
    if not team_ids:
        return [
            Finding(
                "slack", False, "no workspace has installed the app yet", fix="open PUBLIC_URL/slack/install"
            )
        ]
    findings: list[Finding] = []
    for team_id in team_ids:
        client = client_for_team(team_id)
        if client is None:
            findings.append(
                Finding(
                    f"slack {team_id}",
                    False,
                    "no working bot token (uninstalled, revoked or not renewable)",
                    fix="reinstall the app in that workspace (PUBLIC_URL/slack/install)",
                )
            )
            continue
        findings += [Finding(f"{f.check} {team_id}", f.ok, f.detail, f.fix) for f in check_slack(client)]
    return findings


def check_slack(client: WebClient | None) -> list[Finding]:
    if client is None:
        return [Finding("slack", False, "not configured", fix="set SLACK_SIGNING_SECRET and SLACK_BOT_TOKEN")]
    try:
        answer = client.auth_test()
    except SlackApiError as exc:
        error = exc.response.get("error")
        return [
            Finding(
                "slack auth.test",
                False,
                f"Slack answered {error}",
                fix="reinstall the app; check SLACK_BOT_TOKEN",
            )
        ]
    except OSError as exc:
        return [
            Finding(
                "slack auth.test",
                False,
                f"Slack unreachable ({type(exc).__name__})",
                fix="check SLACK_API_URL",
            )
        ]
    findings = [
        Finding("slack auth.test", True, f"bot {answer.get('user_id')} in team {answer.get('team_id')}")
    ]
    granted = {s.strip() for s in str(answer.headers.get("x-oauth-scopes", "")).split(",") if s.strip()}
    if not granted:
        findings.append(Finding("slack scopes", True, "Slack did not list the token's scopes"))
    elif missing := sorted(REQUIRED_SCOPES - granted):
        findings.append(
            Finding(
                "slack scopes",
                False,
                "missing " + ", ".join(missing),
                fix="reinstall the app from manifest.yml",
            )
        )
    else:
        findings.append(Finding("slack scopes", True, "all required scopes granted"))
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
        return [Finding("freshbooks connections", False, f"cannot read them ({type(exc).__name__})")]
    if not ids:
        return [Finding("freshbooks connections", False, "none", fix="run /freshbooks connect in Slack")]
    for cid in ids:
        name = f"freshbooks connection {cid}"
        account_id = accounts[cid]

        def list_callbacks(token: str, account_id: str = account_id) -> object:
            return client.list_callbacks(token=token, account_id=account_id)

        try:
            tokens.call(cid, list_callbacks)
        except NoToken as exc:
            findings.append(
                Finding(name, False, f"no usable token ({exc})", fix="run /freshbooks connect again")
            )
            continue
        except FreshBooksError as exc:
            findings.append(
                Finding(name, False, f"FreshBooks refused ({exc.kind})", fix="see /freshbooks status")
            )
            continue
        expected = len(SUPPORTED_EVENTS)
        ok = verified[cid] == expected
        fix = "" if ok else "wait for the next callback check (15 min), or run /freshbooks connect again"
        findings.append(
            Finding(name, ok, f"token works; {verified[cid]}/{expected} webhooks verified", fix=fix)
        )
    return findings


def check_clock(url: str, now: Callable[[], dt.datetime]) -> list[Finding]:
    """Slack rejects requests signed more than 5 minutes off; compare with a server's Date header."""
    try:
        response = httpx.head(url, timeout=5)
        remote = email.utils.parsedate_to_datetime(response.headers["date"])
    except (httpx.HTTPError, KeyError, TypeError, ValueError) as exc:
        return [Finding("clock", True, f"could not compare with {url} ({type(exc).__name__})")]
    skew = abs(now() - remote)
    if skew > MAX_CLOCK_SKEW:
        return [Finding("clock", False, f"{skew.total_seconds():.0f} s off", fix="enable NTP on this host")]
    return [Finding("clock", True, f"within {skew.total_seconds():.0f} s of {url}")]


def format_report(findings: list[Finding]) -> str:
    lines = []
    for finding in findings:
        mark = "PASS" if finding.ok else "FAIL"
        line = f"{mark}  {finding.check}: {finding.detail}"
        if finding.fix:
            line += f"\n      fix: {finding.fix}"
        lines.append(line)
    failed = sum(1 for f in findings if not f.ok)
    verdict = "all good" if not failed else f"{failed} to fix"
    lines.append(f"\n{len(findings) - failed} of {len(findings)} checks pass: {verdict}")
    return "\n".join(lines)
