"""HTTP edge for FreshBooks and operators. Handlers parse, call one service function, answer."""

from __future__ import annotations

import asyncio
import functools
import hmac
import html
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from flask import Blueprint, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.routing import Map

from connector.freshbooks.connect import (
    ChooseBusiness,
    Connected,
    ConnectError,
    ConnectService,
    PendingConnect,
)
from connector.ops.front import Answer, DirectRoute, DirectRoutes, too_large_message
from connector.ops.setup_page import PAGE_HEADERS, SetupState, render_setup_page
from connector.pipeline.ingest.form import MAX_BODY_BYTES
from connector.pipeline.ingest.intake import Deferred, Intake, IntakeResult
from connector.pipeline.ingest.signature import SIGNATURE_HEADER
from connector.telemetry import metrics

# Set to 1 by bench/ingest.py only: adds POST /bench/bare, the bare-Flask baseline.
BENCH_BARE_ROUTE_ENV = "FBSLACK_BENCH_BARE_ROUTE"

# Webhook tokens are 43 url-safe characters; anything else cannot exist, so skip the lookup.
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,128}$")

WEBHOOK_PREFIX = "/freshbooks/webhooks/"
# An oversized webhook body is refused before any route code runs; it is still a refused webhook.
_WEBHOOK_TOO_LARGE = metrics.WEBHOOKS_REJECTED.labels(reason="malformed")
_UNKNOWN_TOKEN = metrics.WEBHOOKS_REJECTED.labels(reason="unknown_token")
_TEXT_TYPE = "text/plain; charset=utf-8"
_SIGNATURE_NAME = SIGNATURE_HEADER.lower().encode("ascii")


# The largest body each endpoint accepts, in bytes, and the one place that refuses a larger one
# (413): `fbslack serve` before reading it (connector.ops.front), and the app (Werkzeug's
# max_content_length, `_add_body_limits`) under any other server. Every registered endpoint has an
# entry (tests/ops/test_request_limits.py).
BODY_LIMITS: dict[str, int] = {
    # FreshBooks posts a handful of form fields.
    "connector.freshbooks_webhook": MAX_BODY_BYTES,
    "connector.bench_bare": MAX_BODY_BYTES,
    # Slack: a modal view is at most 250 kB (views.open answers `view_too_large` above it), and a
    # view_submission sends it URL-encoded inside a form field, which can triple it. Messages are
    # smaller (40,000 characters of text, 50 blocks).
    "slack_events": 1024 * 1024,
    # Our own pages' forms: a choice token and a business id; the confirmation's token and answer.
    "connector.freshbooks_oauth_choose": 4 * 1024,
    "connector.freshbooks_oauth_confirm": 4 * 1024,
    # GETs carry no body.
    "connector.freshbooks_oauth_callback": 0,
    "connector.healthz": 0,
    "connector.prometheus_metrics": 0,
    "connector.index": 0,
    "slack_install": 0,
    "slack_oauth_redirect": 0,
}


def body_limits(url_map: Map) -> Callable[[str, str], int]:
    """(method, path) -> the body limit of the endpoint they reach; 0 where none does (404, 405)."""
    adapter = url_map.bind("localhost")

    def limit(method: str, path: str) -> int:
        try:
            endpoint, _args = adapter.match(path, method=method)
        except HTTPException:
            return 0
        return BODY_LIMITS.get(str(endpoint), 0)

    return limit


_PAGE = (
    "<!doctype html><html><head><meta charset='utf-8'><title>FreshBooks for Slack</title></head>"
    "<body>{body}</body></html>"
)


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    database: str


def _text(status: int, message: str) -> Response:
    return Response(message + "\n", status=status, mimetype="text/plain")


def _page(title: str, body: str, status: int = 200) -> Response:
    content = f"<h1>{html.escape(title)}</h1>{body}"
    return Response(_PAGE.format(body=content), status=status, mimetype="text/html")


def _paragraph(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


# The return page's confirmation is bound to the browser that was shown it (signed double submit).
CONNECT_COOKIE = "fbslack_connect"
_NO_FRAMES = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",  # no clickjacking of the Connect button
    "Content-Security-Policy": "frame-ancestors 'none'",
}


