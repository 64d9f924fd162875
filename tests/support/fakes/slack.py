"""A stateful fake of the Slack Web API, served over real HTTP on 127.0.0.1 (port 0).

Point a `WebClient(base_url=fake.base_url)` (or SLACK_API_URL) at it. It speaks the wire protocol
slack_sdk uses: POST /api/<method> with a form or JSON body and `Authorization: Bearer <token>`;
answers are HTTP 200 JSON `{"ok": true, ...}` / `{"ok": false, "error": ...}` unless scripted.

Beyond the happy path it can, like Slack: enforce 1 chat.postMessage per second per channel
(`enforce_channel_rate`, judged by the injectable `clock`), answer `invalid_auth` or `token_revoked`
for tokens taken away, and (scripted) close the connection without answering, before or after
handling the call (`DROP`, `STORE_THEN_DROP`). For crash and chaos tests it can also fail calls
at random from a seeded generator (`inject_faults`) and hold a call's answer after it took effect
(`hold_answer`), so the caller can be killed while it waits.

Files are uploaded as Slack documents it (reference slack-files-and-scheduling.md §1):
`files.getUploadURLExternal` gives an upload URL on this server, the bytes are POSTed there, and
`files.completeUploadExternal` answers at once while the share finishes later, as Slack's does:
the file's message enters the channel `upload_processing_seconds` (by `clock`) after completion,
when the next call arrives or `process_uploads()` is called (None: only then). Until then
`files.info` shows no `mimetype` and no `shares`. Script the byte upload as method "upload".
"""

from __future__ import annotations

import base64
import enum
import itertools
import json
import random
import secrets
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

Params = dict[str, Any]
Headers = dict[str, str]
Call = tuple[str, Params, Headers]
# (status, headers, body): a dict body is sent as JSON, a str one as an HTML page (a proxy's error).
Answer = tuple[int, Headers, dict[str, Any] | str]


class Disconnect(enum.Enum):
    """A scripted answer that is no answer: the connection is closed without an HTTP response."""

    BEFORE_HANDLING = "drop"  # nothing happened on Slack's side
    AFTER_HANDLING = "store_then_drop"  # the call took effect (a post is stored), the answer is lost


DROP = Disconnect.BEFORE_HANDLING
STORE_THEN_DROP = Disconnect.AFTER_HANDLING

# An error code (HTTP 200, ok false), a raw (status, headers, body) answer, or a dropped connection.
Scripted = str | Answer | Disconnect

TEAM_ID, BOT_USER_ID, BOT_ID, APP_ID = "T0001", "UBOT", "B0001", "A0001"
RATE_LIMITED: Answer = (429, {"Retry-After": "1"}, {"ok": False, "error": "ratelimited"})
PERMALINK_BASE = "https://fake.slack.test/archives"
# The app's credentials in multi-workspace mode (Basic Information > App Credentials).
CLIENT_ID, CLIENT_SECRET = "1111.2222", "fake-client-secret"
TOKEN_LIFETIME = 43200  # seconds: Slack's rotating tokens live 12 hours


class _Error(Exception):
    """A Slack error code, raised by a method and answered as `{"ok": false, "error": code}`."""


class _Dropped(Exception):
    """Raised by `_handle` to make the HTTP handler close the connection without answering."""


def _flag(value: Any) -> bool:
    # slack_sdk sends booleans as "1"/"0" in form bodies; JSON bodies carry real booleans.
    return value in (True, 1, "1", "true", "True")


def _json_field(value: Any) -> Any:
    # Form-encoded calls carry `blocks` and `metadata` as JSON strings.
    return json.loads(value) if isinstance(value, str) and value.startswith(("[", "{")) else value


@dataclass
class Channel:
    """A conversation the fake knows; Slack answers channel_not_found for any other ID."""

    id: str
    name: str = "general"
    is_private: bool = False
    is_member: bool = True
    is_archived: bool = False
    messages: list[dict[str, Any]] = field(default_factory=list)
    # Set for a channel of one installed workspace: other workspaces' tokens get channel_not_found.
    team_id: str | None = None
    members: set[str] = field(default_factory=set)  # people in it (the bot is `is_member`)

    def info(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "is_channel": not self.is_private,
                "is_group": self.is_private, "is_private": self.is_private,
                "is_archived": self.is_archived, "is_member": self.is_member}  # fmt: skip


@dataclass
class Workspace:
    """A workspace that can install the app through the fake's OAuth pages (multi-workspace mode)."""

    team_id: str
    name: str = "Fake Team"
    installer: str = "UINSTALLER"
    bot_user_id: str = ""
    bot_id: str = ""

    def __post_init__(self) -> None:
        self.bot_user_id = self.bot_user_id or f"UB{self.team_id}"
        self.bot_id = self.bot_id or f"BB{self.team_id}"


@dataclass
class Hold:
    """A call held back until the test lets it go (to make two callers overlap for sure)."""

    arrived: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self.released.set()


