"""A stateful fake of the Slack Web API, served over real HTTP on 127.0.0.1 (port 0).

Point a `WebClient(base_url=fake.base_url)` (or SLACK_API_URL) at it. It speaks the wire protocol
slack_sdk uses: POST /api/<method> with a form or JSON body and `Authorization: Bearer <token>`;
answers are HTTP 200 JSON `{"ok": true, ...}` / `{"ok": false, "error": ...}` unless scripted.

Beyond the happy path it can, like Slack: enforce 1 chat.postMessage per second per channel
(`enforce_channel_rate`, judged by the injectable `clock`), answer `invalid_auth` or `token_revoked`
for tokens taken away, and (scripted) close the connection without answering, before or after
handling the call (`DROP`, `STORE_THEN_DROP`).
"""

from __future__ import annotations

import enum
import json
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

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

    def info(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "is_channel": not self.is_private,
                "is_group": self.is_private, "is_private": self.is_private,
                "is_archived": self.is_archived, "is_member": self.is_member}  # fmt: skip


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
        self.ephemerals: list[Params] = []
        self.responses: list[Params] = []  # what was POSTed to response_url (see response_url())
        self._scripts: dict[str, deque[Scripted]] = defaultdict(deque)
        self._last_ts_us = 0  # ts values are unique and increasing, like Slack's
        self._last_post_at: dict[str, float] = {}  # channel -> clock() of its last stored post
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
            "views.publish": self._views_publish,
            "chat.postEphemeral": self._chat_post_ephemeral,
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

    def add_user(self, user_id: str, *, admin: bool = False, owner: bool = False) -> None:
        """A workspace member; `chat.postMessage` to their ID lands in the app's DM with them."""
        with self._cond:
            self.users[user_id] = {"id": user_id, "team_id": TEAM_ID, "name": user_id.lower(),
                                   "is_admin": admin, "is_owner": owner, "is_primary_owner": owner,
                                   "is_bot": False, "deleted": False}  # fmt: skip

    def dms(self, user_id: str) -> list[dict[str, Any]]:
        with self._cond:
            channel = self.channels.get("D" + user_id)
            return list(channel.messages) if channel else []

    def script(self, method: str, *responses: Scripted) -> None:
        """Queue answers for `method`, used in order before normal behaviour resumes."""
        with self._cond:
            self._scripts[method].extend(responses)

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
        if method.startswith("/respond/"):
            with self._cond:
                self.responses.append(params)
                self._cond.notify_all()
            return 200, {}, {"ok": True}
        with self._cond:
            self.calls.append((method, params, headers))
            self._cond.notify_all()
            scripted = self._scripts[method].popleft() if self._scripts.get(method) else None
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
        auth = headers.get("authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else params.get("token")
        if not token:
            return 200, {}, {"ok": False, "error": "not_authed"}
        if token in self.revoked_tokens:
            return 200, {}, {"ok": False, "error": "token_revoked"}
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
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    params.update(json.loads(raw or "{}"))
                else:
                    params.update(parse_qsl(raw, keep_blank_values=True))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    status, extra, body = fake._handle(parts.path.removeprefix("/api/"), params, headers)
                except _Dropped:
                    # No status line at all: the client sees RemoteDisconnected, not an HTTP error.
                    self.close_connection = True
                    return
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
        return {"url": "https://fake.slack.test/", "team": "Fake Team", "user": "freshbooks",
                "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": BOT_ID}  # fmt: skip

    def _channel(self, params: Params, *, write: bool = False) -> Channel:
        target = str(params.get("channel", ""))
        if target in self.users:  # posting to a user ID opens (or reuses) the app's DM with them
            dm = self.channels.setdefault("D" + target, Channel("D" + target, name=target, is_private=True))
            return dm
        channel = self.channels.get(target)
        if channel is None:
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

    def _chat_post_ephemeral(self, params: Params) -> dict[str, Any]:
        self.ephemerals.append(dict(params))
        return {"message_ts": "1700000000.000001"}

    def _users_info(self, params: Params) -> dict[str, Any]:
        user = self.users.get(str(params.get("user", "")))
        if user is None:
            raise _Error("user_not_found")
        return {"user": dict(user)}

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
