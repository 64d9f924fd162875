"""`fbslack` as an operator runs it: real processes, real HTTP."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from cryptography.fernet import Fernet

from connector.domain.settings import Settings
from connector.ops.cli import ENV_FILE_VARIABLE, build_parser
from storage.db import Database
from tests.support.live import PG_DSN, PG_UNAVAILABLE
from tests.support.paths import REPO

FBSLACK = [sys.executable, "-m", "connector.ops.cli"]
MIGRATIONS = REPO / "storage" / "migrations" / "versions"


def run(
    args: list[str], env: dict[str, str], cwd: Path | None = None, *, inherit: bool = True
) -> subprocess.CompletedProcess[str]:
    """`fbslack ARGS` with `env` over this environment (`inherit`, without its fbslack settings),
    or with `env` alone."""
    return subprocess.run(
        [*FBSLACK, *args],
        env={**clean_environment(), **env} if inherit else env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def clean_environment() -> dict[str, str]:
    """This process's environment without any fbslack setting (the shell's must not leak in)."""
    names = {name.upper() for name in Settings.model_fields}
    return {k: v for k, v in os.environ.items() if k.upper() not in names}


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a command stopped by a bad setting (exit code 2, no traceback)."""
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("fbslack: ")
    return lines[0]


def test_keys_generate_prints_a_fernet_key() -> None:
    done = run(["keys", "generate"], {})
    assert done.returncode == 0
    Fernet(done.stdout.strip())


def test_bad_setting_stops_with_its_name(tmp_path: Path) -> None:
    done = run(["serve"], {"PORT": "abc", "DATA_DIR": str(tmp_path)})
    assert one_line_error(done) == "fbslack: PORT: must be a whole number (got 'abc')"


UNREACHABLE_PG = "postgresql://fb:pg-secret-pw@127.0.0.1:1/fbslack"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("nonsense", "fbslack: DATABASE_URL: not a database URL: use sqlite:///"),
        ("mysql://fb:pg-secret-pw@db/fb", "fbslack: DATABASE_URL: 'mysql' databases are not supported"),
        (UNREACHABLE_PG, "fbslack: DATABASE_URL: cannot connect to PostgreSQL at 127.0.0.1:1/fbslack ("),
    ],
    ids=["unparsable", "unsupported", "unreachable"],
)
def test_a_bad_database_url_stops_serve_with_one_line(tmp_path: Path, url: str, expected: str) -> None:
    line = one_line_error(run(["serve"], {"DATABASE_URL": url, "DATA_DIR": str(tmp_path)}))
    assert line.startswith(expected)
    assert "pg-secret-pw" not in line


def test_an_unreachable_database_says_where_and_the_drivers_reason(tmp_path: Path) -> None:
    line = one_line_error(run(["serve"], {"DATABASE_URL": UNREACHABLE_PG, "DATA_DIR": str(tmp_path)}))
    assert "127.0.0.1:1" in line
    assert "(Connection refused)" in line  # psycopg's reason, without its repeat of host and port


@pytest.mark.parametrize(
    "command",
    [
        ["worker", "--wake-path", "/nonexistent/wake"],
        ["db", "upgrade"],
        ["db", "current"],
        ["keys", "rotate"],
        ["audit", "acme"],
        ["replay", "failed", "--yes"],
        ["simulate", "invoice.create"],
    ],
    ids=lambda command: "-".join(command[:2]),
)
def test_every_command_stops_with_one_line_on_an_unreachable_database(
    tmp_path: Path, command: list[str]
) -> None:
    line = one_line_error(run(command, {"DATABASE_URL": UNREACHABLE_PG, "DATA_DIR": str(tmp_path)}))
    assert line.startswith("fbslack: DATABASE_URL: cannot connect to PostgreSQL at 127.0.0.1:1/fbslack")


