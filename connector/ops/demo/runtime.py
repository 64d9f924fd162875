"""`fbslack demo`: the real app (app.create_app: same pipeline, storage, rules, renderers, pacing and
audit) wired to the sandbox FreshBooks and the Slack stand-in, on its own database, with the demo
page beside it on the same 127.0.0.1 port.

Only the outside world is replaced, through the settings the app already reads (SLACK_API_URL,
FRESHBOOKS_API_URL, ...): webhooks reach the app signed over HTTP, slash commands signed as Slack
signs them, and the app's posts reach the stand-in through slack_sdk. The demo's Slack and
FreshBooks credentials are made up per run and never leave this process.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import secrets
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from slack_sdk.signature import SignatureVerifier

from connector.domain.clock import system_clock
from connector.domain.events import SUPPORTED_EVENTS
from connector.domain.rules import RouteSpec
from connector.domain.settings import Settings, load_settings
from connector.features.rules.service import RuleService
from connector.freshbooks.callbacks import webhook_url
from connector.ops.demo import business as books
from connector.ops.demo.sandbox import CLIENT_ID, CLIENT_SECRET, Sandbox
from connector.ops.demo.slack_standin import ADMIN_ID, ADMIN_NAME, APP_ID, TEAM_ID, SlackStandIn
from storage import connections, migrate
from storage.crypto import build_cipher, generate_key
from storage.db import Database

if TYPE_CHECKING:
    from app import Services

log = logging.getLogger(__name__)

DEMO_DATABASE = "demo.db"
# The variables that make a real Slack app: with any of them set, this server is not a sandbox.
SLACK_CREDENTIALS = ("SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN", "SLACK_CLIENT_ID")
REFUSAL = "the demo is never reachable once Slack credentials are set"
# The demo's channels (id, name); messages appear there through the seeded rules.
CHANNELS = (("CDEMOFIN01", "finance"), ("CDEMOSAL01", "sales"), ("CDEMOEXE01", "exec-alerts"))
# Seeded rules: (events, channel name, minimum amount).
RULES: tuple[tuple[tuple[str, ...], str, str | None], ...] = (
    (("invoice", "payment"), "finance", None),
    (("bill", "expense"), "finance", None),
    (("invoice.create", "invoice.sendByEmail", "invoice.paid"), "sales", None),
    (("invoice.overdue",), "exec-alerts", None),
    (("invoice.paid", "payment.create", "bill.create"), "exec-alerts", "5000"),
)
# The app's overdue scan runs daily by default; in the demo, often enough to see it.
OVERDUE_SCAN_SECONDS = 10


class DemoRefused(Exception):
    """The demo cannot run here; the message is one line for the person who tried."""


def slack_credentials_in(environ: Mapping[str, str]) -> bool:
    """Whether any Slack credential variable is set (to anything but blanks). Pure."""
    return any(environ.get(name, "").strip() for name in SLACK_CREDENTIALS)


def slack_credentials_set(environ: Mapping[str, str], settings: Settings) -> bool:
    """Whether a real Slack app is configured (in the environment or the loaded settings). Pure."""
    configured = (settings.slack_signing_secret, settings.slack_bot_token, settings.slack_client_id)
    return slack_credentials_in(environ) or any(configured)


def demo_database(data_dir: Path) -> Path:
    return data_dir / DEMO_DATABASE


def fresh_database(path: Path) -> str:
    """Remove an earlier run's demo database (and its SQLite side files): each run starts anew."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)
    return f"sqlite:///{path.resolve()}"