@dataclass
class FakeFile:
    """A file uploaded through files.getUploadURLExternal; shared once complete and processed."""

    id: str
    filename: str
    length: int
    alt_txt: str | None
    data: bytes | None = None  # what was POSTed to the upload URL
    title: str | None = None
    channel_id: str | None = None  # set by files.completeUploadExternal (None: private to the bot)
    in_private_channel: bool = False
    thread_ts: str | None = None
    initial_comment: str | None = None
    ready_at: float | None = None  # clock() when Slack finishes sharing it
    share_ts: str | None = None  # the file message's ts, once shared

    def info(self) -> dict[str, Any]:
        shared = self.share_ts is not None
        shares: dict[str, Any] = {}
        if shared and self.channel_id is not None:
            share: dict[str, Any] = {"ts": self.share_ts}
            if self.thread_ts:
                share["thread_ts"] = self.thread_ts
            shares = {"private" if self.in_private_channel else "public": {self.channel_id: [share]}}
        return {"id": self.id, "name": self.filename, "title": self.title or self.filename,
                "size": len(self.data or b""), "alt_txt": self.alt_txt,
                "mimetype": "image/png" if shared else "", "filetype": "png" if shared else "",
                "user": BOT_USER_ID, "shares": shares}  # fmt: skip


@dataclass
class Faults:
    """Random failures for chaos tests, drawn from a seeded generator: one draw per call to one of
    `methods`, so a run with the same seed and the same order of calls fails the same calls.

    Fractions of calls: `server_error` gets HTTP 500/502/503/504 with a proxy's HTML page (nothing
    happens), `rate_limited` gets HTTP 429 with Retry-After: 1 (nothing happens), `store_then_drop`
    takes effect (a post is stored) and then the connection closes without an answer.
    `max_per_message` caps the faults one message (channel plus metadata, else text) can meet, which
    bounds how long retries take in a short test; None draws for every call.
    """

    seed: int
    server_error: float = 0.0
    rate_limited: float = 0.0
    store_then_drop: float = 0.0
    methods: frozenset[str] = frozenset({"chat.postMessage"})
    max_per_message: int | None = None
    injected: Counter[str] = field(default_factory=Counter)  # what was injected: "http_503", "429", ...
    _per_message: Counter[str] = field(default_factory=Counter)
    _random: random.Random = field(init=False)

    def __post_init__(self) -> None:
        if self.server_error + self.rate_limited + self.store_then_drop > 1:
            raise ValueError("Faults: server_error + rate_limited + store_then_drop must not exceed 1")
        self._random = random.Random(self.seed)  # reproducible faults, not secrets

    def draw(self, method: str, params: Params) -> Scripted | None:
        """The fault for this call, or None to handle it normally (called with the fake's lock held)."""
        if method not in self.methods:
            return None
        roll, status = self._random.random(), self._random.choice((500, 502, 503, 504))
        key = f"{params.get('channel')}|{params.get('metadata') or params.get('text')}"
        if self.max_per_message is not None and self._per_message[key] >= self.max_per_message:
            return None
        fault: Scripted | None = None
        if roll < self.server_error:
            fault = (status, {}, f"<html><body><h1>{status}</h1>upstream unavailable</body></html>")
            self.injected[f"http_{status}"] += 1
        elif roll < self.server_error + self.rate_limited:
            fault = RATE_LIMITED
            self.injected["429"] += 1
        elif roll < self.server_error + self.rate_limited + self.store_then_drop:
            fault = STORE_THEN_DROP
            self.injected["store_then_drop"] += 1
        if fault is not None:
            self._per_message[key] += 1
        return fault