def _review_page(pending: PendingConnect, *, state: str, code: str, secure_cookie: bool) -> Response:
    """Which Slack workspace the books would join, and a POST form to confirm (or cancel) it."""
    where = html.escape(pending.workspace_name or "this Slack workspace")
    hidden = "".join(
        f"<input type='hidden' name='{name}' value='{html.escape(value, quote=True)}'>"
        for name, value in (("state", state), ("code", code), ("form_token", pending.form_token))
    )
    body = (
        f"<p>FreshBooks will be connected to the Slack workspace <strong>{where}</strong> "
        f"(<code>{html.escape(pending.team_id)}</code>): its invoices, payments, bills and expenses "
        "will be posted in that workspace's channels.</p>"
        "<p>Continue only if you started this with <code>/freshbooks connect</code> in that "
        "workspace. Nothing is connected until you press Connect.</p>"
        f"<form method='post' action='/freshbooks/oauth/confirm'>{hidden}"
        f"<button type='submit' name='action' value='connect'>Connect to {where}</button> "
        "<button type='submit' name='action' value='cancel'>Cancel</button></form>"
    )
    response = _page("Connect FreshBooks to Slack?", body)
    response.headers.update(_NO_FRAMES)
    response.set_cookie(
        CONNECT_COOKIE,
        pending.browser_nonce,
        max_age=600,
        path="/freshbooks/oauth",
        secure=secure_cookie,
        httponly=True,
        samesite="Lax",  # sent with our own form's POST, not with another site's
    )
    return response


def _answer_page(
    result: Connected | ChooseBusiness | None,
    connected_page: Callable[[Connected], Response],
    choice_page: Callable[[ChooseBusiness], Response],
) -> Response:
    if result is None:
        return _page("Nothing was connected", _paragraph("You cancelled. You can close this tab."))
    return connected_page(result) if isinstance(result, Connected) else choice_page(result)


def _bearer_matches(header: str | None, token: str) -> bool:
    """`Authorization: Bearer <token>`, compared in constant time. Pure."""
    scheme, _, presented = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode("utf-8"), token.encode("utf-8"))


def _add_body_limits(bp: Blueprint) -> None:
    """BODY_LIMITS, enforced by the app itself for servers other than `fbslack serve`'s front."""

    @bp.before_app_request
    def limit_body() -> None:
        request.max_content_length = BODY_LIMITS.get(request.endpoint or "", 0)

    @bp.app_errorhandler(RequestEntityTooLarge)
    def too_large(_exc: RequestEntityTooLarge) -> Response:
        if request.endpoint == "connector.freshbooks_webhook":
            _WEBHOOK_TOO_LARGE.inc()
        return _text(413, too_large_message(BODY_LIMITS.get(request.endpoint or "", 0)))


def _add_connect_routes(bp: Blueprint, *, connect: ConnectService, secure_cookies: bool) -> None:
    """The FreshBooks OAuth return: review and confirm, then the business choice."""

    def connected_page(result: Connected) -> Response:
        verb = "reconnected" if result.reconnected else "connected"
        return _page(
            "FreshBooks is connected",
            _paragraph(
                f"{result.business_name} is {verb}. Its webhooks are being registered now; you will get a "
                "message in Slack when events are flowing. You can close this tab."
            ),
        )

    def not_connected(exc: ConnectError) -> Response:
        return _page("FreshBooks was not connected", _paragraph(str(exc)), status=400)

    @bp.get("/freshbooks/oauth/callback")
    def freshbooks_oauth_callback() -> Response:
        """Back from FreshBooks: say which Slack workspace the books would join and ask first."""
        state, code, error = (
            request.args.get("state", ""),
            request.args.get("code"),
            request.args.get("error"),
        )
        try:
            if error or not code:
                connect.complete(state=state, code=code, error=error)  # spends the link, then says why
            pending = connect.review(state=state)
        except ConnectError as exc:
            return not_connected(exc)
        return _review_page(pending, state=state, code=code or "", secure_cookie=secure_cookies)

    @bp.post("/freshbooks/oauth/confirm")
    def freshbooks_oauth_confirm() -> Response:
        try:
            result = connect.confirm(
                state=request.form.get("state", ""),
                code=request.form.get("code") or None,
                form_token=request.form.get("form_token", ""),
                browser_nonce=request.cookies.get(CONNECT_COOKIE, ""),
                cancel=request.form.get("action") == "cancel",
            )
        except ConnectError as exc:
            response = not_connected(exc)  # the cookie stays: the page's own form may still be sent
        else:
            response = _answer_page(result, connected_page, choice_page)
            response.delete_cookie(CONNECT_COOKIE, path="/freshbooks/oauth")
        response.headers.update(_NO_FRAMES)
        return response

    def choice_page(result: ChooseBusiness) -> Response:
        choices = "".join(
            "<form method='post' action='/freshbooks/oauth/choose'>"
            f"<input type='hidden' name='choice' value='{html.escape(result.choice_token)}'>"
            f"<input type='hidden' name='business_id' value='{b.business_id}'>"
            f"<button type='submit'>{html.escape(b.name)}</button></form>"
            for b in result.businesses
        )
        return _page(
            "Which FreshBooks business?",
            _paragraph("This login has several businesses. Pick the one to connect to Slack:") + choices,
        )

    @bp.post("/freshbooks/oauth/choose")
    def freshbooks_oauth_choose() -> Response:
        try:
            business_id = int(request.form.get("business_id", ""))
        except ValueError:
            return _page("FreshBooks was not connected", _paragraph("No business was chosen."), status=400)
        try:
            result = connect.choose(choice_token=request.form.get("choice", ""), business_id=business_id)
        except ConnectError as exc:
            return _page("FreshBooks was not connected", _paragraph(str(exc)), status=400)
        return connected_page(result)


