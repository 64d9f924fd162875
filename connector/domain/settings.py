"""The one settings object: read from the environment once, validated at startup.

A bad value stops the app with a message naming the environment variable; secret values are
never echoed back in those messages.
"""

from __future__ import annotations

import enum
import io
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

log = logging.getLogger(__name__)

SECRET_FIELDS = frozenset(
    {
        "encryption_keys",
        "slack_signing_secret",
        "slack_bot_token",
        "slack_client_secret",
        "freshbooks_client_secret",
        "metrics_token",
    }
)


class ConfigError(Exception):
    """Raised when the environment does not describe a runnable app: one line per problem, each
    naming the variable and what to do."""


class Environment(enum.StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class LogFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"must be an http(s) URL, got {value!r}")
    return value


DATABASE_EXAMPLES = "sqlite:///path/to/fbslack.db or postgresql://user:password@host:5432/dbname"


def _check_database_url(value: str) -> str:
    """SQLite or PostgreSQL (psycopg 3), the two databases the app is built and tested on."""
    scheme, separator, _ = value.partition("://")
    if not separator or not scheme or not scheme.replace("+", "").isalnum():
        raise ValueError(f"not a database URL: use {DATABASE_EXAMPLES}")
    backend, _, driver = scheme.lower().partition("+")
    if backend == "sqlite":
        if driver not in ("", "pysqlite"):
            raise ValueError(
                f"the SQLite driver {driver!r} is not supported: use sqlite:///path/to/fbslack.db"
            )
        return value
    if backend not in ("postgres", "postgresql"):
        raise ValueError(
            f"{backend!r} databases are not supported: fbslack runs on SQLite or PostgreSQL "
            f"({DATABASE_EXAMPLES})"
        )
    if driver not in ("", "psycopg"):
        raise ValueError(
            f"the PostgreSQL driver {driver!r} is not supported: use postgresql://... (psycopg 3)"
        )
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when it is read
    except ValueError:
        raise ValueError("the port must be a number, e.g. postgresql://user@host:5432/dbname") from None
    return value


