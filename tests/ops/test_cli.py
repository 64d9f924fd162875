"""`fbslack` as an operator runs it: real processes, real HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from tests.support.paths import REPO

FBSLACK = [sys.executable, "-m", "connector.ops.cli"]
MIGRATIONS = REPO / "storage" / "migrations" / "versions"


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FBSLACK, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=False
    )


def test_keys_generate_prints_a_fernet_key() -> None:
    done = run(["keys", "generate"], {})
    assert done.returncode == 0
    Fernet(done.stdout.strip())


def test_bad_setting_stops_with_its_name(tmp_path: Path) -> None:
    done = run(["serve"], {"PORT": "abc", "DATA_DIR": str(tmp_path)})
    assert done.returncode == 2
    assert "PORT" in done.stderr
    assert "Traceback" not in done.stderr


def test_production_without_keys_refuses_to_start(tmp_path: Path) -> None:
    done = run(
        ["serve"], {"APP_ENV": "production", "PUBLIC_URL": "https://x.example", "DATA_DIR": str(tmp_path)}
    )
    assert done.returncode == 2
    assert "ENCRYPTION_KEYS" in done.stderr


def test_db_upgrade_then_current(database_url: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": database_url, "DATA_DIR": str(tmp_path)}
    before = run(["db", "current"], env)
    assert before.returncode == 1
    assert "empty" in before.stdout
    upgrade = run(["db", "upgrade"], env)
    assert upgrade.returncode == 0, upgrade.stderr
    assert upgrade.stdout.startswith("database schema: empty -> ")
    assert upgrade.stdout.strip().endswith(sorted(p.name[:4] for p in MIGRATIONS.glob("0*.py"))[-1])
    after = run(["db", "current"], env)
    assert after.returncode == 0
    assert "up to date" in after.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_starts_from_nothing_on_sqlite(tmp_path: Path) -> None:
    """The README's first command: no database, no key, no Slack or FreshBooks settings."""
    port = _free_port()
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "WEB_WORKERS": "1", "WEB_THREADS": "2"}
    for name in list(env):
        if name.startswith(("SLACK_", "FRESHBOOKS_", "DATABASE_URL", "ENCRYPTION_KEYS", "PUBLIC_URL")):
            del env[name]
    process = subprocess.Popen(
        [*FBSLACK, "serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        health = None
        while time.monotonic() < deadline:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)  # polling a starting process, with a deadline
        assert health is not None and health.json() == {"status": "ok", "database": "ok"}
        page = httpx.get(f"http://127.0.0.1:{port}/").text
        for name in ("PUBLIC_URL", "SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN", "FRESHBOOKS_CLIENT_ID"):
            assert name in page
        assert (tmp_path / "data" / "fbslack.db").exists()
        assert (tmp_path / "data" / "encryption.key").exists()
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert "ENCRYPTION_KEYS is not set" in output
    assert output.count("generated a development key") == 1
    assert "setup: Set PUBLIC_URL" in output


@pytest.mark.parametrize("command", [["db"], ["keys"], ["frobnicate"]])
def test_usage_errors(command: list[str]) -> None:
    done = run(command, {})
    assert done.returncode == 2
    assert "usage: fbslack" in done.stderr
