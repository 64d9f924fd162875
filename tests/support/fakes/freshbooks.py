"""A stateful fake of the FreshBooks API on 127.0.0.1 (port 0), speaking the documented wire format.

It registers callbacks and, like FreshBooks, POSTs `callback.verify` to the callback URI at once:
before the registration call has even returned, which is the race the connector must survive.
It signs webhooks the way FreshBooks does (json.dumps of the form fields in wire order).
A token refresh can be held unanswered (`hold_refresh`), so the caller can be killed mid-refresh.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from connector.ops.demo import wire
from connector.pipeline.ingest.signature import SIGNATURE_HEADER, compute_signature

NOT_FOUND = {"errno": 404, "message": "Requested resource could not be found."}
UNAUTHORIZED = {
    "error": "unauthenticated",
    "error_description": "This action requires authentication to continue.",
}


# The date a list's `date_min`/`date_max` filter reads, per resource (freshbooks-reports.md §6).
_DATE_FIELDS = {"payments": "date", "expenses": "date", "invoices": "create_date"}


def _is_day(text: str) -> bool:
    try:
        return dt.date.fromisoformat(text).isoformat() == text
    except ValueError:
        return False


def wire_json(body: Any) -> bytes:
    """JSON as FreshBooks may write it: a Decimal in an object (e.g. an amount) goes out as a bare
    JSON number with exactly its digits, which no float could carry (12345678901234567.89)."""
    literals: list[str] = []

    def mark(value: object) -> str:
        if not isinstance(value, Decimal):
            raise TypeError(f"{type(value).__name__} is not JSON serializable")
        literals.append(str(value))
        return f"\x00{len(literals) - 1}\x00"

    text = json.dumps(body, default=mark)
    return re.sub(r'"\\u0000(\d+)\\u0000"', lambda m: literals[int(m.group(1))], text).encode()


@dataclass
class FakeCallback:
    callback_id: int
    account_id: str
    event: str
    uri: str
    verifier: str
    verified: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "callbackid": self.callback_id,
            "event": self.event,
            "uri": self.uri,
            "verified": self.verified,
            "updated_at": "2026-11-24T12:00:00Z",
        }


@dataclass
class FakeBusiness:
    business_id: int
    account_id: str
    name: str


@dataclass
class FakeIdentity:
    identity_id: int
    email: str
    businesses: list[FakeBusiness]


@dataclass
class FakeGrant:
    identity: FakeIdentity
    access_token: str
    refresh_token: str


@dataclass
class Scripted:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


# Not an answer: the connection is closed without an HTTP response.
DROPPED = Scripted(0, None)


@dataclass
class Hold:
    """A refresh held back until the test lets it go (`FakeFreshBooks.hold_refresh`)."""

    spent: bool
    arrived: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self.released.set()


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    headers: dict[str, str]


class FakeFreshBooks:
    """Use as a context manager; `base_url` is what FRESHBOOKS_API_URL should be."""

    def __init__(self) -> None:
        self.valid_tokens: set[str] = {"fb-access-token"}
        self.callbacks: dict[int, FakeCallback] = {}
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.calls: list[Call] = []
        self.verify_responses: list[httpx.Response] = []
        self.send_verify_on_register = True
        self._scripts: dict[tuple[str, str], list[Scripted]] = {}
        self._next_callback_id = 1000
        self.client_id = "fb-client"
        self.client_secret = "fb-secret"
        self.expires_in = 43199
        self.identity = FakeIdentity(
            identity_id=14051539,
            email="owner@acme.example",
            businesses=[FakeBusiness(14393743, "p7rQW5", "Acme Bookkeeping")],
        )
        self.codes: dict[str, tuple[FakeIdentity, str]] = {}  # code -> (identity, redirect_uri)
        self.grants: dict[str, FakeGrant] = {}  # by current refresh token
        self.refreshes = 0  # refresh requests FreshBooks acted on (a new pair or a refusal)
        self._refresh_hold: Hold | None = None
        self.holds: list[Hold] = []  # every hold_refresh, in order
        # Access tokens this fake issued expire `expires_in` seconds after issue (by `now`), as
        # FreshBooks' do; those made valid with `grant` never expire.
        self.token_expiry: dict[str, float] = {}
        self.expired_token_calls = 0
        self.now: Callable[[], float] = time.time  # tests hand in their injected clock
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeFreshBooks:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for hold in self.holds:
            hold.release()  # a held handler thread would keep server_close() waiting
        self._server.shutdown()
        self._server.server_close()

    # -- scripting -----------------------------------------------------------------------------

    def script(self, method: str, path_prefix: str, *responses: Scripted) -> None:
        """Answer the next matching requests with these responses, in order."""
        with self._lock:
            self._scripts.setdefault((method, path_prefix), []).extend(responses)

    def _scripted(self, method: str, path: str) -> Scripted | None:
        with self._lock:
            for (m, prefix), queue in self._scripts.items():
                if m == method and path.startswith(prefix) and queue:
                    return queue.pop(0)
        return None

    def grant(self, access_token: str, refresh_token: str) -> None:
        """Make an existing token pair valid (as if the customer had connected earlier)."""
        self.valid_tokens.add(access_token)
        self.grants[refresh_token] = FakeGrant(self.identity, access_token, refresh_token)

    def hold_refresh(self, *, spent: bool) -> Hold:
        """Hold the next token refresh (grant_type=refresh_token) until `release()`, then close its
        connection unanswered: kill the caller meanwhile and it died mid-refresh.

        spent=False: FreshBooks never acted on it (lost on the way there), the refresh token is
        still good. spent=True: FreshBooks issued a new pair first, so the refresh token is spent,
        and the answer is lost on the way back (reference §10.8: only a reconnect recovers)."""
        hold = Hold(spent=spent)
        with self._lock:
            self._refresh_hold = hold
            self.holds.append(hold)
        return hold

    def _take_refresh_hold(self) -> Hold | None:
        with self._lock:
            hold, self._refresh_hold = self._refresh_hold, None
        return hold

    def add_object(self, account_id: str, kind: str, obj: dict[str, Any]) -> None:
        self.objects[(account_id, kind, str(obj["id"]))] = obj

    def add_category(self, account_id: str, category_id: int, name: str, parent_id: int = 0) -> None:
        """An expense category (`GET .../expenses/categories/<id>` shape), embedded in expenses
        fetched with include[]=category."""
        self.objects[(account_id, "categories", str(category_id))] = {
            "category": name,
            "categoryid": category_id,
            "id": category_id,
            "parentid": parent_id,
            "is_cogs": False,
            "is_editable": False,
            "created_at": "2019-06-05 11:42:54",
            "updated_at": "2019-06-05 11:42:54",
            "vis_state": 0,
        }

    def calls_to(self, method: str, path_prefix: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and c.path.startswith(path_prefix)]

    # -- acting like FreshBooks ----------------------------------------------------------------

    def send_verify(self, callback: FakeCallback) -> httpx.Response:
        """POST callback.verify to the callback URI, in the captured field order."""
        fields = [
            ("user_id", "1"),
            ("name", "callback.verify"),
            ("verifier", callback.verifier),
            ("object_id", str(callback.callback_id)),
            ("account_id", callback.account_id),
            ("system", "https://acme.freshbooks.com"),
        ]
        response = httpx.post(
            callback.uri,
            content=urllib.parse.urlencode(fields),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        self.verify_responses.append(response)
        return response

    def webhook_fields(
        self, account_id: str, event: str, object_id: str, user_id: str = "1"
    ) -> list[tuple[str, str]]:
        # Field order as in a real delivery (reference §1); the signature depends on it. The body
        # has no timestamp: the same person changing the same object twice sends the same bytes.
        return [
            ("name", event),
            ("object_id", object_id),
            ("user_id", user_id),
            ("identity_id", "14051539"),
            ("business_id", "14393743"),
            ("account_id", account_id),
        ]

    def deliver(self, account_id: str, event: str, object_id: str, user_id: str = "1") -> httpx.Response:
        """Send a signed webhook for `event` to the verified callback registered for it, as a
        change made by FreshBooks user `user_id`."""
        callback = next(
            c
            for c in self.callbacks.values()
            if c.account_id == account_id and c.event == event and c.verified
        )
        fields = self.webhook_fields(account_id, event, object_id, user_id)
        return httpx.post(
            callback.uri,
            content=urllib.parse.urlencode(fields),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                SIGNATURE_HEADER: compute_signature(fields, callback.verifier),
            },
        )

    # -- HTTP ----------------------------------------------------------------------------------

    def _handle(self, method: str, raw_path: str, headers: dict[str, str], body: Any) -> Scripted:
        parsed = urllib.parse.urlsplit(raw_path)
        path = parsed.path
        query = urllib.parse.parse_qs(parsed.query)
        self.calls.append(Call(method, path, query, body, headers))
        scripted = self._scripted(method, path)
        if scripted is not None:
            return scripted
        if method == "GET" and path == "/oauth/authorize":
            return self._authorize({k: v[0] for k, v in query.items()})
        if method == "POST" and path == "/auth/oauth/token":
            return self._token(body if isinstance(body, dict) else {})
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.valid_tokens:
            return Scripted(401, UNAUTHORIZED)
        if self.now() >= self.token_expiry.get(auth[7:], float("inf")):
            self.expired_token_calls += 1
            return Scripted(401, UNAUTHORIZED)
        if method == "GET" and path == "/auth/api/v1/users/me":
            return self._me(auth[7:])
        parts = path.strip("/").split("/")
        if parts[:1] == ["events"] and len(parts) >= 5 and parts[3:5] == ["events", "callbacks"]:
            return self._callbacks(method, parts[2], parts[5:], body)
        if parts[:2] == ["accounting", "account"] and len(parts) == 5 and method == "GET":
            return self._list_objects(parts[2], parts[4], query)
        if parts[:2] == ["accounting", "account"] and len(parts) == 6 and method == "GET":
            obj = self.objects.get((parts[2], parts[3], parts[5]))
            if obj is None:
                return Scripted(404, NOT_FOUND)
            return Scripted(
                200,
                {"response": {"result": {parts[4].rstrip("s"): self._with_includes(parts[2], obj, query)}}},
            )
        return Scripted(404, NOT_FOUND)

    def _with_includes(
        self, account_id: str, obj: dict[str, Any], query: dict[str, list[str]]
    ) -> dict[str, Any]:
        """include[]=invoice / client / category embed the current related objects, as FreshBooks
        does (an expense's category only when asked: the expense itself names just `categoryid`)."""
        includes = set(query.get("include[]", []))
        extra: dict[str, Any] = {}
        if "invoice" in includes and obj.get("invoiceid"):
            extra["invoice"] = self.objects.get((account_id, "invoices", str(obj["invoiceid"])))
        if "client" in includes and obj.get("clientid"):
            extra["client"] = self.objects.get((account_id, "clients", str(obj["clientid"])))
        if "category" in includes and obj.get("categoryid"):
            extra["category"] = self.objects.get((account_id, "categories", str(obj["categoryid"])))
        return {**obj, **{k: v for k, v in extra.items() if v is not None}}

    def _list_objects(self, account_id: str, plural: str, query: dict[str, list[str]]) -> Scripted:
        """A list endpoint with the documented filters, paging and includes (freshbooks-reports.md §6).

        Filters, all day-granular and taking a date, never a time (§6.1): `updated_min` (on the
        Eastern `updated`, inclusive); `date_min` (inclusive) and `date_max` (exclusive, as the
        docs say) on a payment's or expense's `date` and an invoice's `create_date`; bills
        document no date filter, so FreshBooks ignores one, and filter only by `statuses[]`.
        """
        since = query.get("search[updated_min]", [""])[0]
        date_min = query.get("search[date_min]", [""])[0]
        date_max = query.get("search[date_max]", [""])[0]
        if plural == "bills":
            since = date_min = date_max = ""  # no date filter on bills: ignored (§6.4)
        for name, value in (("updated_min", since), ("date_min", date_min), ("date_max", date_max)):
            if value and not _is_day(value):
                # What FreshBooks answers to a time is unconfirmed: refusing it catches a client
                # that sends one.
                return Scripted(
                    400,
                    {"response": {"errors": [{"errno": 2001, "field": name, "message": "Invalid date."}]}},
                )
        statuses = set(query.get("search[statuses][]", [])) if plural == "bills" else set()
        date_field = _DATE_FIELDS.get(plural)
        page = int(query.get("page", ["1"])[0])
        per_page = min(100, int(query.get("per_page", ["15"])[0]))  # silently capped at 100

        def wanted(obj: dict[str, Any]) -> bool:
            # `updated` is `YYYY-MM-DD HH:MM:SS` (Eastern): its first ten characters are its day.
            if since and str(obj.get("updated") or obj.get("updated_at") or "")[:10] < since:
                return False
            day = str(obj.get(date_field) or "") if date_field else ""
            if date_min and day < date_min:
                return False
            if date_max and day >= date_max:
                return False
            return not statuses or obj.get("status") in statuses

        # One kind first, then sorted by key: a page of a big list costs a scan, not a sort of all.
        matching = [
            obj
            for key, obj in sorted(
                (key, obj)
                for key, obj in self.objects.items()
                if key[0] == account_id and key[1] == plural and wanted(obj)
            )
        ]
        pages = max(1, -(-len(matching) // per_page))
        chunk = [
            self._with_includes(account_id, o, query)
            for o in matching[(page - 1) * per_page : page * per_page]
        ]
        result = {plural: chunk, "page": page, "pages": pages, "per_page": per_page, "total": len(matching)}
        return Scripted(200, {"response": {"result": result}})

    # -- OAuth (reference §7) ----------------------------------------------------------------------

    def _authorize(self, query: dict[str, str]) -> Scripted:
        """The user approved: redirect back with a code, as the real authorize page would."""
        if query.get("client_id") != self.client_id or query.get("response_type") != "code":
            return Scripted(
                400, {"error": "invalid_request", "error_description": "bad client or response_type"}
            )
        redirect = query.get("redirect_uri", "")
        code = secrets.token_urlsafe(16)
        self.codes[code] = (self.identity, redirect)
        params = urllib.parse.urlencode({"code": code, "state": query.get("state", "")})
        return Scripted(302, None, {"Location": f"{redirect}?{params}"})

    def _issue(self, identity: FakeIdentity) -> Scripted:
        grant = FakeGrant(identity, secrets.token_urlsafe(24), secrets.token_urlsafe(24))
        self.grants[grant.refresh_token] = grant
        self.valid_tokens.add(grant.access_token)
        self.token_expiry[grant.access_token] = self.now() + self.expires_in
        return Scripted(
            200,
            {
                "access_token": grant.access_token,
                "token_type": "Bearer",
                "expires_in": self.expires_in,
                "refresh_token": grant.refresh_token,
                "scope": "user:profile:read user:invoices:read",
                "created_at": int(self.now()),
            },
        )

    def _token(self, form: dict[str, Any]) -> Scripted:
        invalid = Scripted(
            400, {"error": "invalid_grant", "error_description": "The provided grant is invalid."}
        )
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return Scripted(
                401, {"error": "invalid_client", "error_description": "Client authentication failed."}
            )
        if form.get("grant_type") == "authorization_code":
            issued = self.codes.pop(form.get("code", ""), None)  # codes are single-use
            if issued is None or issued[1] != form.get("redirect_uri"):
                return invalid
            return self._issue(issued[0])
        if form.get("grant_type") == "refresh_token":
            hold = self._take_refresh_hold()
            if hold is not None and not hold.spent:
                hold.arrived.set()
                hold.released.wait(120)
                return DROPPED
            with self._lock:
                # Single-use: the old refresh token stops working the moment it is used.
                grant = self.grants.pop(form.get("refresh_token", ""), None)
                self.refreshes += 1
            answer = invalid if grant is None else self._issue(grant.identity)
            if hold is not None:
                hold.arrived.set()
                hold.released.wait(120)
                return DROPPED
            return answer
        return Scripted(400, {"error": "unsupported_grant_type", "error_description": "?"})

    def _me(self, token: str) -> Scripted:
        identity = next((g.identity for g in self.grants.values() if g.access_token == token), self.identity)
        memberships = [
            {
                "id": 900 + n,  # the membership id, deliberately unlike the business id
                "role": "owner",
                "business": {"id": b.business_id, "name": b.name, "account_id": b.account_id},
            }
            for n, b in enumerate(identity.businesses)
        ]
        return Scripted(
            200,
            {
                "response": {
                    "id": identity.identity_id,
                    "identity_id": identity.identity_id,
                    "email": identity.email,
                    "first_name": "Ada",
                    "last_name": "Owner",
                    "business_memberships": memberships,
                }
            },
        )

    def _callbacks(self, method: str, account_id: str, rest: list[str], body: Any) -> Scripted:
        if method == "POST" and not rest:
            spec = (body or {}).get("callback", {})
            with self._lock:
                self._next_callback_id += 1
                callback = FakeCallback(
                    callback_id=self._next_callback_id,
                    account_id=account_id,
                    event=spec["event"],
                    uri=spec["uri"],
                    verifier=secrets.token_urlsafe(24),
                )
                self.callbacks[callback.callback_id] = callback
            if self.send_verify_on_register:
                # Like FreshBooks: the verify POST goes out before this call has answered.
                self.send_verify(callback)
            return Scripted(200, {"response": {"result": {"callback": callback.as_json()}}})
        if not rest:
            items = [c.as_json() for c in self.callbacks.values() if c.account_id == account_id]
            result = {"callbacks": items, "page": 1, "pages": 1, "per_page": 100, "total": len(items)}
            return Scripted(200, {"response": {"result": result}})
        callback_or_none = self.callbacks.get(int(rest[0]))
        if callback_or_none is None or callback_or_none.account_id != account_id:
            return Scripted(404, NOT_FOUND)
        callback = callback_or_none
        if method == "PUT":
            spec = (body or {}).get("callback", {})
            if spec.get("resend"):
                callback.verifier = secrets.token_urlsafe(24)
                self.send_verify(callback)
            elif "verifier" in spec:
                if spec["verifier"] != callback.verifier:
                    return Scripted(
                        400,
                        {
                            "errno": 422,
                            "message": "The request was well-formed but was unable to be followed "
                            "due to semantic errors.",
                            "details": ["verifier: Invalid verifier."],
                        },
                    )
                callback.verified = True
            return Scripted(200, {"response": {"result": {"callback": callback.as_json()}}})
        if method == "DELETE":
            del self.callbacks[callback.callback_id]
            return Scripted(204, None)
        return Scripted(200, {"response": {"result": {"callback": callback.as_json()}}})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                body = wire.freshbooks_body(
                    self.headers.get("Content-Type", ""),
                    wire.read_body(self),
                    unreadable=lambda raw: raw.decode("utf-8", "replace"),
                )
                answer = fake._handle(self.command, self.path, wire.lower_headers(self), body)
                if answer is DROPPED:
                    self.close_connection = True
                    return
                payload = b"" if answer.body is None else wire_json(answer.body)
                content_type = "application/json" if payload else None
                wire.send(self, answer.status, payload, content_type=content_type, headers=answer.headers)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        return Handler