def create_blueprint(
    *,
    intake: Intake,
    connect: ConnectService,
    health: Callable[[], Health],
    setup_state: Callable[[], SetupState],
    metrics_body: Callable[[], bytes],
    metrics_token: str | None = None,
    secure_cookies: bool = False,
) -> Blueprint:
    """The routes. `metrics_body` renders /metrics; with `metrics_token` set, a scrape must present
    it as `Authorization: Bearer <token>`."""
    bp = Blueprint("connector", __name__)

    _add_body_limits(bp)
    _add_connect_routes(bp, connect=connect, secure_cookies=secure_cookies)

    @bp.post(WEBHOOK_PREFIX + "<token>")
    def freshbooks_webhook(token: str) -> Response:
        """The webhook route for servers other than `fbslack serve`, and for the requests its front
        hands back (`_DirectWebhook`): both answer alike, through the same intake."""
        started = time.perf_counter()
        try:
            if not _TOKEN.match(token):
                return _text(*_unknown_token())
            # Read the raw body before anything touches request.form (that would consume it). A
            # body over its limit (BODY_LIMITS) raises RequestEntityTooLarge here: 413.
            raw = request.stream.read(MAX_BODY_BYTES + 1)
            result = intake.receive(
                token=token,
                raw_body=raw,
                content_type=request.headers.get("Content-Type"),
                signature=request.headers.get(SIGNATURE_HEADER),
            )
            return _text(result.status, result.message)
        finally:
            metrics.WEBHOOK_ACK_SECONDS.observe(time.perf_counter() - started)

    @bp.get("/healthz")
    def healthz() -> tuple[Response, int]:
        report = health()
        body = jsonify(status="ok" if report.ok else "unavailable", database=report.database)
        return body, 200 if report.ok else 503

    @bp.get("/metrics")
    def prometheus_metrics() -> Response:
        if metrics_token is not None and not _bearer_matches(
            request.headers.get("Authorization"), metrics_token
        ):
            response = _text(401, "a valid bearer token is required (METRICS_TOKEN)")
            response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
        return Response(metrics_body(), content_type=CONTENT_TYPE_LATEST)

    @bp.get("/")
    def index() -> Response:
        """The setup page (connector.ops.setup_page): each step's state and what to paste next."""
        response = Response(render_setup_page(setup_state()), mimetype="text/html")
        response.headers.update(PAGE_HEADERS)
        return response

    if os.environ.get(BENCH_BARE_ROUTE_ENV) == "1":
        # bench/ingest.py only: the floor the webhook route is compared with. Same server, app,
        # workers and threads as the webhook; it reads the body and answers, and does nothing else.
        @bp.post("/bench/bare")
        def bench_bare() -> Response:
            request.stream.read(MAX_BODY_BYTES + 1)
            return _text(200, "ok")

    return bp