class FakeSlack:
    """Fake Slack Web API. Use as a context manager; `base_url` is valid inside the `with` block.

    `clock` (seconds since the epoch) stamps message `ts` values and judges the per-channel rate;
    tests inject theirs (e.g. `lambda: fake_clock().timestamp()`) instead of sleeping.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time, enforce_channel_rate: bool = False) -> None:
        self.clock = clock
        # Slack allows about 1 chat.postMessage per second per channel; off unless a test wants it.
        self.enforce_channel_rate = enforce_channel_rate
        self.valid_tokens: set[str] = {"xoxb-test"}
        self.revoked_tokens: set[str] = set()
        self.calls: list[Call] = []
        self.rate_limited: list[Call] = []  # chat.postMessage calls refused by enforce_channel_rate
        self.channels: dict[str, Channel] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.home_views: dict[str, dict[str, Any]] = {}  # the App Home published for each user
        self.modals: dict[str, dict[str, Any]] = {}  # view id -> the modal as last opened or updated
        self.opened_modals: list[str] = []  # view ids in the order views.open created them
        self._view_hashes: dict[str, str] = {}
        self.ephemerals: list[Params] = []
        self.latency = 0.0  # seconds added to every Web API answer (set by load tests)
        self.responses: list[Params] = []  # what was POSTed to response_url (see response_url())
        self._responded: list[tuple[str, Params]] = []  # the same, with the response_url's name
        # Multi-workspace install (OAuth): workspaces that can install, tokens issued per workspace.
        self.client_id, self.client_secret = CLIENT_ID, CLIENT_SECRET
        self.workspaces: dict[str, Workspace] = {}
        self.installing_team = TEAM_ID  # who is signed in to the authorize page (unless ?team=)
        self.deny_install = False  # the person presses Cancel on the authorize page
        self.token_lifetime = TOKEN_LIFETIME  # expires_in of issued tokens (token rotation is on)
        self.holds: dict[str, Hold] = {}
        self.faults: Faults | None = None  # random failures (inject_faults)
        self._answer_holds: dict[str, Hold] = {}  # method -> the next successful call's answer is held
        self.answers_held: list[Call] = []  # the calls hold_answer held, in order
        self._codes: dict[str, tuple[str, str | None]] = {}  # code -> (team, redirect_uri)
        self._token_team: dict[str, str] = {}  # access token -> team
        self._token_expiry: dict[str, float] = {}  # access token -> clock() when Slack stops taking it
        self._refresh_team: dict[str, str] = {}  # refresh tokens not used yet -> team
        self._serial = itertools.count(1)
        self._caller: Workspace | None = None  # the workspace of the token of the call being answered
        self._scripts: dict[str, deque[Scripted]] = defaultdict(deque)
        self._last_ts_us = 0  # ts values are unique and increasing, like Slack's
        self._last_post_at: dict[str, float] = {}  # channel -> clock() of its last stored post
        self.files: dict[str, FakeFile] = {}  # by file id
        self.upload_processing_seconds: float | None = 1.0  # completion to share (None: process_uploads)
        self._upload_keys: dict[str, str] = {}  # the secret part of an upload URL -> file id
        # Called with the method's name as a request reaches "Slack", before anything is judged: a
        # test moves its clock here to model the trip from the app (a busy machine, the internet).
        self.on_arrival: Callable[[str], None] | None = None
        self._cond = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._methods: dict[str, Callable[[Params], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.getPermalink": self._chat_get_permalink,
            "conversations.info": self._conversations_info,
            "conversations.join": self._conversations_join,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
            "users.info": self._users_info,
            "users.conversations": self._users_conversations,
            "views.publish": self._views_publish,
            "views.open": self._views_open,
            "views.update": self._views_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "files.getUploadURLExternal": self._files_get_upload_url_external,
            "files.completeUploadExternal": self._files_complete_upload_external,
            "files.info": self._files_info,
        }

    # Test-facing API ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        assert self._server is not None, "FakeSlack is not running (use it as a context manager)"
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/"

    def add_channel(self, channel: Channel) -> Channel:
        """Register a channel, e.g. `fake.add_channel(Channel("C1", is_member=False))`."""
        with self._cond:
            self.channels[channel.id] = channel
            return channel

    def add_user(
        self, user_id: str, *, admin: bool = False, owner: bool = False, team_id: str = TEAM_ID
    ) -> None:
        """A workspace member; `chat.postMessage` to their ID lands in the app's DM with them."""
        with self._cond:
            self.users[user_id] = {"id": user_id, "team_id": team_id, "name": user_id.lower(),
                                   "is_admin": admin, "is_owner": owner, "is_primary_owner": owner,
                                   "is_bot": False, "deleted": False}  # fmt: skip

    def dms(self, user_id: str) -> list[dict[str, Any]]:
        with self._cond:
            channel = self.channels.get("D" + user_id)
            return list(channel.messages) if channel else []

    def process_uploads(self) -> list[str]:
        """Finish sharing every completed upload now, whatever the time; the file ids shared."""
        with self._cond:
            return self._share_ready_files(force=True)

    def script(self, method: str, *responses: Scripted) -> None:
        """Queue answers for `method`, used in order before normal behaviour resumes."""
        with self._cond:
            self._scripts[method].extend(responses)

    # Multi-workspace install -------------------------------------------------------------------

    @property
    def authorize_url(self) -> str:
        """Slack's OAuth authorize page (SLACK_AUTHORIZE_URL): redirects back with a code and state."""
        return self.base_url.replace("/api/", "/oauth/v2/authorize")

    def add_workspace(self, workspace: Workspace) -> Workspace:
        with self._cond:
            self.workspaces[workspace.team_id] = workspace
            return workspace

    def tokens_of(self, team_id: str) -> list[str]:
        """The access tokens issued to a workspace, oldest first."""
        with self._cond:
            return [token for token, team in self._token_team.items() if team == team_id]

    def uninstall(self, team_id: str) -> None:
        """The app was removed from the workspace: its tokens are revoked, refresh tokens too."""
        with self._cond:
            for token in [t for t, team in self._token_team.items() if team == team_id]:
                self.valid_tokens.discard(token)
                self.revoked_tokens.add(token)
            for refresh in [r for r, team in self._refresh_team.items() if team == team_id]:
                del self._refresh_team[refresh]

    def refreshes(self) -> list[Call]:
        """oauth.v2.access calls that asked for a refresh (grant_type=refresh_token)."""
        return [c for c in self.calls_to("oauth.v2.access") if c[1].get("grant_type") == "refresh_token"]

    def hold(self, method: str) -> Hold:
        """Hold calls to `method` (before anything is decided) until `release()`."""
        hold = self.holds[method] = Hold()
        return hold

    def hold_answer(self, method: str) -> Hold:
        """The next successful call to `method` takes effect (a post is stored), then its answer is held
        until `release()`, and the connection closes unanswered: kill the caller meanwhile and it has
        crashed mid-call; let it live and it saw a dropped connection. Only that one call is held."""
        hold = Hold()
        with self._cond:
            self._answer_holds[method] = hold
        return hold

    def cancel_hold_answer(self, method: str) -> None:
        """Disarm a `hold_answer` that no call has met yet."""
        with self._cond:
            self._answer_holds.pop(method, None)

    def inject_faults(self, faults: Faults) -> Faults:
        """Fail calls at random from now on (see `Faults`); scripted answers still come first."""
        with self._cond:
            self.faults = faults
        return faults

    def _held_then_dropped(
        self, method: str, params: Params, status: int, body: dict[str, Any] | str
    ) -> bool:
        """Hold this answer if `hold_answer` asked for it (outside the lock: other calls go on)."""
        if status != 200 or not isinstance(body, dict) or not body.get("ok"):
            return False
        with self._cond:
            hold = self._answer_holds.pop(method, None)
            if hold is None:
                return False
            self.answers_held.append((method, params, {}))
        hold.arrived.set()
        hold.released.wait(60)
        return True

    def revoke_token(self, token: str) -> None:
        """The token was revoked (e.g. the app was uninstalled): Slack answers `token_revoked`."""
        with self._cond:
            self.valid_tokens.discard(token)
            self.revoked_tokens.add(token)

    def calls_to(self, method: str) -> list[Call]:
        with self._cond:
            return [call for call in self.calls if call[0] == method]

    def posts_by_metadata(self, payload_field: str) -> Counter[str]:
        """How many chat.postMessage calls carried each value of `metadata.event_payload[field]`
        (whatever their answer): a duplicate post shows up as a count above 1."""
        counts: Counter[str] = Counter()
        for _method, params, _headers in self.calls_to("chat.postMessage"):
            payload = (_json_field(params.get("metadata")) or {}).get("event_payload") or {}
            if payload_field in payload:
                counts[str(payload[payload_field])] += 1
        return counts

    def wait_for_responses(self, n: int, timeout: float = 10) -> list[Params]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.responses) >= n, timeout=timeout):
                raise AssertionError(
                    f"expected {n} response_url post(s) within {timeout}s, got {self.responses}"
                )
            return list(self.responses)

    def take_response(self, name: str, timeout: float = 20) -> Params:
        """Wait for the post to response_url `name`, and take it out of `responses`."""
        with self._cond:
            if not self._cond.wait_for(lambda: any(n == name for n, _ in self._responded), timeout=timeout):
                raise AssertionError(f"nothing was posted to response_url {name} within {timeout}s")
            index = next(i for i, (n, _) in enumerate(self._responded) if n == name)
            _, params = self._responded.pop(index)
            self.responses.remove(params)
            return params

    def wait_for_calls(self, method: str, n: int, timeout: float = 5) -> list[Call]:
        """Block until `method` was called at least `n` times; raise AssertionError at the deadline."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.calls_to(method)) >= n, timeout=timeout):
                raise AssertionError(f"expected {n} call(s) to {method} within {timeout}s, got {self.calls}")
            return self.calls_to(method)

    def __enter__(self) -> FakeSlack:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        # A short poll interval keeps shutdown() (it waits for the next poll) from adding 0.5 s a test.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # Dispatch -------------------------------------------------------------------------------

    def response_url(self, name: str = "r1") -> str:
        """A slash command's response_url that lands in `responses` (no token involved, as in Slack)."""
        return self.base_url.replace("/api/", f"/respond/{name}")

    def _handle(self, method: str, params: Params, headers: Headers) -> Answer:
        """Answer one call; raises _Dropped when the connection must close without an answer."""
        hold = self.holds.get(method)
        if hold is not None:  # outside the lock: other calls go on meanwhile
            hold.arrived.set()
            hold.released.wait(10)
        if method == "/oauth/v2/authorize":
            with self._cond:
                self.calls.append((method, params, headers))
                return self._authorize_page(params)
        if method.startswith("/respond/"):
            with self._cond:
                self.responses.append(params)
                self._responded.append((method.removeprefix("/respond/"), params))
                self._cond.notify_all()
            return 200, {}, {"ok": True}
        with self._cond:
            self.calls.append((method, params, headers))
            self._cond.notify_all()
            scripted = self._scripts[method].popleft() if self._scripts.get(method) else None
            if scripted is None and self.faults is not None:
                scripted = self.faults.draw(method, params)
            if scripted is Disconnect.BEFORE_HANDLING:
                raise _Dropped
            if isinstance(scripted, str):
                return 200, {}, {"ok": False, "error": scripted}
            if isinstance(scripted, tuple):
                return scripted
            answer = self._answer(method, params, headers)
            if scripted is Disconnect.AFTER_HANDLING:
                raise _Dropped
            return answer

    def _answer(self, method: str, params: Params, headers: Headers) -> Answer:
        """Slack's own behaviour: authentication, the per-channel rate, then the method."""
        if self.on_arrival is not None:
            self.on_arrival(method)
        self._share_ready_files()
        if method == "upload":  # the upload URL is its own credential: no token
            return self._receive_upload(params)
        if method == "oauth.v2.access":  # authenticated by the app's client ID and secret, not a token
            return self._oauth_v2_access(params, headers)
        auth = headers.get("authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else params.get("token")
        if not token:
            return 200, {}, {"ok": False, "error": "not_authed"}
        if token in self.revoked_tokens:
            return 200, {}, {"ok": False, "error": "token_revoked"}
        if token in self._token_expiry and self.clock() >= self._token_expiry[token]:
            return 200, {}, {"ok": False, "error": "token_expired"}
        self._caller = self.workspaces.get(self._token_team.get(token, ""))
        if token not in self.valid_tokens:
            return 200, {}, {"ok": False, "error": "invalid_auth"}
        if method == "chat.postMessage" and self._over_channel_rate(str(params.get("channel", ""))):
            self.rate_limited.append(self.calls[-1])
            return RATE_LIMITED
        try:
            if method not in self._methods:
                raise _Error("unknown_method")
            return 200, {}, {"ok": True, **self._methods[method](params)}
        except _Error as exc:
            return 200, {}, {"ok": False, "error": str(exc)}

    def _over_channel_rate(self, channel_id: str) -> bool:
        last = self._last_post_at.get(channel_id)
        return self.enforce_channel_rate and last is not None and self.clock() - last < 1.0

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                params: Params = dict(parse_qsl(parts.query, keep_blank_values=True))
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if parts.path.startswith("/upload/"):  # a file's bytes, not a Web API call
                    params = {"key": parts.path.removeprefix("/upload/"), "bytes": body}
                    try:
                        self._answer_with(*fake._handle("upload", params, {}))
                    except _Dropped:
                        self.close_connection = True
                    return
                raw = body.decode()
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    params.update(json.loads(raw or "{}"))
                else:
                    params.update(parse_qsl(raw, keep_blank_values=True))
                headers = {k.lower(): v for k, v in self.headers.items()}
                if fake.latency:  # a network round trip as slow as a busy real Slack's
                    threading.Event().wait(fake.latency)
                try:
                    status, extra, answer = fake._handle(parts.path.removeprefix("/api/"), params, headers)
                except _Dropped:
                    # No status line at all: the client sees RemoteDisconnected, not an HTTP error.
                    self.close_connection = True
                    return
                if fake._held_then_dropped(parts.path.removeprefix("/api/"), params, status, answer):
                    self.close_connection = True
                    return
                self._answer_with(status, extra, answer)

            def _answer_with(self, status: int, extra: Headers, body: dict[str, Any] | str) -> None:
                html = isinstance(body, str)
                payload = body.encode() if html else json.dumps(body).encode()
                self.send_response(status)
                self.send_header(
                    "Content-Type", f"{'text/html' if html else 'application/json'}; charset=utf-8"
                )
                self.send_header("Content-Length", str(len(payload)))
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep pytest output clean

        return Handler

    # Methods (called with the lock held); a lookup that fails raises _Error -----------------

    def _auth_test(self, params: Params) -> dict[str, Any]:
        ws = self._caller
        if ws is not None:  # a token issued by the OAuth install: its own workspace and bot
            return {"url": f"https://{ws.team_id.lower()}.fake.slack.test/", "team": ws.name,
                    "user": "freshbooks", "team_id": ws.team_id, "user_id": ws.bot_user_id,
                    "bot_id": ws.bot_id}  # fmt: skip
        return {"url": "https://fake.slack.test/", "team": "Fake Team", "user": "freshbooks",
                "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": BOT_ID}  # fmt: skip

    def _channel(self, params: Params, *, write: bool = False) -> Channel:
        target = str(params.get("channel", ""))
        if target in self.users:  # posting to a user ID opens (or reuses) the app's DM with them
            dm = self.channels.setdefault("D" + target, Channel("D" + target, name=target, is_private=True))
            return dm
        channel = self.channels.get(target)
        if channel is None or (channel.team_id and self._caller and channel.team_id != self._caller.team_id):
            raise _Error("channel_not_found")
        if write and channel.is_archived:
            raise _Error("is_archived")
        if write and not channel.is_member:
            raise _Error("not_in_channel")
        return channel

    def _next_ts(self) -> str:
        """Slack's ts: the clock in seconds with microseconds, unique and increasing."""
        self._last_ts_us = max(int(self.clock() * 1_000_000), self._last_ts_us + 1)
        return f"{self._last_ts_us // 1_000_000}.{self._last_ts_us % 1_000_000:06d}"

    def _chat_post_message(self, params: Params) -> dict[str, Any]:
        channel = self._channel(params, write=True)
        ts = self._next_ts()
        message: dict[str, Any] = {"type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID, "app_id": APP_ID,
                                   "team": TEAM_ID, "text": params.get("text", ""), "ts": ts}  # fmt: skip
        message.update(
            {k: _json_field(params[k]) for k in ("blocks", "metadata", "thread_ts") if params.get(k)}
        )
        if message.get("thread_ts") and _flag(params.get("reply_broadcast")):
            message["subtype"] = "thread_broadcast"  # a reply also shown in the channel
        channel.messages.append(message)
        self._last_post_at[channel.id] = self.clock()
        return {"channel": channel.id, "ts": ts, "message": dict(message)}

    def _chat_get_permalink(self, params: Params) -> dict[str, Any]:
        channel = self._channel(params)
        ts = str(params.get("message_ts", ""))
        if not any(m["ts"] == ts for m in channel.messages):
            raise _Error("message_not_found")
        return {"channel": channel.id, "permalink": f"{PERMALINK_BASE}/{channel.id}/p{ts.replace('.', '')}"}

    def _chat_update(self, params: Params) -> dict[str, Any]:
        channel = self._channel(params, write=True)
        message = next((m for m in channel.messages if m["ts"] == params.get("ts")), None)
        if message is None:
            raise _Error("message_not_found")
        message.update({k: _json_field(params[k]) for k in ("text", "blocks") if k in params})
        # Slack keeps the old metadata when the field is absent and drops it on an empty object.
        if "metadata" in params:
            message["metadata"] = _json_field(params["metadata"])
            if not message["metadata"]:
                del message["metadata"]
        return {"channel": channel.id, "ts": message["ts"], "text": message["text"], "message": dict(message)}

    def _conversations_info(self, params: Params) -> dict[str, Any]:
        return {"channel": self._channel(params).info()}

    def _conversations_join(self, params: Params) -> dict[str, Any]:
        channel = self._channel(params)
        if channel.is_archived:
            raise _Error("is_archived")
        if channel.is_private:
            raise _Error("method_not_supported_for_channel_type")
        channel.is_member = True
        return {"channel": channel.info()}

    def _views_publish(self, params: Params) -> dict[str, Any]:
        user = str(params.get("user_id", ""))
        if user not in self.users:
            raise _Error("user_not_found")
        view = _json_field(params.get("view"))
        if not isinstance(view, dict) or view.get("type") != "home" or len(view.get("blocks", [])) > 100:
            raise _Error("invalid_arguments")
        self.home_views[user] = view
        return {"view": {"id": f"V{user}", **view}}

    def _modal(self, params: Params) -> dict[str, Any]:
        """The `view` argument of views.open/update, checked like Slack does (the limits that bite)."""
        view = _json_field(params.get("view"))
        if not isinstance(view, dict) or view.get("type") != "modal":
            raise _Error("invalid_arguments")
        blocks = view.get("blocks", [])
        if not 1 <= len(blocks) <= 100 or len(view.get("title", {}).get("text", "")) > 24:
            raise _Error("invalid_arguments")
        if any(b.get("type") == "input" for b in blocks) and "submit" not in view:
            raise _Error("invalid_arguments")  # "must define submit to use input block"
        if len(json.dumps(view)) > 250_000:
            raise _Error("view_too_large")
        return view

    def _stored_view(self, view_id: str, view: dict[str, Any]) -> dict[str, Any]:
        self.modals[view_id] = view
        self._view_hashes[view_id] = (
            f"{view_id}-{len(self._view_hashes) + len(self.modals)}-{time.monotonic_ns()}"
        )
        return {"view": {**view, "id": view_id, "hash": self._view_hashes[view_id]}}

    def _views_open(self, params: Params) -> dict[str, Any]:
        if not params.get("trigger_id"):
            raise _Error("invalid_trigger_id")
        view = self._modal(params)
        view_id = f"VM{len(self.opened_modals) + 1:04d}"
        self.opened_modals.append(view_id)
        return self._stored_view(view_id, view)

    def _views_update(self, params: Params) -> dict[str, Any]:
        view_id = str(params.get("view_id", ""))
        if view_id not in self.modals:
            raise _Error("not_found")
        if params.get("hash") and params["hash"] != self._view_hashes[view_id]:
            raise _Error("hash_conflict")
        return self._stored_view(view_id, self._modal(params))

    def view_hash(self, view_id: str) -> str:
        """The current hash of a modal, as Slack sends it in the next interaction payload."""
        with self._cond:
            return self._view_hashes[view_id]

    def _files_get_upload_url_external(self, params: Params) -> dict[str, Any]:
        filename, length = str(params.get("filename") or ""), str(params.get("length") or "")
        if not filename or not length.isdigit() or int(length) < 1:
            raise _Error("missing_argument")  # "usually length 0" (reference §1.1)
        alt_txt = params.get("alt_txt")
        if alt_txt is not None and len(str(alt_txt)) > 1000:
            raise _Error("alt_txt_too_large")
        file_id = f"F{next(self._serial):010d}"
        key = f"v1/{secrets.token_urlsafe(12)}"
        self.files[file_id] = FakeFile(
            file_id, filename, int(length), None if alt_txt is None else str(alt_txt)
        )
        self._upload_keys[key] = file_id
        return {"upload_url": self.base_url.replace("/api/", f"/upload/{key}"), "file_id": file_id}

    def _receive_upload(self, params: Params) -> Answer:
        file_id = self._upload_keys.get(str(params.get("key")))
        if file_id is None:
            return 404, {}, "Not Found"
        data = params["bytes"]
        self.files[file_id].data = data
        return 200, {}, f"OK - {len(data)}"

    def _files_complete_upload_external(self, params: Params) -> dict[str, Any]:
        listed = _json_field(params.get("files"))
        if not isinstance(listed, list) or not listed:
            raise _Error("invalid_arguments")
        files = []
        for entry in listed:
            file = self.files.get(str(entry.get("id") if isinstance(entry, dict) else ""))
            if file is None or file.data is None:
                raise _Error("file_not_found")  # never got, or its bytes never arrived
            files.append((file, entry))
        channel_id = params.get("channel_id") or None
        private = False
        if channel_id is not None:
            private = self._channel({"channel": channel_id}, write=True).is_private  # or not_in_channel...
        for file, entry in files:
            file.title = str(entry.get("title") or file.filename)
            file.channel_id, file.in_private_channel = channel_id, private
            file.thread_ts = params.get("thread_ts") or None
            file.initial_comment = params.get("initial_comment") or None
            if channel_id is not None:
                delay = self.upload_processing_seconds
                file.ready_at = None if delay is None else self.clock() + delay
        # Like Slack: the files, no message ts, no shares yet (sharing finishes later).
        return {"files": [{"id": file.id, "title": file.title} for file, _ in files]}

    def _share_ready_files(self, *, force: bool = False) -> list[str]:
        """Post the message of each completed file whose processing is over (lock held)."""
        shared = []
        for file in self.files.values():
            if file.channel_id is None or file.share_ts is not None:
                continue
            if not force and (file.ready_at is None or self.clock() < file.ready_at):
                continue
            channel = self.channels.get(file.channel_id)
            if channel is None:
                continue
            file.share_ts = self._next_ts()
            file.ready_at = file.ready_at or self.clock()
            shown = {"id": file.id, "name": file.filename, "title": file.title, "mimetype": "image/png",
                     "alt_txt": file.alt_txt}  # fmt: skip
            message: dict[str, Any] = {"type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID,
                                       "upload": True, "text": file.initial_comment or "",
                                       "ts": file.share_ts, "files": [shown]}  # fmt: skip
            if file.thread_ts:
                message["thread_ts"] = file.thread_ts
            channel.messages.append(message)
            shared.append(file.id)
        if shared:
            self._cond.notify_all()
        return shared

    def _files_info(self, params: Params) -> dict[str, Any]:
        file = self.files.get(str(params.get("file", "")))
        if file is None:
            raise _Error("file_not_found")
        return {"file": file.info()}

    def _chat_post_ephemeral(self, params: Params) -> dict[str, Any]:
        self.ephemerals.append(dict(params))
        return {"message_ts": "1700000000.000001"}

    def _users_info(self, params: Params) -> dict[str, Any]:
        user = self.users.get(str(params.get("user", "")))
        if user is None:
            raise _Error("user_not_found")
        return {"user": dict(user)}

    def _users_conversations(self, params: Params) -> dict[str, Any]:
        """users.conversations: the calling bot's channels, or with `user` that person's, where
        "non-public channels are restricted to those where the calling user shares membership".
        `types` defaults to public_channel; cursor pagination, `limit` at most 1000."""
        types = set(str(params.get("types") or "public_channel").split(","))
        if not types <= {"public_channel", "private_channel", "mpim", "im"}:
            raise _Error("invalid_types")
        limit = int(params.get("limit") or 100)
        if not 1 <= limit <= 1000:
            raise _Error("invalid_limit")
        user = params.get("user")
        if user is not None and str(user) not in self.users:
            raise _Error("user_not_found")
        found = []
        for channel in self.channels.values():
            if channel.id.startswith("D") or (
                channel.team_id and self._caller and channel.team_id != self._caller.team_id
            ):
                continue  # DMs are `im`, which this app never asks for; another workspace's channel
            kind = "private_channel" if channel.is_private else "public_channel"
            if kind not in types or (_flag(params.get("exclude_archived")) and channel.is_archived):
                continue
            if user is None:
                if channel.is_member:
                    found.append(channel.info())
            elif str(user) in channel.members and (not channel.is_private or channel.is_member):
                found.append(channel.info())
        start = int(params.get("cursor") or 0)
        page, more = found[start : start + limit], len(found) > start + limit
        return {"channels": page, "response_metadata": {"next_cursor": str(start + limit) if more else ""}}

    def _readable(self, params: Params) -> Channel:
        channel = self._channel(params)
        if not channel.is_member:
            raise _Error("not_in_channel")
        return channel

    def _conversations_history(self, params: Params) -> dict[str, Any]:
        channel = self._readable(params)
        # Like Slack: thread replies are not in the channel's history unless also broadcast there.
        top_level = [m for m in channel.messages if _shown_in_channel(m)]
        return _page(list(reversed(top_level)), params)  # Slack answers newest first

    def _conversations_replies(self, params: Params) -> dict[str, Any]:
        channel = self._readable(params)
        parent_ts = str(params.get("ts", ""))
        if not any(m["ts"] == parent_ts for m in channel.messages):
            raise _Error("thread_not_found")
        thread = [m for m in channel.messages if parent_ts in (m["ts"], m.get("thread_ts"))]
        return _page(thread, params)  # the parent, then its replies oldest first

    # Multi-workspace install: the authorize page and oauth.v2.access ---------------------------

    def _authorize_page(self, params: Params) -> Answer:
        """GET /oauth/v2/authorize: the signed-in person approves (or cancels); back to redirect_uri."""
        if params.get("client_id") != self.client_id:
            return 400, {}, "<html><body>Invalid client_id parameter</body></html>"
        redirect_uri, state = params.get("redirect_uri"), params.get("state", "")
        team_id = params.get("team") or self.installing_team
        if not redirect_uri or team_id not in self.workspaces:
            return 400, {}, "<html><body>Something went wrong when authorizing this app.</body></html>"
        if self.deny_install:
            return (
                302,
                {"Location": f"{redirect_uri}?{urlencode({'error': 'access_denied', 'state': state})}"},
                "",
            )
        code = f"{next(self._serial)}.{secrets.token_hex(8)}"
        self._codes[code] = (team_id, redirect_uri)
        return 302, {"Location": f"{redirect_uri}?{urlencode({'code': code, 'state': state})}"}, ""

    def _oauth_v2_access(self, params: Params, headers: Headers) -> Answer:
        """oauth.v2.access: a code from the authorize page, or a refresh token (used once), for tokens."""
        client_id, client_secret = _credentials(params, headers)
        if client_id != self.client_id:
            return 200, {}, {"ok": False, "error": "invalid_client_id"}
        if client_secret != self.client_secret:
            return 200, {}, {"ok": False, "error": "bad_client_secret"}
        grant = params.get("grant_type") or "authorization_code"
        if grant == "refresh_token":
            team_id = self._refresh_team.pop(str(params.get("refresh_token")), None)  # revoked once used
            if team_id is None:
                return 200, {}, {"ok": False, "error": "invalid_refresh_token"}
            return 200, {}, {"ok": True, **self._issue(team_id)}
        if grant != "authorization_code":
            return 200, {}, {"ok": False, "error": "invalid_grant_type"}
        entry = self._codes.pop(str(params.get("code")), None)  # a code works once
        if entry is None:
            return 200, {}, {"ok": False, "error": "invalid_code"}
        team_id, redirect_uri = entry
        if params.get("redirect_uri") != redirect_uri:
            return 200, {}, {"ok": False, "error": "bad_redirect_uri"}
        installer = self.workspaces[team_id].installer
        return 200, {}, {"ok": True, **self._issue(team_id), "authed_user": {"id": installer}}

    def _issue(self, team_id: str) -> dict[str, Any]:
        """A new expiring bot token and refresh token for the workspace, as oauth.v2.access answers."""
        ws = self.workspaces[team_id]
        serial = next(self._serial)
        token = f"xoxe.xoxb-1-{team_id}-{serial}-{secrets.token_hex(12)}"
        refresh = f"xoxe-1-{team_id}-{serial}-{secrets.token_hex(12)}"
        self.valid_tokens.add(token)
        self._token_team[token] = team_id
        self._token_expiry[token] = self.clock() + self.token_lifetime
        self._refresh_team[refresh] = team_id
        return {"app_id": APP_ID, "token_type": "bot", "access_token": token, "refresh_token": refresh,
                "expires_in": self.token_lifetime, "scope": "commands,chat:write",
                "bot_user_id": ws.bot_user_id, "team": {"id": team_id, "name": ws.name},
                "enterprise": None, "is_enterprise_install": False}  # fmt: skip


def _credentials(params: Params, headers: Headers) -> tuple[str | None, str | None]:
    """client_id and client_secret from HTTP Basic auth (what slack_sdk sends) or the form."""
    auth = headers.get("authorization", "")
    if auth.startswith("Basic "):
        user, _, password = base64.b64decode(auth.removeprefix("Basic ")).decode().partition(":")
        return user, password
    return params.get("client_id"), params.get("client_secret")


def _shown_in_channel(message: dict[str, Any]) -> bool:
    thread_ts = message.get("thread_ts")
    return thread_ts in (None, message["ts"]) or message.get("subtype") == "thread_broadcast"


def _page(messages: list[dict[str, Any]], params: Params) -> dict[str, Any]:
    """A conversations.history/replies page: the oldest..latest window, a cursor, and metadata only
    with include_all_metadata (without it, like Slack, only the event_type comes back)."""
    # Decimal, not float: ts strings are exact message keys.
    oldest, latest = Decimal(params.get("oldest") or 0), Decimal(params.get("latest") or "Infinity")
    inclusive, limit = _flag(params.get("inclusive")), int(params.get("limit") or 100)
    start = int(params.get("cursor") or 0)
    picked: list[dict[str, Any]] = []
    for message in messages:
        ts = Decimal(message["ts"])
        if oldest < ts < latest or (inclusive and ts in (oldest, latest)):
            picked.append(dict(message))
            if "metadata" in message and not _flag(params.get("include_all_metadata")):
                picked[-1]["metadata"] = {"event_type": message["metadata"].get("event_type")}
    page, has_more = picked[start : start + limit], len(picked) > start + limit
    return {"messages": page, "has_more": has_more,
            "response_metadata": {"next_cursor": str(start + limit) if has_more else ""}}  # fmt: skip
