"""`fbslack doctor`: every check against the fakes, and the command as an operator runs it."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

from connector.domain.settings import Settings, load_settings
from connector.ops import doctor
from storage import migrate
from storage.db import Database
from tests.support.fakes.freshbooks import FakeFreshBooks
from tests.support.fakes.slack import FakeSlack
from tests.support.live import SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, Live


def test_a_healthy_setup_passes(live: Live) -> None:
    new = live.connect()
    assert live.services.registrar is not None
    live.services.registrar.ensure_all(new.connection.id)
    findings = (
        doctor.check_settings(live.settings)
        + doctor.check_database(live.services.db)
        + doctor.check_slack(live.services.slack_client)
        + doctor.check_connections(
            live.services.db, live.services.cipher, live.services.tokens, live.services.freshbooks
        )
        + doctor.check_clock(live.slack.base_url, lambda: dt.datetime.now(dt.UTC))
    )
    assert [f for f in findings if f.failed] == []
    report = doctor.format_report(findings)
    assert "token works; 13/13 webhooks verified" in report
    # (The fake Slack lists no scopes in its answer: that one check is skipped, and says why.)
    assert [f.check for f in findings if f.status is doctor.Status.SKIPPED] == ["slack scopes"]
    assert report.endswith("0 fail, 1 skipped: all good")


def test_problems_come_with_their_fix(live: Live) -> None:
    new = live.connect()  # no webhooks registered
    live.slack.valid_tokens.clear()  # the bot token was revoked
    assert live.services.slack_client is not None
    findings = doctor.check_slack(live.services.slack_client) + doctor.check_connections(
        live.services.db, live.services.cipher, live.services.tokens, live.services.freshbooks
    )
    failed = {f.check: f for f in findings if f.failed}
    assert failed["slack auth.test"].detail == "Slack answered invalid_auth"
    assert "0/13 webhooks verified" in failed[f"freshbooks connection {new.connection.id}"].detail
    assert all(f.fix for f in failed.values())
    skipped = {f.check: f.detail for f in findings if f.status is doctor.Status.SKIPPED}
    assert skipped == {"slack scopes": "the token did not work"}

    live.fake.valid_tokens.clear()
    live.fake.grants.clear()
    live.services.tokens.forget(new.connection.id)
    live.clock.advance(hours=12)
    (finding,) = doctor.check_connections(
        live.services.db, live.services.cipher, live.services.tokens, live.services.freshbooks
    )
    assert finding.failed
    assert finding.fix == "run /freshbooks connect again"


def test_clock_skew_is_reported(live: Live) -> None:
    (finding,) = doctor.check_clock(
        live.slack.base_url, lambda: dt.datetime.now(dt.UTC) + dt.timedelta(minutes=9)
    )
    assert finding.failed
    assert finding.fix == "enable NTP on this host"


def test_a_clock_that_could_not_be_compared_is_skipped_not_passed() -> None:
    (finding,) = doctor.check_clock("http://127.0.0.1:9/api/", lambda: dt.datetime.now(dt.UTC))
    assert finding.status is doctor.Status.SKIPPED
    assert finding.detail == "could not compare with http://127.0.0.1:9/api/ (ConnectError)"


def test_an_outdated_schema_is_reported(database_url: str) -> None:
    db = Database(database_url)
    try:
        migrate.upgrade(db.engine, "0001")
        findings = {f.check: f for f in doctor.check_database(db)}
    finally:
        db.dispose()
    assert findings["database"].ok
    assert findings["migrations"].failed
    assert findings["migrations"].fix == "fbslack db upgrade"


# -- `fbslack doctor` as an operator runs it ---------------------------------------------------------


def doctor_run(env: dict[str, str], cwd: Path) -> tuple[int, list[str]]:
    """Run `fbslack doctor` with only `env` for settings; its exit code and stdout lines."""
    names = {name.upper() for name in Settings.model_fields}
    base = {k: v for k, v in os.environ.items() if k.upper() not in names}
    done = subprocess.run(
        [sys.executable, "-m", "connector.ops.cli", "doctor"],
        env={**base, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout.splitlines()


def checks(lines: list[str]) -> dict[str, str]:
    """Label -> the whole line, for the report's check lines; each label is printed once."""
    found = [m for m in (CHECK_LINE.match(line) for line in lines) if m]
    labels = [m["label"] for m in found]
    assert len(labels) == len(set(labels)), labels
    return {m["label"]: m.string for m in found}