@pytest.mark.parametrize("command", [["worker", "--wake-path", "/nonexistent/wake"], ["audit", "acme"]])
def test_a_schema_behind_the_code_stops_commands_with_one_line(
    database_url: str, tmp_path: Path, command: list[str]
) -> None:
    Database(database_url).ping()  # the database exists, with no tables
    line = one_line_error(run(command, {"DATABASE_URL": database_url, "DATA_DIR": str(tmp_path)}))
    assert " is behind (empty, latest " in line
    assert line.endswith("): run `fbslack db upgrade`")


def test_serve_on_postgresql_refuses_a_schema_behind_the_code(tmp_path: Path) -> None:
    if PG_UNAVAILABLE:
        pytest.skip(PG_UNAVAILABLE)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        url = f"{PG_DSN}?options=-csearch_path%3D{schema}"
        env = {"DATABASE_URL": url, "DATA_DIR": str(tmp_path), "HOST": "127.0.0.1", "PORT": str(_free_port())}
        line = one_line_error(run(["serve"], env))
        assert line.startswith("fbslack: the database schema of the PostgreSQL at ")
        assert line.endswith("): run `fbslack db upgrade`")
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.mark.parametrize("shape", ["file", "under-a-file"])
def test_an_unwritable_data_dir_stops_serve_with_one_line(tmp_path: Path, shape: str) -> None:
    # (Tests may run as root, for whom permission bits do not stop a write: a file stands in.)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    data_dir = blocker if shape == "file" else blocker / "data"
    line = one_line_error(run(["serve"], {"DATA_DIR": str(data_dir)}))
    assert line.startswith("fbslack: DATA_DIR: ")
    assert str(data_dir) in line
    assert not (tmp_path / "data").exists()


def test_a_port_in_use_stops_serve_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run(["serve"], {"HOST": "127.0.0.1", "PORT": str(port), "DATA_DIR": str(tmp_path / "data")})
    assert one_line_error(done) == (
        f"fbslack: PORT: {port} is already in use on 127.0.0.1 (another program, or another "
        "`fbslack serve`): stop it or set PORT to a free port"
    )
    assert not (tmp_path / "data").exists()  # checked before anything is created


def test_env_file_in_the_working_folder_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    as_operators_run_it = {k: v for k, v in clean_environment().items() if k != ENV_FILE_VARIABLE}
    (tmp_path / ".env").write_text(f"DATABASE_URL=sqlite:///{tmp_path}/from-env-file.db\n")
    done = run(["db", "current"], as_operators_run_it, cwd=tmp_path, inherit=False)
    assert done.returncode == 1, done.stderr
    assert f"no database at {tmp_path}/from-env-file.db" in done.stdout
    environment = {**as_operators_run_it, "DATABASE_URL": f"sqlite:///{tmp_path}/from-environment.db"}
    done = run(["db", "current"], environment, cwd=tmp_path, inherit=False)
    assert f"no database at {tmp_path}/from-environment.db" in done.stdout
    assert not list(tmp_path.glob("*.db"))  # `db current` creates no database

    # The test suite's own setting: no file is read.
    done = run(["db", "current"], {}, cwd=tmp_path)
    assert f"no database at {tmp_path}/from-env-file.db" not in done.stdout

    named = {**as_operators_run_it, ENV_FILE_VARIABLE: str(tmp_path / "elsewhere.env")}
    assert one_line_error(run(["db", "current"], named, cwd=tmp_path, inherit=False)) == (
        f"fbslack: FBSLACK_ENV_FILE: there is no file at {tmp_path}/elsewhere.env"
    )

    (tmp_path / ".env").write_text("PORT=3000\nSLACK_SIGNING_SECRET not-shown-anywhere\n")
    line = one_line_error(run(["serve"], as_operators_run_it, cwd=tmp_path, inherit=False))
    assert line.startswith("fbslack: .env line 2: not a NAME=value line")
    assert "not-shown-anywhere" not in line


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
    assert "Running upgrade" not in upgrade.stderr  # Alembic's narration stays out of the way
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