def hold_demo_lock(data_dir: Path) -> int:
    """An exclusive lock on DATA_DIR/demo.lock for this process's life (its descriptor): a second
    demo on the same DATA_DIR would otherwise delete the first one's database under it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / "demo.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DemoRefused(
            f"another fbslack demo is running with DATA_DIR {data_dir}: stop it, or set another DATA_DIR"
        ) from None
    return fd


def link_channels(text: str, channels: Mapping[str, str]) -> str:
    """`#finance` typed in the command box becomes `<#C…|finance>`, as Slack sends a picked channel. Pure."""
    words = []
    for word in text.split(" "):
        name = word[1:] if word.startswith("#") else None
        channel_id = channels.get(name.rstrip(",")) if name else None
        words.append(f"<#{channel_id}|{name}>" if channel_id and name else word)
    return " ".join(words)


def demo_environment(
    user: Settings,
    *,
    url: str,
    database_url: str,
    slack_api_url: str,
    freshbooks_url: str,
    bot_token: str,
    signing_secret: str,
) -> dict[str, str]:
    """The settings the demo's app runs with: the outside world is the sandbox and the stand-in. Pure."""
    return {
        "APP_ENV": "development",
        "DATA_DIR": str(user.data_dir),
        "DATABASE_URL": database_url,
        "ENCRYPTION_KEYS": generate_key(),  # a fresh key per run: the demo database is fresh too
        "PUBLIC_URL": url,
        "HOST": "127.0.0.1",
        "LOG_LEVEL": user.log_level,
        "LOG_FORMAT": user.log_format,
        "SLACK_SIGNING_SECRET": signing_secret,
        "SLACK_BOT_TOKEN": bot_token,
        "SLACK_API_URL": slack_api_url,
        "FRESHBOOKS_CLIENT_ID": CLIENT_ID,
        "FRESHBOOKS_CLIENT_SECRET": CLIENT_SECRET,
        "FRESHBOOKS_API_URL": freshbooks_url,
        "FRESHBOOKS_AUTH_URL": freshbooks_url,
        "OVERDUE_SCAN_SECONDS": str(OVERDUE_SCAN_SECONDS),
    }