CHECK_LINE = re.compile(r"^(?P<status>PASS|FAIL|SKIPPED) +(?P<label>[^:]+): ")


def test_a_fresh_folder_is_reported_and_nothing_is_created(tmp_path: Path) -> None:
    code, lines = doctor_run({"SLACK_API_URL": "http://127.0.0.1:9/api/"}, cwd=tmp_path)
    assert code == 1
    found = checks(lines)
    database = tmp_path / "data" / "fbslack.db"
    assert found["database"].startswith(
        f"FAIL     database: no database at {database}: are you in the right folder? "
        "`fbslack serve` creates it"
    )
    assert found["encryption key"].startswith("FAIL     encryption key: ENCRYPTION_KEYS is not set")
    assert found["migrations"] == "SKIPPED  migrations: the database could not be opened"
    assert found["freshbooks connections"].startswith("SKIPPED  freshbooks connections: needs the database")
    # Slack could not be asked for the time: that is not a pass.
    assert found["clock"].startswith("SKIPPED  clock: could not compare with http://127.0.0.1:9/api/")
    assert found["slack app"].startswith("FAIL     slack app: not configured; fix: create the Slack app")
    assert found["slack auth.test"] == "SKIPPED  slack auth.test: no bot token to test (see slack app)"
    assert not any(line.startswith("URLs to paste") for line in lines)  # no PUBLIC_URL yet
    assert lines[-1] == "0 pass, 5 fail, 4 skipped: 5 to fix"
    assert list(tmp_path.iterdir()) == []


def single_workspace(
    tmp_path: Path, fake_slack: FakeSlack, fake_freshbooks: FakeFreshBooks
) -> dict[str, str]:
    env = {
        "DATA_DIR": str(tmp_path / "data"),
        "ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "PUBLIC_URL": "https://fb.example.com",
        "SLACK_SIGNING_SECRET": "s" * 32,
        "SLACK_BOT_TOKEN": "xoxb-test",  # the fake's valid token
        "SLACK_API_URL": fake_slack.base_url,
        "FRESHBOOKS_CLIENT_ID": "fb-client",
        "FRESHBOOKS_CLIENT_SECRET": "fb-secret",
        "FRESHBOOKS_API_URL": fake_freshbooks.base_url,
    }
    db = Database(load_settings(env).resolved_database_url)
    try:
        migrate.upgrade(db.engine)
    finally:
        db.dispose()
    return env


def test_single_workspace_mode_checks_the_token_and_prints_the_urls(
    tmp_path: Path, fake_slack: FakeSlack, fake_freshbooks: FakeFreshBooks
) -> None:
    env = single_workspace(tmp_path, fake_slack, fake_freshbooks)
    code, lines = doctor_run(env, cwd=tmp_path)
    found = checks(lines)
    assert (
        found["slack app"]
        == "PASS     slack app: one workspace (SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET set)"
    )
    assert found["slack auth.test"].startswith("PASS     slack auth.test: bot ")
    assert found["database"] == "PASS     database: reachable (sqlite)"
    assert found["clock"].startswith("PASS     clock: within ")  # the fake Slack's Date header
    assert found["freshbooks connections"].startswith("FAIL     freshbooks connections: none")
    assert "slack workspaces" not in found  # the other mode's check
    assert not [line for line in lines if "set SLACK_BOT_TOKEN" in line or "SLACK_CLIENT_ID" in line]
    assert lines[lines.index("URLs to paste (built from PUBLIC_URL):") :][1:4] == [
        "  Slack request URL (Event Subscriptions, Interactivity, Slash Commands): "
        "https://fb.example.com/slack/events",
        "  Slack redirect URL (OAuth & Permissions): https://fb.example.com/slack/oauth_redirect",
        "  FreshBooks redirect URI (FreshBooks developer portal): https://fb.example.com/freshbooks/oauth/callback",
    ]
    assert code == 1  # one FAIL: no FreshBooks connection yet

    fake_slack.valid_tokens.clear()  # the token was revoked
    code, lines = doctor_run(env, cwd=tmp_path)
    found = checks(lines)
    assert found["slack auth.test"] == (
        "FAIL     slack auth.test: Slack answered invalid_auth; fix: reinstall the app; check SLACK_BOT_TOKEN"
    )
    assert found["slack scopes"] == "SKIPPED  slack scopes: the token did not work"


