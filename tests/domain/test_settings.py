"""Configuration: defaults, validation, and error messages that name the variable."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from connector.domain.settings import ConfigError, Settings, load_settings, normalize_database_url
from tests.support.paths import REPO


def test_defaults_need_nothing(tmp_path: Path) -> None:
    settings = load_settings({"DATA_DIR": str(tmp_path)})
    assert settings.port == 3000
    assert settings.resolved_database_url == f"sqlite:///{(tmp_path / 'fbslack.db').resolve()}"
    assert settings.slack_api_url == "https://slack.com/api/"
    assert settings.slack_authorize_url == "https://slack.com/oauth/v2/authorize"
    assert settings.freshbooks_api_url == "https://api.freshbooks.com"
    assert settings.freshbooks_auth_url == "https://auth.freshbooks.com"
    assert settings.slack_mode is None
    assert len(settings.missing_setup()) == 4


def test_reconciliation_intervals_default_to_ten_minutes_and_a_day() -> None:
    settings = load_settings({})
    assert (settings.reconcile_poll_seconds, settings.overdue_scan_seconds) == (600, 86400)
    tuned = load_settings({"RECONCILE_POLL_SECONDS": "60", "OVERDUE_SCAN_SECONDS": "3600"})
    assert (tuned.reconcile_poll_seconds, tuned.overdue_scan_seconds) == (60, 3600)


def test_unrelated_environment_is_ignored() -> None:
    assert load_settings({"HOME": "/root", "PATH": "/bin"}).port == 3000


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"PORT": "eighty"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"PUBLIC_URL": "ftp://x"}, "PUBLIC_URL"),
        ({"SLACK_API_URL": "slack.com/api"}, "SLACK_API_URL"),
        ({"FRESHBOOKS_API_URL": "nope"}, "FRESHBOOKS_API_URL"),
        ({"APP_ENV": "staging"}, "APP_ENV"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"ENCRYPTION_KEYS": "not-a-key"}, "ENCRYPTION_KEYS"),
        ({"SLACK_CLIENT_ID": "123.456"}, "SLACK_CLIENT_SECRET"),
        ({"FRESHBOOKS_CLIENT_SECRET": "s"}, "FRESHBOOKS_CLIENT_ID"),
        ({"SLACK_BOT_TOKEN": "xoxp-user-token"}, "SLACK_BOT_TOKEN"),
        ({"APP_ENV": "production", "PUBLIC_URL": "https://fb.example.com"}, "ENCRYPTION_KEYS"),
        ({"RECONCILE_POLL_SECONDS": "0"}, "RECONCILE_POLL_SECONDS"),
        ({"RECONCILE_POLL_SECONDS": "ten"}, "RECONCILE_POLL_SECONDS"),
        ({"OVERDUE_SCAN_SECONDS": "9"}, "OVERDUE_SCAN_SECONDS"),
        ({"OVERDUE_SCAN_SECONDS": str(8 * 86400)}, "OVERDUE_SCAN_SECONDS"),
        ({"DATABASE_URL": "nonsense"}, "DATABASE_URL: not a database URL"),
        ({"DATABASE_URL": "mysql://u@h/db"}, "DATABASE_URL: 'mysql' databases are not supported"),
        ({"DATABASE_URL": "postgresql+asyncpg://u@h/db"}, "DATABASE_URL: the PostgreSQL driver 'asyncpg'"),
        ({"DATABASE_URL": "postgresql://u@h:port/db"}, "DATABASE_URL: the port must be a number"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert names in str(info.value)


def test_secret_values_are_not_echoed() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"ENCRYPTION_KEYS": "super-secret-but-wrong"})
    assert "super-secret-but-wrong" not in str(info.value)
    assert "key #1" in str(info.value)


def test_bot_token_and_oauth_pair_are_exclusive() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_CLIENT_ID": "1.2", "SLACK_CLIENT_SECRET": "s"})
    assert "SLACK_BOT_TOKEN" in str(info.value)
    assert "SLACK_CLIENT_ID" in str(info.value)


def test_production_needs_keys_and_public_url() -> None:
    key = Fernet.generate_key().decode()
    with pytest.raises(ConfigError) as info:
        load_settings({"APP_ENV": "production", "ENCRYPTION_KEYS": key})
    assert "PUBLIC_URL" in str(info.value)
    settings = load_settings(
        {
            "APP_ENV": "production",
            "ENCRYPTION_KEYS": key,
            "PUBLIC_URL": "https://fb.example.com/",
            "METRICS_PUBLIC": "true",
        }
    )
    assert settings.public_url == "https://fb.example.com"


def test_production_refuses_plain_http_and_an_open_metrics_endpoint() -> None:
    base = {"APP_ENV": "production", "ENCRYPTION_KEYS": Fernet.generate_key().decode()}
    token = "0123456789abcdef0123"
    with pytest.raises(ConfigError) as info:
        load_settings({**base, "PUBLIC_URL": "http://fb.example.com", "METRICS_TOKEN": token})
    assert "PUBLIC_URL: must start with https://" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_settings({**base, "PUBLIC_URL": "https://fb.example.com"})
    assert "METRICS_TOKEN: required when APP_ENV=production" in str(info.value)
    assert "METRICS_PUBLIC=true" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_settings({**base, "PUBLIC_URL": "https://fb.example.com", "METRICS_PUBLIC": "maybe"})
    assert "METRICS_PUBLIC" in str(info.value)
    assert load_settings(
        {**base, "PUBLIC_URL": "https://fb.example.com", "METRICS_TOKEN": token}
    ).metrics_token
    assert load_settings({**base, "PUBLIC_URL": "https://fb.example.com", "METRICS_PUBLIC": "true"})
    # Development keeps both open, as before.
    assert load_settings({"PUBLIC_URL": "http://127.0.0.1:3000"}).public_url == "http://127.0.0.1:3000"


def test_serve_with_a_bad_production_setting_says_one_line_and_no_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k.upper() not in {n.upper() for n in Settings.model_fields}}
    env.update(
        APP_ENV="production",
        ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        PUBLIC_URL="http://fb.example.com",
        DATA_DIR=str(tmp_path),
    )
    done = subprocess.run(
        [sys.executable, "-m", "connector.ops.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "fbslack: PUBLIC_URL: must start with https:// when APP_ENV=production "
        "(terminate TLS at a reverse proxy or load balancer in front of the app)"
    ]


def test_several_keys_first_one_encrypts() -> None:
    new, old = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings = load_settings({"ENCRYPTION_KEYS": f" {new} , {old} "})
    assert [k.get_secret_value() for k in settings.encryption_keys] == [new, old]
    assert new not in repr(settings)


def test_modes_and_what_is_left_to_do() -> None:
    single = load_settings({"SLACK_SIGNING_SECRET": "s", "SLACK_BOT_TOKEN": "xoxb-1"})
    assert single.slack_mode == "single"
    multi = load_settings({"SLACK_SIGNING_SECRET": "s", "SLACK_CLIENT_ID": "1.2", "SLACK_CLIENT_SECRET": "c"})
    assert multi.slack_mode == "multi"
    done = load_settings(
        {
            "SLACK_SIGNING_SECRET": "s",
            "SLACK_BOT_TOKEN": "xoxb-1",
            "PUBLIC_URL": "https://fb.example.com",
            "FRESHBOOKS_CLIENT_ID": "id",
            "FRESHBOOKS_CLIENT_SECRET": "secret",
        }
    )
    assert done.missing_setup() == []


def test_urls_are_normalised() -> None:
    settings = load_settings(
        {
            "SLACK_API_URL": "http://127.0.0.1:9/api",
            "FRESHBOOKS_API_URL": "http://127.0.0.1:9/",
            "DATABASE_URL": "postgres://u@h/db",
        }
    )
    assert settings.slack_api_url == "http://127.0.0.1:9/api/"
    assert settings.freshbooks_api_url == "http://127.0.0.1:9"
    assert settings.resolved_database_url == "postgresql+psycopg://u@h/db"
    assert normalize_database_url("sqlite:///x.db") == "sqlite:///x.db"


def test_empty_values_count_as_unset() -> None:
    settings = load_settings({"SLACK_BOT_TOKEN": "", "DATABASE_URL": "", "SLACK_CLIENT_ID": ""})
    assert settings.slack_bot_token is None
    assert settings.database_url is None


def test_server_sizes_default_to_two_workers_of_eight_threads() -> None:
    sqlite = load_settings({})
    assert (sqlite.resolved_web_workers, sqlite.resolved_web_threads) == (2, 8)
    postgres = load_settings({"DATABASE_URL": "postgresql://u@h/db"})
    assert (postgres.resolved_web_workers, postgres.resolved_web_threads) == (2, 8)
    chosen = load_settings({"WEB_WORKERS": "3", "WEB_THREADS": "6"})
    assert (chosen.resolved_web_workers, chosen.resolved_web_threads) == (3, 6)


def test_each_bad_variable_is_one_line_in_plain_words() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"PORT": "eighty", "METRICS_PUBLIC": "maybe", "FRESHBOOKS_TIMEOUT_SECONDS": "soon"})
    assert str(info.value).splitlines() == [
        "PORT: must be a whole number (got 'eighty')",
        "FRESHBOOKS_TIMEOUT_SECONDS: must be a number (got 'soon')",
        "METRICS_PUBLIC: must be true or false (got 'maybe')",
    ]


def test_a_database_password_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"DATABASE_URL": "mysql://fb:hunter2-secret@db.internal/fb"})
    assert "hunter2-secret" not in str(info.value)
    assert "mysql://fb:***@db.internal/fb" in str(info.value)


@pytest.mark.parametrize(
    "url",
    ["sqlite:///data/x.db", "sqlite:////abs/x.db", "postgres://u@h/db", "postgresql+psycopg://u:p@h:5433/db",
     "postgresql:///db"],
)  # fmt: skip
def test_sqlite_and_postgresql_urls_are_accepted(url: str) -> None:
    assert load_settings({"DATABASE_URL": url}).database_url == url


# -- .env ------------------------------------------------------------------------------------------


def test_env_file_values_apply_and_the_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# comments and blank lines are fine\n\n"
        "PORT=4000\n"
        "export LOG_LEVEL=debug\n"
        'PUBLIC_URL="https://fb.example.com"  # a trailing comment\n'
        "SLACK_CLIENT_ID\n"  # a name with no value: unset
        "UNRELATED=whatever\n"
    )
    settings = load_settings({}, env_file=env_file)
    assert (settings.port, settings.log_level, settings.public_url) == (
        4000,
        "DEBUG",
        "https://fb.example.com",
    )
    assert settings.slack_client_id is None
    assert load_settings({"PORT": "5000"}, env_file=env_file).port == 5000
    assert load_settings({}, env_file=tmp_path / "absent.env").port == 3000


def test_a_bad_env_line_stops_with_its_number_and_never_its_text(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("PORT=4000\nSLACK_BOT_TOKEN xoxb-not-shown\n")
    with pytest.raises(ConfigError) as info:
        load_settings({}, env_file=env_file)
    assert str(info.value).splitlines() == [
        f"{env_file} line 2: not a NAME=value line (put values with spaces or # in quotes; "
        "comments start with #)"
    ]
    assert "xoxb" not in str(info.value)


def test_a_bad_value_in_env_file_names_its_variable(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("PORT=eighty\n")
    with pytest.raises(ConfigError) as info:
        load_settings({}, env_file=env_file)
    assert str(info.value) == "PORT: must be a whole number (got 'eighty')"


def test_env_example_lists_every_setting_at_its_default() -> None:
    example = REPO / ".env.example"
    text = example.read_text()
    for name in Settings.model_fields:
        assert re.search(rf"^(# )?{name.upper()}=", text, re.MULTILINE), (
            f"{name.upper()} is not in .env.example"
        )
    # An untouched copy changes nothing.
    assert load_settings({}, env_file=example) == load_settings({})
