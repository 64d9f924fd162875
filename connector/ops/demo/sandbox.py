"""The sandbox FreshBooks: the demo business (connector.ops.demo.business) served over real HTTP on
127.0.0.1, speaking the part of FreshBooks' API the app calls (reference §1-§8): the token
endpoint, the identity, objects one by one (with `include[]`) and listed by `updated_min`, and the
webhook callbacks. Like FreshBooks, it signs and delivers a webhook to each callback registered
for an event after a change, so the app takes its real intake path.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
import threading
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from connector.domain.events import VERIFY_EVENT
from connector.ops.demo import wire
from connector.ops.demo.business import (
    ACCOUNT_ID,
    BUSINESS_ID,
    BUSINESS_NAME,
    IDENTITY_ID,
    Business,
    Change,
)
from connector.ops.simulate import webhook_fields
from connector.pipeline.ingest.signature import SIGNATURE_HEADER, compute_signature

log = logging.getLogger(__name__)

CLIENT_ID, CLIENT_SECRET = "demo-freshbooks-client", "demo-freshbooks-secret"
TOKEN_LIFETIME = dt.timedelta(hours=12)  # FreshBooks' access tokens live 12 hours
NOT_FOUND = {"errno": 404, "message": "The requested resource was not found."}
UNAUTHORIZED = {"error": "unauthenticated", "error_description": "This action requires authentication."}


@dataclass
class Callback:
    callback_id: int
    event: str
    uri: str
    verifier: str
    verified: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "callbackid": self.callback_id,
            "event": self.event,
            "uri": self.uri,
            "verified": self.verified,
            "updated_at": "2026-01-01T00:00:00Z",
        }


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class Sandbox:
    """The sandbox FreshBooks server. `start()` binds 127.0.0.1 on a free port; `base_url` then
    goes into FRESHBOOKS_API_URL. Thread-safe: the app and the demo page call it concurrently."""

    def __init__(self, business: Business, *, clock: Callable[[], dt.datetime]) -> None:
        self.business = business
        self.clock = clock
        self.lock = threading.RLock()
        self.tokens: dict[str, dt.datetime] = {}  # access token -> expiry
        self.refresh_tokens: set[str] = set()
        self.callbacks: dict[int, Callback] = {}
        self.codes: dict[str, str] = {}  # authorization code -> the redirect_uri it was issued for
        self._next_callback = 880000
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self._http = httpx.Client(timeout=10)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="demo-freshbooks", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._http.close()

    # -- what the demo seeds -----------------------------------------------------------------------

    def grant(self) -> tuple[str, str, dt.datetime]:
        """A fresh (access token, refresh token, expiry), as after the OAuth dance."""
        with self.lock:
            access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
            expires = self.clock() + TOKEN_LIFETIME
            self.tokens[access] = expires
            self.refresh_tokens.add(refresh)
            return access, refresh, expires

    def add_verified_callback(self, event: str, uri: str) -> Callback:
        """A callback registered and verified already (the demo starts connected)."""
        with self.lock:
            self._next_callback += 1
            callback = Callback(self._next_callback, event, uri, secrets.token_urlsafe(24), verified=True)
            self.callbacks[callback.callback_id] = callback
            return callback

    # -- changes and their webhooks ------------------------------------------------------------------

    def change(self, make: Callable[[Business, dt.datetime], Sequence[Change]]) -> list[Change]:
        with self.lock:
            return list(make(self.business, self.clock()))

    def deliver(self, changes: Sequence[Change]) -> list[int]:
        """POST each change's webhook, signed, to every verified callback for its event (as
        FreshBooks does); the HTTP statuses the app answered."""
        statuses: list[int] = []
        for change in changes:
            with self.lock:
                targets = [c for c in self.callbacks.values() if c.event == change.event and c.verified]
            for callback in targets:
                fields = webhook_fields(
                    change.event,
                    str(change.object_id),
                    account_id=ACCOUNT_ID,
                    business_id=BUSINESS_ID,
                    identity_id=IDENTITY_ID,
                )
                response = self._http.post(
                    callback.uri,
                    content=urllib.parse.urlencode(fields),
                    headers={
                        "Content-Type": "application/x-www-form-urlencoded",
                        SIGNATURE_HEADER: compute_signature(fields, callback.verifier),
                    },
                )
                statuses.append(response.status_code)
                if not response.is_success:
                    log.warning("demo webhook %s answered HTTP %d", change.event, response.status_code)
        return statuses

    def _send_verify(self, callback: Callback) -> None:
        fields = [
            ("name", VERIFY_EVENT),
            ("object_id", str(callback.callback_id)),
            ("verifier", callback.verifier),
            ("user_id", "1"),
        ]
        try:
            self._http.post(
                callback.uri,
                content=urllib.parse.urlencode(fields),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        except httpx.HTTPError as exc:
            log.warning("demo callback.verify not delivered (%s)", type(exc).__name__)

    # -- the API ---------------------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: Any) -> Answer:
        parsed = urllib.parse.urlsplit(raw_path)
        path, query = parsed.path, urllib.parse.parse_qs(parsed.query)
        if method == "POST" and path == "/auth/oauth/token":
            return self._token(body if isinstance(body, dict) else {})
        if method == "GET" and path == "/oauth/authorize":
            return self._authorize({k: v[0] for k, v in query.items()})
        auth = headers.get("authorization", "")
        with self.lock:
            expiry = self.tokens.get(auth.removeprefix("Bearer "))
        if not auth.startswith("Bearer ") or expiry is None or self.clock() >= expiry:
            return Answer(401, UNAUTHORIZED)
        if method == "GET" and path == "/auth/api/v1/users/me":
            return Answer(200, self._me())
        parts = path.strip("/").split("/")
        if (
            parts[:1] == ["events"]
            and len(parts) >= 5
            and parts[2] == ACCOUNT_ID
            and parts[3:5] == ["events", "callbacks"]
        ):
            return self._callbacks(method, parts[5:], body)
        if parts[:3] != ["accounting", "account", ACCOUNT_ID] or method != "GET":
            return Answer(404, NOT_FOUND)
        includes = set(query.get("include[]", []))
        if len(parts) == 5:
            return self._list(parts[4], query, includes)
        if len(parts) == 6 and parts[5].isdigit():
            with self.lock:
                obj = self.business.get(parts[4], int(parts[5]))
                if obj is None:
                    return Answer(404, NOT_FOUND)
                result = self.business.with_includes(parts[4], obj, includes, self.clock())
            return Answer(200, {"response": {"result": {parts[4].rstrip("s"): result}}})
        return Answer(404, NOT_FOUND)

    def _authorize(self, query: dict[str, str]) -> Answer:
        """`/freshbooks connect` in the demo: the owner approves at once and goes back with a code."""
        redirect = query.get("redirect_uri", "")
        if query.get("client_id") != CLIENT_ID or query.get("response_type") != "code" or not redirect:
            return Answer(400, {"error": "invalid_request", "error_description": "bad client or redirect"})
        code = secrets.token_urlsafe(16)
        with self.lock:
            self.codes[code] = redirect
        params = urllib.parse.urlencode({"code": code, "state": query.get("state", "")})
        return Answer(302, headers={"Location": f"{redirect}?{params}"})

    def _token(self, form: dict[str, Any]) -> Answer:
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return Answer(
                401, {"error": "invalid_client", "error_description": "Client authentication failed."}
            )
        invalid = Answer(
            400, {"error": "invalid_grant", "error_description": "The provided grant is invalid."}
        )
        grant = form.get("grant_type")
        with self.lock:
            # Codes and refresh tokens work once, like FreshBooks'.
            if grant == "authorization_code":
                if self.codes.pop(str(form.get("code")), None) != form.get("redirect_uri"):
                    return invalid
            elif grant != "refresh_token" or form.get("refresh_token") not in self.refresh_tokens:
                return invalid
            self.refresh_tokens.discard(str(form.get("refresh_token")))
        access, refresh, _ = self.grant()
        return Answer(
            200,
            {
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": int(TOKEN_LIFETIME.total_seconds()),
                "refresh_token": refresh,
                "scope": "user:profile:read",
                "created_at": int(self.clock().timestamp()),
            },
        )

    def _me(self) -> dict[str, Any]:
        membership = {
            "id": 901,
            "role": "owner",
            "business": {"id": BUSINESS_ID, "name": BUSINESS_NAME, "account_id": ACCOUNT_ID},
        }
        return {
            "response": {
                "id": IDENTITY_ID,
                "identity_id": IDENTITY_ID,
                "email": "owner@maple-birch.example",
                "first_name": "Robin",
                "last_name": "Maple",
                "business_memberships": [membership],
            }
        }

    def _list(self, plural: str, query: dict[str, list[str]], includes: set[str]) -> Answer:
        since = query.get("search[updated_min]", [""])[0]
        page = int(query.get("page", ["1"])[0])
        per_page = min(100, int(query.get("per_page", ["15"])[0]))
        with self.lock:
            matching = [
                self.business.with_includes(plural, obj, includes, self.clock())
                for obj in self.business.of_kind(plural)
                # Day-granular on the Eastern `updated` (bills ignore the filter), as FreshBooks.
                if plural == "bills" or str(obj.get("updated") or "")[:10] >= since
            ]
        pages = max(1, -(-len(matching) // per_page))
        chunk = matching[(page - 1) * per_page : page * per_page]
        result = {plural: chunk, "page": page, "pages": pages, "per_page": per_page, "total": len(matching)}
        return Answer(200, {"response": {"result": result}})

    def _callbacks(self, method: str, rest: list[str], body: Any) -> Answer:
        spec = (body or {}).get("callback", {}) if isinstance(body, dict) else {}
        with self.lock:
            if method == "POST" and not rest:
                self._next_callback += 1
                callback = Callback(
                    self._next_callback,
                    str(spec.get("event")),
                    str(spec.get("uri")),
                    secrets.token_urlsafe(24),
                    verified=False,
                )
                self.callbacks[callback.callback_id] = callback
            elif not rest:
                items = [c.as_json() for c in self.callbacks.values()]
                result = {"callbacks": items, "page": 1, "pages": 1, "per_page": 100, "total": len(items)}
                return Answer(200, {"response": {"result": result}})
            else:
                found = self.callbacks.get(int(rest[0])) if rest[0].isdigit() else None
                if found is None:
                    return Answer(404, NOT_FOUND)
                callback = found
                if method == "DELETE":
                    del self.callbacks[callback.callback_id]
                    return Answer(204)
                if method == "PUT" and "verifier" in spec:
                    if spec["verifier"] != callback.verifier:
                        return Answer(400, {"errno": 422, "message": "Invalid verifier."})
                    callback.verified = True
        if (method == "POST" and not rest) or (method == "PUT" and spec.get("resend")):
            # FreshBooks sends the verification as soon as it registers the callback.
            threading.Thread(target=self._send_verify, args=(callback,), daemon=True).start()
        return Answer(200, {"response": {"result": {"callback": callback.as_json()}}})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        sandbox = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the app's own logs say what it called

            def _serve(self) -> None:
                body = wire.freshbooks_body(
                    self.headers.get("Content-Type", ""), wire.read_body(self), unreadable=lambda _: None
                )
                answer = sandbox.handle(self.command, self.path, wire.lower_headers(self), body)
                payload = b"" if answer.body is None else json.dumps(answer.body).encode()
                content_type = "application/json" if payload else None
                wire.send(self, answer.status, payload, content_type=content_type, headers=answer.headers)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        return Handler