@dataclass
class Demo:
    """A running demo: the app at `url`, its sandbox FreshBooks and its Slack stand-in."""

    url: str
    settings: Settings
    sandbox: Sandbox
    slack: SlackStandIn
    signing_secret: str
    connection_id: int
    services: Services = field(init=False)  # the app's, once it is built
    _timers: list[threading.Timer] = field(default_factory=list)
    _http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=15))

    @property
    def page_url(self) -> str:
        return f"{self.url}/demo/"

    def channel_ids(self) -> dict[str, str]:
        return {name: channel_id for channel_id, name in CHANNELS}

    # -- what the page's buttons and box do ----------------------------------------------------------

    def fire(self, action: str) -> list[books.Change]:
        """Make a change in the sandbox FreshBooks and deliver its webhooks to the app."""
        _label, make = books.ACTIONS[action]
        changes = self.sandbox.change(make)
        self.sandbox.deliver(changes)
        self.refresh_home_soon()
        return changes

    def _signed_post(self, body: str, content_type: str) -> httpx.Response:
        timestamp = str(int(system_clock().timestamp()))
        signature = SignatureVerifier(self.signing_secret).generate_signature(timestamp=timestamp, body=body)
        return self._http.post(
            f"{self.url}/slack/events",
            content=body,
            headers={
                "Content-Type": content_type,
                "X-Slack-Request-Timestamp": timestamp,
                "X-Slack-Signature": signature or "",
            },
        )

    def command(self, text: str) -> str:
        """Send `/freshbooks <text>` as Slack does (signed, with a response_url); the command's id.
        Its answers land in the stand-in's ephemerals under that id."""
        command_id, response_url = self.slack.new_response_url()
        body = urllib.parse.urlencode(
            {
                "token": "unused",
                "team_id": TEAM_ID,
                "team_domain": "maple-birch",
                "channel_id": CHANNELS[0][0],
                "channel_name": CHANNELS[0][1],
                "user_id": ADMIN_ID,
                "user_name": ADMIN_NAME,
                "command": "/freshbooks",
                "text": link_channels(text, self.channel_ids()),
                "api_app_id": APP_ID,
                "response_url": response_url,
                "trigger_id": f"{int(system_clock().timestamp())}.{secrets.token_hex(8)}",
            }
        )
        answer = self._signed_post(body, "application/x-www-form-urlencoded")
        if answer.content:
            try:
                message = answer.json()
            except ValueError:
                message = {"text": answer.text}
        else:
            message = {}
        self.slack.add_ephemeral(command_id, "command", {"command": f"/freshbooks {text}", **message})
        self.refresh_home_soon()
        return command_id

    def open_home(self) -> None:
        """The admin opens the App Home tab: Slack sends app_home_opened and the app publishes it."""
        event = {
            "type": "app_home_opened",
            "user": ADMIN_ID,
            "channel": "DDEMOHOME",
            "tab": "home",
            "event_ts": f"{system_clock().timestamp():.6f}",
        }
        body = json.dumps(
            {
                "token": "unused",
                "team_id": TEAM_ID,
                "api_app_id": APP_ID,
                "event": event,
                "type": "event_callback",
                "event_id": f"Ev{secrets.token_hex(8).upper()}",
                "event_time": int(system_clock().timestamp()),
                "authorizations": [{"team_id": TEAM_ID, "user_id": "UDEMOBOT", "is_bot": True}],
            }
        )
        try:
            self._signed_post(body, "application/json")
        except httpx.HTTPError as exc:
            log.warning("demo: could not open the App Home (%s)", type(exc).__name__)

    def refresh_home_soon(self, delays: Iterable[float] = (1.5, 5.0, 12.0)) -> None:
        """Slack republishes the Home only when it is opened: open it again as deliveries land."""
        for delay in delays:
            timer = threading.Timer(delay, self.open_home)
            timer.daemon = True
            timer.start()
            self._timers.append(timer)
        self._timers = [t for t in self._timers if t.is_alive()]

    def simulate(self, event: str, amount: str | None, client: str | None, currency: str | None) -> str:
        """`fbslack simulate EVENT --url <demo>`: the CLI asks the demo, which holds the database
        and the keys, to send the signed sample (connector.ops.simulate, unchanged)."""
        from connector.ops import simulate

        def parsed(parse: Callable[[str], Any], text: str | None) -> Any:
            try:
                return parse(text) if text is not None else None
            except ValueError as exc:
                raise simulate.SimulateError(str(exc)) from None

        sample = simulate.Sample.of(
            event,
            amount=parsed(simulate.parse_amount, amount),
            party=parsed(simulate.parse_name, client),
            currency=parsed(simulate.parse_currency, currency),
        )
        result = simulate.simulate(
            sample,
            db=self.services.db,
            cipher=self.services.cipher,
            base_url=self.url,
            connection_id=self.connection_id,
            now=system_clock(),
        )
        self.refresh_home_soon()
        return simulate.describe(sample, result)

    def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._http.close()


def seed(settings: Settings, sandbox: Sandbox, slack: SlackStandIn) -> int:
    """The workspace, its FreshBooks connection (connected, every webhook verified) and the rules; the
    connection's id. Written as the app itself writes them (storage, RuleService)."""
    db = Database(settings.resolved_database_url, pool_size=1)
    cipher = build_cipher(settings)
    now = system_clock()
    try:
        migrate.upgrade(db.engine)
        access, refresh, expires = sandbox.grant()
        with db.session() as session:
            workspace = connections.ensure_workspace(session, team_id=TEAM_ID, now=now)
            new = connections.create_connection(
                session,
                cipher,
                workspace_id=workspace.id,
                account_id=books.ACCOUNT_ID,
                business_id=books.BUSINESS_ID,
                business_name=books.BUSINESS_NAME,
                access_token=access,
                refresh_token=refresh,
                token_expires_at=expires,
                now=now,
                connected_by_user_id=ADMIN_ID,
            )
            connection_id = new.connection.id
            assert settings.public_url is not None
            uri = webhook_url(settings.public_url, new.webhook_token)
            for event in SUPPORTED_EVENTS:
                callback = sandbox.add_verified_callback(event, uri)
                row = connections.record_callback(
                    session,
                    connection_id=connection_id,
                    callback_id=callback.callback_id,
                    event=event,
                    now=now,
                )
                connections.adopt_verifier(
                    session, callback_row_id=row.id, verifier_enc=cipher.encrypt(callback.verifier), now=now
                )
        rules = RuleService(db=db, cipher=cipher, clock=system_clock)
        for patterns, channel, minimum in RULES:
            channel_id = dict((name, cid) for cid, name in CHANNELS)[channel]
            spec = RouteSpec(
                patterns=patterns,
                channel_id=channel_id,
                channel_name=channel,
                min_amount=None if minimum is None else Decimal(minimum),
                max_amount=None,
                currency=None,
                billable_only=False,
                counterparty=None,
            )
            rules.add(team_id=TEAM_ID, user_id=ADMIN_ID, spec=spec)
    finally:
        db.dispose()
    return connection_id


