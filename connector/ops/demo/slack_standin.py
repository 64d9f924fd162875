"""The demo's Slack: a workspace in memory, served over real HTTP on 127.0.0.1 speaking the Web API
methods the app calls (POST /api/<method>, form or JSON, `Authorization: Bearer`), plus the
response_url of slash commands. The app reaches it through SLACK_API_URL, unchanged.

It keeps what Slack would show a person: each channel's messages (a reply carries `thread_ts`),
the App Home each user was last published, modals, and the ephemeral answers to commands. Every
change bumps `version`, which the demo page polls.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from connector.ops.demo import wire

TEAM_ID, TEAM_NAME = "TDEMO0001", "Maple & Birch"
BOT_USER_ID, BOT_ID, APP_ID = "UDEMOBOT", "BDEMOBOT", "ADEMOAPP"
ADMIN_ID, ADMIN_NAME = "UDEMOADMIN", "robin"
PERMALINK_BASE = "https://demo.slack.invalid/archives"

Params = dict[str, Any]


class _Error(Exception):
    """A Slack error code, answered as `{"ok": false, "error": code}`."""


def _json_field(value: Any) -> Any:
    # Form-encoded calls carry `blocks`, `metadata` and `view` as JSON strings.
    return json.loads(value) if isinstance(value, str) and value.startswith(("[", "{")) else value


def _flag(value: Any) -> bool:
    return value in (True, 1, "1", "true", "True")


@dataclass
class Channel:
    id: str
    name: str
    is_private: bool = False
    is_member: bool = True
    messages: list[dict[str, Any]] = field(default_factory=list)  # in posting order, replies too

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "is_channel": not self.is_private,
            "is_group": self.is_private,
            "is_private": self.is_private,
            "is_archived": False,
            "is_member": self.is_member,
        }


@dataclass(frozen=True, slots=True)
class Ephemeral:
    """An answer only the person who ran a command sees: `via` is "command" (the HTTP answer to the
    command) or "response_url" (sent later)."""

    command_id: str
    via: str
    message: dict[str, Any]


def threaded(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The channel as Slack shows it: top-level messages, each with its thread's `replies`. Pure."""
    top: list[dict[str, Any]] = []
    by_ts: dict[str, dict[str, Any]] = {}
    for message in messages:
        parent = (
            by_ts.get(str(message.get("thread_ts"))) if message.get("thread_ts") != message["ts"] else None
        )
        if message.get("thread_ts") and parent is not None:
            parent["replies"].append({**message, "replies": []})
            continue
        shown = {**message, "replies": []}
        by_ts[message["ts"]] = shown
        top.append(shown)
    return top