def test_a_bot_token_without_its_signing_secret_asks_only_for_the_secret(
    tmp_path: Path, fake_slack: FakeSlack, fake_freshbooks: FakeFreshBooks
) -> None:
    env = single_workspace(tmp_path, fake_slack, fake_freshbooks)
    del env["SLACK_SIGNING_SECRET"]
    code, lines = doctor_run(env, cwd=tmp_path)
    found = checks(lines)
    assert found["slack app"] == (
        "FAIL     slack app: one workspace (SLACK_BOT_TOKEN), no SLACK_SIGNING_SECRET; fix: copy the Signing "
        "Secret (Basic Information > App Credentials) into SLACK_SIGNING_SECRET"
    )
    assert found["slack auth.test"].startswith("PASS")  # the token is tested all the same
    assert code == 1


def test_multi_workspace_mode_checks_installs_and_never_asks_for_a_bot_token(
    tmp_path: Path, fake_slack: FakeSlack, fake_freshbooks: FakeFreshBooks
) -> None:
    env = single_workspace(tmp_path, fake_slack, fake_freshbooks)
    del env["SLACK_BOT_TOKEN"]
    env.update(SLACK_CLIENT_ID=fake_slack.client_id, SLACK_CLIENT_SECRET=fake_slack.client_secret)
    code, lines = doctor_run(env, cwd=tmp_path)
    found = checks(lines)
    assert found["slack app"].startswith("PASS     slack app: many workspaces (SLACK_CLIENT_ID")
    assert found["slack workspaces"] == (
        "FAIL     slack workspaces: no workspace has installed the app yet; "
        "fix: open PUBLIC_URL/slack/install (the link is below)"
    )
    assert "slack auth.test" not in found
    assert not [line for line in lines if "SLACK_BOT_TOKEN" in line]
    assert (
        "  Install into a workspace (open it in the browser): https://fb.example.com/slack/install" in lines
    )
    assert code == 1


def test_an_unreachable_database_is_one_fail_with_the_drivers_reason(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": "postgresql://fb:pg-secret@127.0.0.1:1/fbslack",
        "ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "SLACK_API_URL": "http://127.0.0.1:9/api/",
    }
    code, lines = doctor_run(env, cwd=tmp_path)
    found = checks(lines)
    assert found["database"].startswith(
        "FAIL     database: cannot connect to PostgreSQL at 127.0.0.1:1/fbslack (Connection refused)"
    )
    assert "pg-secret" not in "\n".join(lines)
    assert code == 1
    assert list(tmp_path.iterdir()) == []


def test_a_healthy_setup_passes_as_a_command(live: Live, database_url: str, encryption_key: str) -> None:
    new = live.connect()
    assert live.services.registrar is not None
    live.services.registrar.ensure_all(new.connection.id)
    env = {
        "DATA_DIR": str(live.settings.data_dir),
        "DATABASE_URL": database_url,
        "ENCRYPTION_KEYS": encryption_key,
        "PUBLIC_URL": live.url,
        "SLACK_SIGNING_SECRET": SLACK_SIGNING_SECRET,
        "SLACK_BOT_TOKEN": SLACK_BOT_TOKEN,
        "SLACK_API_URL": live.settings.slack_api_url,
        "FRESHBOOKS_CLIENT_ID": "fb-client",
        "FRESHBOOKS_CLIENT_SECRET": "fb-secret",
        "FRESHBOOKS_API_URL": live.settings.freshbooks_api_url,
    }
    code, lines = doctor_run(env, cwd=live.settings.data_dir.parent)
    found = checks(lines)
    assert [line for line in found.values() if line.startswith("FAIL")] == []
    assert found[f"freshbooks connection {new.connection.id}"].endswith(
        "token works; 13/13 webhooks verified"
    )
    assert lines[-1].endswith(": all good")
    assert code == 0