def start_demo(
    user: Settings, *, port: int = 0, now: Callable[[], dt.datetime] = system_clock
) -> tuple[Demo, Callable[[], None]]:
    """Build and start everything; (the demo, a function that stops it). Never opens the user's own
    database: the demo's is DATA_DIR/demo.db, made anew."""
    from werkzeug.serving import make_server

    from connector.ops.demo.web import demo_wsgi

    holder: dict[str, Any] = {}

    def delegate(environ: Any, start_response: Any) -> Any:
        return holder["app"](environ, start_response)

    # What can fail on this machine is tried first, before anything runs that would need stopping.
    try:
        # Bound here, not by werkzeug, which answers a port in use with its own message and exit(1).
        listening = socket.create_server(("127.0.0.1", port))
    except OSError as exc:
        raise DemoRefused(
            f"cannot listen on 127.0.0.1:{port} ({os.strerror(exc.errno) if exc.errno else exc}): "
            "pick another --port, or leave it out"
        ) from None
    with listening:  # werkzeug serves a duplicate of the descriptor
        server = make_server("127.0.0.1", port, delegate, threaded=True, fd=listening.fileno())
        bound = int(listening.getsockname()[1])
    path = demo_database(user.data_dir)
    try:
        lock = hold_demo_lock(user.data_dir)
        database_url = fresh_database(path)
    except (OSError, DemoRefused) as exc:
        server.server_close()
        if isinstance(exc, DemoRefused):
            raise
        raise DemoRefused(
            f"cannot write the demo database {path} ({exc.strerror or exc}): "
            "set DATA_DIR to a writable folder"
        ) from None
    url = f"http://127.0.0.1:{bound}"
    sandbox = Sandbox(books.Business.seeded(now()), clock=now)
    bot_token = f"xoxb-demo-{secrets.token_hex(12)}"
    slack = SlackStandIn(clock=lambda: now().timestamp(), bot_token=bot_token)
    for channel_id, name in CHANNELS:
        slack.add_channel(channel_id, name)
    slack.add_user(ADMIN_ID, ADMIN_NAME, admin=True)
    sandbox.start()
    slack.start()
    signing_secret = secrets.token_hex(16)
    settings = load_settings(
        demo_environment(
            user,
            url=url,
            database_url=database_url,
            slack_api_url=slack.api_url,
            freshbooks_url=sandbox.base_url,
            bot_token=bot_token,
            signing_secret=signing_secret,
        )
    )
    connection_id = seed(settings, sandbox, slack)
    demo = Demo(
        url=url,
        settings=settings,
        sandbox=sandbox,
        slack=slack,
        signing_secret=signing_secret,
        connection_id=connection_id,
    )
    from app import create_app  # the composition root: the demo runs the real app

    flask_app = create_app(settings, start_background=True)
    demo.services = flask_app.extensions["fbslack"]
    holder["app"] = demo_wsgi(demo, flask_app)
    thread = threading.Thread(target=server.serve_forever, name="demo-http", daemon=True)
    thread.start()
    demo.open_home()

    def stop() -> None:
        demo.stop()
        os.close(lock)
        server.shutdown()
        server.server_close()
        demo.services.stop()
        sandbox.stop()
        slack.stop()

    return demo, stop