class SlackStandIn:
    """The stand-in server. `start()` binds 127.0.0.1 on a free port; `api_url` goes into SLACK_API_URL."""

    def __init__(self, *, clock: Callable[[], float], bot_token: str) -> None:
        self.clock = clock
        self.bot_token = bot_token
        self.version = 0
        self.channels: dict[str, Channel] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.home_views: dict[str, dict[str, Any]] = {}
        self.modals: dict[str, dict[str, Any]] = {}
        self.ephemerals: list[Ephemeral] = []
        self._cond = threading.Condition()
        self._last_ts_us = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._methods: dict[str, Callable[[Params], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.getPermalink": self._chat_get_permalink,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "conversations.info": self._conversations_info,
            "conversations.join": self._conversations_join,
            "conversations.list": self._conversations_list,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
            "users.info": self._users_info,
            "users.conversations": self._users_conversations,
            "views.publish": self._views_publish,
            "views.open": self._views_open,
            "views.update": self._views_update,
        }

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    def start(self) -> None:
        threading.Thread(target=self._server.serve_forever, name="demo-slack", daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- the workspace -------------------------------------------------------------------------

    def add_channel(self, channel_id: str, name: str, *, is_member: bool = True) -> None:
        with self._cond:
            self.channels[channel_id] = Channel(channel_id, name, is_member=is_member)
            self._changed()

    def add_user(self, user_id: str, name: str, *, admin: bool) -> None:
        with self._cond:
            self.users[user_id] = {
                "id": user_id,
                "team_id": TEAM_ID,
                "name": name,
                "real_name": name.title(),
                "is_admin": admin,
                "is_owner": admin,
                "is_primary_owner": admin,
                "is_bot": False,
                "deleted": False,
            }

    def channel_by_name(self, name: str) -> Channel | None:
        with self._cond:
            return next((c for c in self.channels.values() if c.name == name), None)

    def new_response_url(self) -> tuple[str, str]:
        """(command id, response_url) for one slash command."""
        command_id = secrets.token_hex(6)
        return command_id, f"{self.base_url}/respond/{command_id}"

    def add_ephemeral(self, command_id: str, via: str, message: dict[str, Any]) -> None:
        with self._cond:
            self.ephemerals.append(Ephemeral(command_id, via, message))
            self._changed()

    def snapshot(self) -> dict[str, Any]:
        """Everything the demo page shows, copied under the lock: {version, channels, home, ephemerals}."""
        with self._cond:
            return {
                "version": self.version,
                "channels": [
                    {
                        "id": c.id,
                        "name": c.name,
                        "is_dm": c.id.startswith("D"),
                        "messages": threaded(c.messages),
                    }
                    for c in self.channels.values()
                ],
                "home": json.loads(json.dumps(self.home_views.get(ADMIN_ID))),
                "ephemerals": list(self.ephemerals),
            }

    def wait_changed(self, since: int, timeout: float) -> int:
        """Block until `version` passes `since` (or the timeout); the current version."""
        with self._cond:
            self._cond.wait_for(lambda: self.version > since, timeout=timeout)
            return self.version

    def _changed(self) -> None:  # with the lock held
        self.version += 1
        self._cond.notify_all()

    # -- the Web API ---------------------------------------------------------------------------

    def handle(self, method: str, params: Params, headers: dict[str, str]) -> dict[str, Any]:
        implementation = self._methods.get(method)
        if implementation is None:
            return {"ok": False, "error": "unknown_method"}
        if headers.get("authorization", "") != f"Bearer {self.bot_token}":
            return {"ok": False, "error": "invalid_auth"}
        with self._cond:
            try:
                answer = implementation(params)
            except _Error as exc:
                return {"ok": False, "error": str(exc)}
            return {"ok": True, **answer}

    def _auth_test(self, _params: Params) -> dict[str, Any]:
        return {
            "url": "https://maple-birch.demo.slack.invalid/",
            "team": TEAM_NAME,
            "user": "freshbooks",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
        }

    def _channel(self, params: Params, *, write: bool = False) -> Channel:
        target = str(params.get("channel", ""))
        if target in self.users:  # posting to a person opens the app's DM with them
            return self.channels.setdefault(
                "D" + target, Channel("D" + target, f"@{self.users[target]['name']}", is_private=True)
            )
        channel = self.channels.get(target)
        if channel is None:
            raise _Error("channel_not_found")
        if write and not channel.is_member:
            raise _Error("not_in_channel")
        return channel

    def _next_ts(self) -> str:
        self._last_ts_us = max(int(self.clock() * 1_000_000), self._last_ts_us + 1)
        return f"{self._last_ts_us // 1_000_000}.{self._last_ts_us % 1_000_000:06d}"

    def _chat_post_message(self, params: Params) -> dict[str, Any]:
        channel = self._channel(params, write=True)
        message: dict[str, Any] = {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": TEAM_ID,
            "text": params.get("text", ""),
            "ts": self._next_ts(),
        }
        message.update(
            {k: _json_field(params[k]) for k in ("blocks", "metadata", "thread_ts") if params.get(k)}
        )
        channel.messages.append(message)
        self._changed()
        return {"channel": channel.id, "ts": message["ts"], "message": dict(message)}

    def _chat_update(self, params: Params) -> dict[str, Any]:
        channel = self._channel(params, write=True)
        message = next((m for m in channel.messages if m["ts"] == params.get("ts")), None)
        if message is None:
            raise _Error("message_not_found")
        message.update({k: _json_field(params[k]) for k in ("text", "blocks") if k in params})
        self._changed()
        return {"channel": channel.id, "ts": message["ts"], "text": message["text"], "message": dict(message)}

    def _chat_get_permalink(self, params: Params) -> dict[str, Any]:
        channel = self._channel(params)
        ts = str(params.get("message_ts", ""))
        return {"channel": channel.id, "permalink": f"{PERMALINK_BASE}/{channel.id}/p{ts.replace('.', '')}"}

    def _chat_post_ephemeral(self, params: Params) -> dict[str, Any]:
        message: dict[str, Any] = {k: _json_field(params[k]) for k in ("text", "blocks") if k in params}
        self.ephemerals.append(Ephemeral("", "chat.postEphemeral", dict(message)))
        self._changed()
        return {"message_ts": self._next_ts()}

    def _conversations_info(self, params: Params) -> dict[str, Any]:
        return {"channel": self._channel(params).info()}

    def _conversations_join(self, params: Params) -> dict[str, Any]:
        channel = self._channel(params)
        channel.is_member = True
        return {"channel": channel.info()}

    def _public(self) -> list[dict[str, Any]]:
        return [c.info() for c in self.channels.values() if not c.id.startswith("D")]

    def _conversations_list(self, _params: Params) -> dict[str, Any]:
        return {"channels": self._public(), "response_metadata": {"next_cursor": ""}}

    def _users_conversations(self, _params: Params) -> dict[str, Any]:
        # Every demo channel is public, and the demo's one person is in all of them.
        return {"channels": self._public(), "response_metadata": {"next_cursor": ""}}

    def _window(self, messages: list[dict[str, Any]], params: Params) -> dict[str, Any]:
        oldest, latest = Decimal(params.get("oldest") or 0), Decimal(params.get("latest") or "Infinity")
        inclusive = _flag(params.get("inclusive"))
        picked = [
            dict(m)
            for m in messages
            if oldest < Decimal(m["ts"]) < latest or (inclusive and Decimal(m["ts"]) in (oldest, latest))
        ]
        return {"messages": picked, "has_more": False, "response_metadata": {"next_cursor": ""}}

    def _conversations_history(self, params: Params) -> dict[str, Any]:
        channel = self._channel(params)
        top = [m for m in channel.messages if m.get("thread_ts") in (None, m["ts"])]
        return self._window(list(reversed(top)), params)  # newest first, like Slack

    def _conversations_replies(self, params: Params) -> dict[str, Any]:
        channel = self._channel(params)
        parent = str(params.get("ts", ""))
        return self._window([m for m in channel.messages if parent in (m["ts"], m.get("thread_ts"))], params)

    def _users_info(self, params: Params) -> dict[str, Any]:
        user = self.users.get(str(params.get("user", "")))
        if user is None:
            raise _Error("user_not_found")
        return {"user": dict(user)}

    def _views_publish(self, params: Params) -> dict[str, Any]:
        view = _json_field(params.get("view"))
        if str(params.get("user_id")) not in self.users or not isinstance(view, dict):
            raise _Error("invalid_arguments")
        self.home_views[str(params["user_id"])] = view
        self._changed()
        return {"view": {"id": "VHOME", **view}}

    def _views_open(self, params: Params) -> dict[str, Any]:
        view = _json_field(params.get("view"))
        if not isinstance(view, dict):
            raise _Error("invalid_arguments")
        view_id = f"VM{len(self.modals) + 1:04d}"
        self.modals[view_id] = view
        # A modal opened from a command is shown with the command's answers.
        self.ephemerals.append(Ephemeral("", "modal", {"text": "(a modal opened)", "view": view}))
        self._changed()
        return {"view": {**view, "id": view_id, "hash": view_id}}

    def _views_update(self, params: Params) -> dict[str, Any]:
        view = _json_field(params.get("view"))
        view_id = str(params.get("view_id", ""))
        if view_id not in self.modals or not isinstance(view, dict):
            raise _Error("not_found")
        self.modals[view_id] = view
        self._changed()
        return {"view": {**view, "id": view_id, "hash": view_id}}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                raw = wire.read_body(self).decode()
                try:
                    params = wire.slack_params(parts.query, self.headers.get("Content-Type", ""), raw)
                except ValueError:
                    params = {}
                headers = wire.lower_headers(self)
                if parts.path.startswith("/respond/"):
                    # A command's late answer; like Slack's, the response_url needs no token.
                    standin.add_ephemeral(parts.path.removeprefix("/respond/"), "response_url", params)
                    body: dict[str, Any] = {"ok": True}
                elif parts.path.startswith("/api/"):
                    body = standin.handle(parts.path.removeprefix("/api/"), params, headers)
                else:
                    body = {"ok": False, "error": "unknown_method"}
                wire.send(
                    self,
                    200 if parts.path.startswith(("/api/", "/respond/")) else 404,
                    json.dumps(body).encode(),
                    content_type="application/json; charset=utf-8",
                )

            do_GET = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