def redact_url(url: str) -> str:
    """The URL with its password (if any) replaced by ***, fit for a message or a log line."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


def _check_slack_install(client_id: str, authorize_url: str) -> None:
    """Multi-workspace mode: what Bolt's OAuth flow needs that no single field check can see.
    (Its redirect URL comes from PUBLIC_URL: until that is set, the install pages stay off and the
    `/` page says so, as for FreshBooks.)"""
    if len(client_id) > 32 or any(c.isspace() for c in client_id):
        # The installation tables key rows by it in a 32-character column (slack_sdk's layout).
        raise ValueError(
            "SLACK_CLIENT_ID: must be the app's Client ID (Basic Information > App Credentials), "
            "at most 32 characters, no spaces"
        )
    parts = urlsplit(authorize_url)
    if parts.query or parts.fragment:
        # Bolt appends `?state=...&client_id=...` to it.
        raise ValueError("SLACK_AUTHORIZE_URL: must not carry a query string or fragment")


class Settings(BaseModel):
    """Every setting the app reads. Field names are the environment variables, lower-cased.

    A plain pydantic model fed by `load_settings` rather than pydantic-settings' BaseSettings: the
    mapping is explicit, so tests pass their own environment and nothing leaks in from the shell.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    app_env: Environment = Environment.DEVELOPMENT
    data_dir: Path = Path("data")
    database_url: str | None = None
    encryption_keys: tuple[SecretStr, ...] = ()
    public_url: str | None = None
    host: str = "0.0.0.0"  # noqa: S104 - a server meant to sit behind a proxy or load balancer
    port: int = Field(default=3000, ge=1, le=65535)
    web_workers: int | None = Field(default=None, ge=1, le=64)
    web_threads: int | None = Field(default=None, ge=1, le=256)
    log_level: str = "INFO"
    log_format: LogFormat = LogFormat.TEXT

    slack_signing_secret: SecretStr | None = None
    slack_bot_token: SecretStr | None = None
    slack_client_id: str | None = None
    slack_client_secret: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    slack_authorize_url: str = "https://slack.com/oauth/v2/authorize"

    freshbooks_client_id: str | None = None
    freshbooks_client_secret: SecretStr | None = None
    freshbooks_api_url: str = "https://api.freshbooks.com"
    freshbooks_auth_url: str = "https://auth.freshbooks.com"
    freshbooks_timeout_seconds: float = Field(default=10.0, gt=0, le=120)

    inbox_sweep_seconds: int = Field(default=30, ge=1, le=3600)
    inbox_lease_seconds: int = Field(default=120, ge=5, le=3600)
    # The safety nets for what webhooks never say (connector.pipeline.enrich.reconcile): how often changes are
    # listed from FreshBooks, and how often invoices we know of are checked for going overdue.
    reconcile_poll_seconds: int = Field(default=600, ge=10, le=86400)
    overdue_scan_seconds: int = Field(default=86400, ge=10, le=7 * 86400)

    # Bearer token a Prometheus scrape of /metrics must present; unset, /metrics is open (keep it
    # off the public internet at the proxy, or set this).
    metrics_token: SecretStr | None = None
    # APP_ENV=production refuses an open /metrics unless the operator says so (queue depths and
    # error counts tell an outsider more than they should).
    metrics_public: bool = False
    # How long the audit trail (events, deliveries, attempts) is kept; 0 keeps it forever.
    retention_days: int = Field(default=365, ge=0, le=36500)

    @field_validator("encryption_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(k.strip() for k in value.split(",") if k.strip())
        return value

    @field_validator("encryption_keys")
    @classmethod
    def _check_keys(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        for index, key in enumerate(value, start=1):
            try:
                Fernet(key.get_secret_value())
            except (ValueError, TypeError):
                raise ValueError(
                    f"key #{index} is not a Fernet key (32 url-safe base64-encoded bytes; "
                    "make one with `fbslack keys generate`)"
                ) from None
        return value

    @field_validator("metrics_token")
    @classmethod
    def _check_metrics_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        token = value.get_secret_value().strip()  # compared with what follows "Bearer "
        if len(token) < 16 or any(c.isspace() for c in token):
            raise ValueError("must be at least 16 characters, no spaces (e.g. `openssl rand -hex 32`)")
        return SecretStr(token)

    @field_validator("public_url", mode="before")
    @classmethod
    def _check_public_url(cls, value: Any) -> Any:
        if value in (None, ""):
            return None
        return _http_url(str(value)).rstrip("/")

    @field_validator(
        "slack_api_url",
        "slack_authorize_url",
        "freshbooks_api_url",
        "freshbooks_auth_url",
    )
    @classmethod
    def _check_urls(cls, value: str) -> str:
        return _http_url(value)

    @field_validator("slack_api_url")
    @classmethod
    def _slack_api_trailing_slash(cls, value: str) -> str:
        # One spelling for every client built from it (WebClient, OAuth flow, token rotator).
        return value if value.endswith("/") else value + "/"

    @field_validator("freshbooks_api_url", "freshbooks_auth_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _check_database(cls, value: str | None) -> str | None:
        return None if value is None else _check_database_url(value)

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        level = value.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @field_validator(
        "slack_signing_secret",
        "slack_bot_token",
        "slack_client_secret",
        "freshbooks_client_secret",
        "metrics_token",
        mode="before",
    )
    @classmethod
    def _empty_secret_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("slack_client_id", "freshbooks_client_id", "database_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        if self.slack_bot_token and (self.slack_client_id or self.slack_client_secret):
            raise ValueError(
                "SLACK_BOT_TOKEN (single-workspace mode) and SLACK_CLIENT_ID/SLACK_CLIENT_SECRET "
                "(multi-workspace install) are mutually exclusive: set one or the other"
            )
        if bool(self.slack_client_id) != bool(self.slack_client_secret):
            missing = "SLACK_CLIENT_SECRET" if self.slack_client_id else "SLACK_CLIENT_ID"
            raise ValueError(f"{missing}: required when the other half of the Slack app pair is set")
        if self.slack_client_id:
            _check_slack_install(self.slack_client_id, self.slack_authorize_url)
        if bool(self.freshbooks_client_id) != bool(self.freshbooks_client_secret):
            missing = "FRESHBOOKS_CLIENT_SECRET" if self.freshbooks_client_id else "FRESHBOOKS_CLIENT_ID"
            raise ValueError(f"{missing}: required when the other half of the FreshBooks pair is set")
        if self.slack_bot_token and not self.slack_bot_token.get_secret_value().startswith(
            ("xoxb-", "xoxe.xoxb-")
        ):
            raise ValueError("SLACK_BOT_TOKEN: must be a bot token starting with 'xoxb-'")
        if self.app_env is Environment.PRODUCTION:
            if not self.encryption_keys:
                raise ValueError(
                    "ENCRYPTION_KEYS: required when APP_ENV=production "
                    "(generate one with `fbslack keys generate`)"
                )
            if not self.public_url:
                raise ValueError("PUBLIC_URL: required when APP_ENV=production")
            if urlsplit(self.public_url).scheme != "https":
                # Slack and FreshBooks send signed requests and OAuth codes to it.
                raise ValueError(
                    "PUBLIC_URL: must start with https:// when APP_ENV=production "
                    "(terminate TLS at a reverse proxy or load balancer in front of the app)"
                )
            if self.metrics_token is None and not self.metrics_public:
                raise ValueError(
                    "METRICS_TOKEN: required when APP_ENV=production (`openssl rand -hex 32`), "
                    "or set METRICS_PUBLIC=true to serve /metrics to anyone who can reach it"
                )
        return self

    # Derived values -------------------------------------------------------------------------

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return normalize_database_url(self.database_url)
        return f"sqlite:///{(self.data_dir / 'fbslack.db').resolve()}"

    @property
    def resolved_web_workers(self) -> int:
        """Two on either database: one Python process cannot use both cores (the GIL). SQLite's
        one writer is shared through storage.db.WriterLock, a queue across processes."""
        if self.web_workers is not None:
            return self.web_workers
        return 2

    @property
    def resolved_web_threads(self) -> int:
        """Eight: webhooks that arrive while a commit is in flight are stored together in the next
        one (connector.pipeline.ingest.batcher), so more concurrent requests mean fewer commits per webhook;
        on SQLite the one writer is no longer the queue it was."""
        if self.web_threads is not None:
            return self.web_threads
        return 8

    @property
    def slack_mode(self) -> str | None:
        """'single' (bot token), 'multi' (OAuth install) or None when Slack is not configured."""
        if not self.slack_signing_secret:
            return None
        if self.slack_bot_token:
            return "single"
        if self.slack_client_id:
            return "multi"
        return None

    @property
    def slack_redirect_uri(self) -> str | None:
        """Where Slack sends the installer back (multi-workspace mode); in manifest.yml too."""
        return f"{self.public_url}/slack/oauth_redirect" if self.public_url else None

    @property
    def freshbooks_redirect_uri(self) -> str | None:
        return f"{self.public_url}/freshbooks/oauth/callback" if self.public_url else None

    @property
    def slack_request_url(self) -> str | None:
        """Where Slack sends events, interactivity and the slash command (all three in manifest.yml)."""
        return f"{self.public_url}/slack/events" if self.public_url else None

    def urls_to_paste(self) -> list[tuple[str, str]]:
        """The addresses an operator pastes into Slack's and FreshBooks' app settings, with where
        each goes; empty until PUBLIC_URL is set."""
        if not self.public_url:
            return []
        urls = [
            (
                "Slack request URL (Event Subscriptions, Interactivity, Slash Commands)",
                f"{self.public_url}/slack/events",
            ),
            ("Slack redirect URL (OAuth & Permissions)", f"{self.public_url}/slack/oauth_redirect"),
            (
                "FreshBooks redirect URI (FreshBooks developer portal)",
                f"{self.public_url}/freshbooks/oauth/callback",
            ),
        ]
        if self.slack_client_id:
            urls.append(
                ("Install into a workspace (open it in the browser)", f"{self.public_url}/slack/install")
            )
        return urls

    @property
    def freshbooks_configured(self) -> bool:
        return bool(self.freshbooks_client_id and self.freshbooks_client_secret)

    def missing_setup(self) -> list[str]:
        """What an operator still has to configure, as human sentences (for `/` and the log)."""
        todo: list[str] = []
        if not self.public_url:
            todo.append(
                "Set PUBLIC_URL to the https address Slack and FreshBooks can reach this app at "
                "(webhook and OAuth redirect URLs are built from it)."
            )
        if not self.slack_signing_secret:
            todo.append(
                "Create the Slack app from manifest.yml and set SLACK_SIGNING_SECRET "
                "(Basic Information > App Credentials)."
            )
        if not (self.slack_bot_token or self.slack_client_id):
            todo.append(
                "Set SLACK_BOT_TOKEN (one workspace) or SLACK_CLIENT_ID and SLACK_CLIENT_SECRET "
                "(installable into many workspaces)."
            )
        if not self.freshbooks_configured:
            todo.append(
                "Register a FreshBooks app and set FRESHBOOKS_CLIENT_ID and "
                "FRESHBOOKS_CLIENT_SECRET (redirect URI: PUBLIC_URL/freshbooks/oauth/callback)."
            )
        return todo


def normalize_database_url(url: str) -> str:
    """Use the psycopg 3 driver for plain postgres URLs (the one PostgreSQL driver we ship)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


# Pydantic's wording for the common mistakes, said the way an operator would fix them.
_PLAIN_MESSAGES = {
    "int_parsing": "must be a whole number",
    "float_parsing": "must be a number",
    "bool_parsing": "must be true or false",
}


def _describe(error: Mapping[str, Any]) -> str:
    loc = error.get("loc") or ()
    field = str(loc[0]) if loc else ""
    message = _PLAIN_MESSAGES.get(str(error.get("type")), str(error.get("msg", "invalid value")))
    message = message.removeprefix("Value error, ").replace("Input should be", "must be")
    if not field:
        return message
    name = field.upper()
    value = error.get("input")
    if field in SECRET_FIELDS or value is None or isinstance(value, dict):
        return f"{name}: {message}"
    if field == "database_url":  # may carry a password
        value = redact_url(str(value))
    return f"{name}: {message} (got {value!r})"


def read_env_file(path: Path) -> dict[str, str]:
    """The settings a `.env` file holds (python-dotenv's syntax: NAME=value, # comments, quotes,
    ${VAR} expansion). No file: nothing. A line it cannot read stops the app rather than leaving
    a setting silently unset; the message gives the line number, never the line (it may hold a
    secret). A name with no `=` counts as unset."""
    from dotenv import dotenv_values
    from dotenv.parser import parse_stream

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.__class__.__name__})") from None
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            raise ConfigError(
                f"{path} line {binding.original.line}: not a NAME=value line "
                "(put values with spaces or # in quotes; comments start with #)"
            )
    values = dotenv_values(stream=io.StringIO(text))
    return {key: value for key, value in values.items() if value is not None}


def load_settings(environ: Mapping[str, str] | None = None, *, env_file: Path | None = None) -> Settings:
    """Build Settings from `environ` (default: os.environ) over the values of `env_file` (a `.env`:
    the environment wins); raise ConfigError with one line per bad variable."""
    source = {**(read_env_file(env_file) if env_file else {}), **(os.environ if environ is None else environ)}
    known = {name.upper() for name in Settings.model_fields}
    values = {key.lower(): value for key, value in source.items() if key.upper() in known}
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        raise ConfigError("\n".join(_describe(err) for err in exc.errors(include_url=False))) from None