# -- the webhook route answered by `fbslack serve`'s front itself -----------------------------------


def _unknown_token() -> tuple[int, str]:
    _UNKNOWN_TOKEN.inc()
    return 404, "unknown webhook URL"


def direct_routes(intake: Intake) -> DirectRoutes:
    """The routes `fbslack serve`'s front answers on its loop (connector.ops.front): a webhook.

    A webhook whose connection is cached and whose signature checks out is parsed, verified and
    encrypted on the loop and goes straight to the group commit: no WSGI environ, no Flask request,
    no pool thread (issue 12, section 5). Anything that needs the database before the commit (a
    lookup, a callback.verify) goes to the Flask route (`freshbooks_webhook`) as before. Matches
    what the URL map matches for that rule: POST, one non-empty path segment after the prefix.
    """

    replies: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Replies] = weakref.WeakKeyDictionary()

    def route(method: str, path: str) -> DirectRoute | None:
        if method != "POST" or not path.startswith(WEBHOOK_PREFIX):
            return None
        token = path[len(WEBHOOK_PREFIX) :]
        if not token or "/" in token:
            return None
        loop = asyncio.get_running_loop()
        mailbox = replies.get(loop)
        if mailbox is None:
            mailbox = replies[loop] = _Replies()
        return _DirectWebhook(intake, token, mailbox)

    return route


class _Replies:
    """Results from the committing thread to one event loop: one wake-up of the loop per batch
    (call_soon_threadsafe writes to the loop's wake-up socket each time it is called)."""

    def __init__(self) -> None:  # the loop is its futures' (no reference here: replies is weak)
        self._lock = threading.Lock()
        self._ready: list[tuple[asyncio.Future[IntakeResult], IntakeResult]] = []

    def post(self, waiting: asyncio.Future[IntakeResult], result: IntakeResult) -> None:
        """From any thread."""
        with self._lock:
            self._ready.append((waiting, result))
            first = len(self._ready) == 1
        if first:
            waiting.get_loop().call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self._lock:
            ready, self._ready = self._ready, []
        for waiting, result in ready:
            if not waiting.done():  # cancelled: the server is shutting down
                waiting.set_result(result)


class _DirectWebhook:
    __slots__ = ("_intake", "_replies", "_token")

    def __init__(self, intake: Intake, token: str, replies: _Replies) -> None:
        self._intake = intake
        self._token = token
        self._replies = replies

    def too_large(self) -> None:
        _WEBHOOK_TOO_LARGE.inc()

    async def answer(self, headers: Sequence[tuple[bytes, bytes]], body: bytes) -> Answer | None:
        started = time.perf_counter()
        if not _TOKEN.match(self._token):
            answer = _text_answer(*_unknown_token())
            metrics.WEBHOOK_ACK_SECONDS.observe(time.perf_counter() - started)
            return answer
        # As the WSGI environ has them: repeated headers joined with ",", latin-1 text.
        content_type = signature = None
        for name, value in headers:
            if name == b"content-type":
                text = value.decode("latin-1")
                content_type = text if content_type is None else f"{content_type},{text}"
            elif name == _SIGNATURE_NAME:
                text = value.decode("latin-1")
                signature = text if signature is None else f"{signature},{text}"
        waiting: asyncio.Future[IntakeResult] = asyncio.get_running_loop().create_future()
        result = self._intake.receive_soon(
            token=self._token,
            raw_body=body,
            content_type=content_type,
            signature=signature,
            answer=functools.partial(self._replies.post, waiting),  # in the committing thread
        )
        if result is Deferred.BLOCKING:
            return None  # the Flask route does all of it, and times it
        if result is Deferred.PENDING:
            result = await waiting
        answer = _text_answer(result.status, result.message)
        metrics.WEBHOOK_ACK_SECONDS.observe(time.perf_counter() - started)
        return answer


def _text_answer(status: int, message: str) -> Answer:
    """What `_text` makes Flask send, byte for byte."""
    body = (message + "\n").encode("utf-8")
    return Answer(
        status,
        HTTP_STATUS_CODES.get(status, "UNKNOWN").upper(),
        [("Content-Type", _TEXT_TYPE), ("Content-Length", str(len(body)))],
        body,
    )