def test_serve_output_is_what_an_operator_needs(tmp_path: Path) -> None:
    """Two web workers and the background process, Slack in single-workspace mode: the setup
    warnings come once (from the master), and neither Alembic's narration of the schema upgrade
    nor Bolt's warning about the token it reads from the environment shows."""
    port = _free_port()
    env = {
        **clean_environment(),
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "WEB_WORKERS": "2",
        "WEB_THREADS": "2",
        "SLACK_SIGNING_SECRET": "s" * 32,
        "SLACK_BOT_TOKEN": "xoxb-1-unused-here",
        "SLACK_API_URL": "http://127.0.0.1:9/api/",
    }
    process = subprocess.Popen(
        [*FBSLACK, "serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or ()), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        # Up once the background process runs and both workers have booted their app.
        while time.monotonic() < deadline and not (
            any("background worker running" in line for line in lines) and _answers(port)
        ):
            time.sleep(0.1)  # polling a starting process, with a deadline
        assert _answers(port), "".join(lines)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        reader.join(timeout=10)
    output = "".join(lines)
    assert output.count("setup: Set PUBLIC_URL") == 1, output
    assert output.count("setup: Register a FreshBooks app") == 1, output
    assert "SLACK_BOT_TOKEN" not in output  # set, so never asked for
    for noise in ("Context impl", "Will assume transactional DDL", "Running upgrade", "will be unused"):
        assert noise not in output


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.parametrize("command", [["db"], ["keys"], ["frobnicate"]])
def test_usage_errors(command: list[str]) -> None:
    done = run(command, {})
    assert done.returncode == 2
    assert "usage: fbslack" in done.stderr


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every runnable command: its words after `fbslack`, and its parser."""
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers:
        yield path, parser
    for action in subparsers:
        for name, child in action.choices.items():
            yield from _commands(child, (*path, name))


COMMANDS = dict(_commands(build_parser()))


def test_every_command_is_listed_with_a_summary() -> None:
    assert {"serve", "doctor", "simulate", "worker", "audit", "replay"} <= {p[0] for p in COMMANDS}
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            assert [c.dest for c in action._choices_actions if not c.help] == []


@pytest.mark.parametrize("words", list(COMMANDS), ids=" ".join)
def test_help_explains_every_option(words: tuple[str, ...]) -> None:
    parser = COMMANDS[words]
    done = run([*words, "--help"], {})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: fbslack {' '.join(words)} ")
    text = " ".join(done.stdout.split())  # argparse wraps the help text
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"{' '.join(words)} {action.option_strings or action.dest} has no help"
        assert " ".join(action.help.split()) in text


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["serve", "--workers", "0"], "fbslack serve: --workers must be a whole number, 1 or more (got 0)"),
        (
            ["serve", "--threads", "many"],
            "fbslack serve: --threads must be a whole number, 1 or more (got many)",
        ),
        (
            ["simulate", "invoice.create", "--amount", "abc"],
            "fbslack simulate: --amount must be a number more than 0 with at most 2 decimals, "
            "e.g. 5000 or 5,000.00 (got abc)",
        ),
        (
            ["simulate", "invoice.create", "--currency", "dollars"],
            "fbslack simulate: --currency must be a three-letter currency code, e.g. USD (got dollars)",
        ),
        (["audit", "--limit", "x"], "fbslack audit: --limit must be a whole number (got x)"),
        (
            ["frobnicate"],
            "fbslack: frobnicate is not a command: choose from serve, ",
        ),
        (["db", "frob"], "fbslack db: frob is not a command: choose from upgrade, current"),
    ],
    ids=["workers", "threads", "amount", "currency", "limit", "command", "subcommand"],
)
def test_cli_errors_speak_command_line(args: list[str], error: str) -> None:
    done = run(args, {})
    assert done.returncode == 2
    *usage, last = done.stderr.splitlines()
    assert usage[0].startswith("usage: fbslack")
    assert last.startswith(error)
    assert "'" not in last  # no Python repr
