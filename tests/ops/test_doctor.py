"""`fbslack doctor`: every check against the fakes, and the command as an operator runs it."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

from connector.ops import doctor
from storage.db import Database
from tests.support.live import Live


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
    assert [f for f in findings if not f.ok] == []
    report = doctor.format_report(findings)
    assert "token works; 13/13 webhooks verified" in report
    assert report.endswith("checks pass: all good")


def test_problems_come_with_their_fix(live: Live) -> None:
    new = live.connect()  # no webhooks registered
    live.slack.valid_tokens.clear()  # the bot token was revoked
    findings = doctor.check_slack(live.services.slack_client) + doctor.check_connections(
        live.services.db, live.services.cipher, live.services.tokens, live.services.freshbooks
    )
    failed = {f.check: f for f in findings if not f.ok}
    assert failed["slack auth.test"].detail == "Slack answered invalid_auth"
    assert "0/13 webhooks verified" in failed[f"freshbooks connection {new.connection.id}"].detail
    assert all(f.fix for f in failed.values())

    live.fake.valid_tokens.clear()
    live.fake.grants.clear()
    live.services.tokens.forget(new.connection.id)
    live.clock.advance(hours=12)
    (finding,) = doctor.check_connections(
        live.services.db, live.services.cipher, live.services.tokens, live.services.freshbooks
    )
    assert not finding.ok
    assert finding.fix == "run /freshbooks connect again"


def test_clock_skew_is_reported(live: Live) -> None:
    (finding,) = doctor.check_clock(
        live.slack.base_url, lambda: dt.datetime.now(dt.UTC) + dt.timedelta(minutes=9)
    )
    assert not finding.ok
    assert finding.fix == "enable NTP on this host"


def test_an_outdated_schema_is_reported(database_url: str) -> None:
    from storage import migrate

    db = Database(database_url)
    try:
        migrate.upgrade(db.engine, "0001")
        findings = {f.check: f for f in doctor.check_database(db)}
    finally:
        db.dispose()
    assert findings["database"].ok
    assert not findings["migrations"].ok
    assert findings["migrations"].fix == "fbslack db upgrade"


def test_the_command_exits_non_zero_and_says_what_to_do(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "FRESHBOOKS_", "DATABASE_URL"))}
    env.update(DATA_DIR=str(tmp_path), SLACK_API_URL="http://127.0.0.1:9/api/")
    subprocess.run(
        [sys.executable, "-m", "connector.ops.cli", "db", "upgrade"], env=env, check=True, capture_output=True
    )
    done = subprocess.run(
        [sys.executable, "-m", "connector.ops.cli", "doctor"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "PASS  database: reachable (sqlite)" in done.stdout
    assert "FAIL  configuration: incomplete" in done.stdout
    assert "fix: Set PUBLIC_URL" in done.stdout
    assert "FAIL  slack: not configured" in done.stdout
