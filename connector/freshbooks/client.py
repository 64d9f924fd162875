"""A thin, typed FreshBooks API client over httpx.

Why not the official `freshbooks-sdk`: it is unmaintained (last release 2024), sync `requests`
only, retries HTTP 400, and parses only one of the four error shapes FreshBooks returns. The
surface we need is small, so one client here owns timeouts, retries and error parsing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import functools
import http.cookiejar
import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import httpx

from connector.domain import refresh
from connector.domain.events import ObjectKind
from connector.telemetry import metrics

log = logging.getLogger(__name__)

USER_AGENT = "fbslack/0.1 (+FreshBooks-to-Slack connector)"

T = TypeVar("T")


class ErrorKind(enum.StrEnum):
    AUTH = "auth"  # token missing, expired or revoked
    NOT_FOUND = "not_found"
    VALIDATION = "validation"  # FreshBooks refused the request as given
    RATE_LIMITED = "rate_limited"
    SERVER = "server"
    NETWORK = "network"
    PROTOCOL = "protocol"  # an answer we cannot read


TRANSIENT_KINDS = frozenset({ErrorKind.RATE_LIMITED, ErrorKind.SERVER, ErrorKind.NETWORK})


class FreshBooksError(Exception):
    """A failed FreshBooks call, classified. `message` comes from FreshBooks and holds no secrets."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{kind}: {message}" + (f" (HTTP {status})" if status else ""))
        self.kind = kind
        self.message = message
        self.status = status
        self.code = code
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        return self.kind in TRANSIENT_KINDS


@contextlib.contextmanager
def _reading_answer() -> Iterator[None]:
    """Around the parsing of an answer FreshBooks gave: one we cannot read failed like any call
    does, so it is counted in the same metric as the errors `request` sees."""
    try:
        yield
    except FreshBooksError as error:
        metrics.FRESHBOOKS_API_ERRORS.labels(kind=error.kind).inc()
        raise


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP-date; we fall back to our own backoff


def _message_and_code(body: Any) -> tuple[str | None, str | None, bool]:
    """Pull (message, code, looks_like_auth) out of any of FreshBooks' error shapes (reference §8)."""
    if not isinstance(body, dict):
        return None, None, False
    # Auth / OAuth: {"error": "...", "error_description": "..."}
    if isinstance(body.get("error"), str):
        error = body["error"]
        auth = error in ("unauthenticated", "invalid_token", "invalid_grant", "unauthorized")
        return str(body.get("error_description") or error), error, auth
    # Events API: {"errno": 404, "message": "..."} (the SDK serves errno 401 with HTTP 404)
    if "errno" in body:
        errno = str(body["errno"])
        return str(body.get("message", "")), errno, errno == "401"
    # Ledger endpoints: {"errors": {"message": ..., "status": ...}}
    if isinstance(body.get("errors"), dict):
        errors = body["errors"]
        return str(errors.get("message", "")), str(errors.get("status", "")) or None, False
    # gRPC style: {"code": 5, "message": "...", "details": [...]}; code 16 = UNAUTHENTICATED
    if "code" in body and "message" in body:
        code = str(body["code"])
        return str(body["message"]), code, code == "16"
    # Classic accounting: {"response": {"errors": [{"errno": 1012, "message": "..."}]}}
    response = body.get("response")
    if isinstance(response, dict) and isinstance(response.get("errors"), list) and response["errors"]:
        first = response["errors"][0]
        if isinstance(first, dict):
            return str(first.get("message", "")), str(first.get("errno", "")) or None, False
    return None, None, False


# gRPC status codes (the "new" error shape) as the HTTP status each stands for.
_GRPC_HTTP_STATUS = {
    3: 400,  # INVALID_ARGUMENT
    4: 504,  # DEADLINE_EXCEEDED
    5: 404,  # NOT_FOUND
    6: 409,  # ALREADY_EXISTS
    7: 403,  # PERMISSION_DENIED
    8: 429,  # RESOURCE_EXHAUSTED
    9: 400,  # FAILED_PRECONDITION
    13: 500,  # INTERNAL
    14: 503,  # UNAVAILABLE
    16: 401,  # UNAUTHENTICATED
}


def _as_error_status(value: Any) -> int:
    """A status or errno named in an error body, if it is an HTTP error status; else 400."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return 400
    return number if 400 <= number < 600 else 400


def error_status(body: Any) -> int | None:
    """The HTTP status an error body stands for, or None if the body is no error. Pure.

    FreshBooks may send an error envelope with HTTP 200 (freshbooks-reports.md §4 quirk 7): the
    body, not the status line, says whether a call failed. A body naming no status reads as 400.
    """
    if not isinstance(body, dict):
        return None
    if isinstance(body.get("error"), str):
        return 401 if _message_and_code(body)[2] else 400
    if "errno" in body:
        return _as_error_status(body["errno"])
    errors = body.get("errors")
    if isinstance(errors, dict):
        return _as_error_status(errors.get("status"))
    if isinstance(errors, list) and errors:
        return 400
    if "code" in body and "message" in body and "response" not in body:
        try:
            code = int(body["code"])
        except (TypeError, ValueError):
            return 400
        return None if code == 0 else _GRPC_HTTP_STATUS.get(code, 400)  # 0 is gRPC's OK
    response = body.get("response")
    if isinstance(response, dict) and isinstance(response.get("errors"), list) and response["errors"]:
        first = response["errors"][0]
        return _as_error_status(first.get("errno")) if isinstance(first, dict) else 400
    return None


def classify_response(status: int, body: bytes, headers: Mapping[str, str]) -> FreshBooksError:
    """Turn a non-2xx (or error-bodied) answer into a FreshBooksError. Pure.

    An error body under a success status is classified as it would be under the status it names.
    """
    try:
        parsed: Any = json.loads(body) if body else None
    except ValueError:
        parsed = None
    message, code, auth_shape = _message_and_code(parsed)
    message = (message or f"HTTP {status}")[:300]
    implied = error_status(parsed) if status < 400 else None
    status_for_kind = implied if implied is not None else status
    return FreshBooksError(
        _kind_of(status_for_kind, auth_shape),
        message,
        status=status,
        code=code,
        retry_after=_retry_after(headers),
    )


def _kind_of(status: int, auth_shape: bool) -> ErrorKind:
    if status == 429:
        kind = ErrorKind.RATE_LIMITED
    elif status in (401, 403) or auth_shape:
        kind = ErrorKind.AUTH
    elif status >= 500:
        kind = ErrorKind.SERVER
    elif status == 404:
        kind = ErrorKind.NOT_FOUND
    elif 400 <= status < 500:
        kind = ErrorKind.VALIDATION
    else:
        kind = ErrorKind.PROTOCOL
    return kind


@dataclass(frozen=True, slots=True)
class CallbackInfo:
    callback_id: int
    event: str
    uri: str
    verified: bool


def _parse_callback(raw: Any) -> CallbackInfo:
    try:
        return CallbackInfo(
            callback_id=int(raw["callbackid"]),
            event=str(raw["event"]),
            uri=str(raw["uri"]),
            verified=bool(raw.get("verified", False)),
        )
    except (KeyError, TypeError, ValueError):
        raise FreshBooksError(ErrorKind.PROTOCOL, "callback object without callbackid/event/uri") from None


@dataclass(frozen=True, slots=True)
class TokenGrant:
    access_token: str
    refresh_token: str
    expires_at: dt.datetime
    scope: str
    issued_at: dt.datetime | None = None  # with expires_at, the token's lifetime

    def __repr__(self) -> str:  # tokens never end up in a log line by accident
        return f"TokenGrant(expires_at={self.expires_at.isoformat()}, scope={self.scope!r})"


@dataclass(frozen=True, slots=True)
class Business:
    business_id: int
    account_id: str
    name: str
    role: str | None


@dataclass(frozen=True, slots=True)
class Identity:
    identity_id: int
    email: str | None
    businesses: tuple[Business, ...]


def _parse_grant(body: Any, now: dt.datetime) -> TokenGrant:
    try:
        expires_in = int(body["expires_in"])
        created = body.get("created_at")
        issued = dt.datetime.fromtimestamp(int(created), dt.UTC) if created else now
        return TokenGrant(
            access_token=str(body["access_token"]),
            refresh_token=str(body["refresh_token"]),
            expires_at=issued + dt.timedelta(seconds=expires_in),
            scope=str(body.get("scope", "")),
            issued_at=issued,
        )
    except (KeyError, TypeError, ValueError, OverflowError):
        raise FreshBooksError(ErrorKind.PROTOCOL, "token response without access/refresh token") from None


def _parse_identity(body: Any) -> Identity:
    try:
        me = body["response"]
        businesses = []
        for membership in me.get("business_memberships") or []:
            business = membership["business"]
            if not business.get("account_id"):
                continue  # a business without an accounting account has nothing to report
            businesses.append(
                Business(
                    # business.id, not the membership id: the reference warns they differ.
                    business_id=int(business["id"]),
                    account_id=str(business["account_id"]),
                    name=str(business.get("name") or business["account_id"]),
                    role=membership.get("role"),
                )
            )
        return Identity(
            identity_id=int(me.get("identity_id") or me["id"]),
            email=me.get("email"),
            businesses=tuple(businesses),
        )
    except (KeyError, TypeError, ValueError):
        raise FreshBooksError(ErrorKind.PROTOCOL, "users/me response is not an identity") from None


def _result(body: Any, key: str) -> Any:
    try:
        return body["response"]["result"][key]
    except (KeyError, TypeError):
        raise FreshBooksError(ErrorKind.PROTOCOL, f"response has no result.{key}") from None


class FreshBooksClient:
    """One per process; every call takes the connection's access token explicitly."""

    def __init__(
        self,
        *,
        base_url: str,
        timeout: float = 10.0,
        max_retries: int = 3,
        max_wait: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url,
            timeout=timeout,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            transport=transport,
            # No cookie is ever kept: this one client makes every customer's calls, and a cookie
            # set in an answer to one (a load balancer's, a CDN's) must not go out with another's.
            cookies=http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[])),
        )
        self._timeout = timeout
        self._max_retries = max_retries
        self._max_wait = max_wait
        self._sleep = sleep

    def close(self) -> None:
        self._http.close()

    # -- transport ----------------------------------------------------------------------------

    def _backoff(self, attempt: int, error: FreshBooksError) -> float:
        if error.retry_after is not None:
            return min(error.retry_after, self._max_wait)
        jitter = 0.5 + random.random() / 2  # noqa: S311 - jitter, not cryptography
        return float(min(self._max_wait, 0.5 * 2**attempt) * jitter)

    def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None,
        json_body: Any = None,
        form: dict[str, str] | None = None,
        params: Any = None,
        deadline: float | None = None,
    ) -> Any:
        """Send one API call with retries; return the decoded JSON body (None for 204).

        `deadline` (a time.monotonic() value): no attempt starts, no phase of one waits, and no
        retry sleeps past it. Each phase is bounded, not the whole call (see `within`).
        """
        # Only 429 is safe to repeat for a POST (FreshBooks did not act on it); other failures of
        # a non-idempotent call are left to the caller, who can list before re-creating.
        idempotent = method in ("GET", "PUT", "DELETE")
        attempt = 0
        while True:
            try:
                return self._send(
                    method,
                    path,
                    token=token,
                    json_body=json_body,
                    form=form,
                    params=params,
                    deadline=deadline,
                )
            except FreshBooksError as error:
                metrics.FRESHBOOKS_API_ERRORS.labels(kind=error.kind).inc()
                retryable = error.kind is ErrorKind.RATE_LIMITED or (idempotent and error.transient)
                if not retryable or attempt >= self._max_retries:
                    raise
                wait = self._backoff(attempt, error)
                if deadline is not None and time.monotonic() + wait >= deadline:
                    raise
                log.warning(
                    "freshbooks %s %s failed (%s), retry %d in %.1fs",
                    method,
                    path.split("?", maxsplit=1)[0],
                    error.kind,
                    attempt + 1,
                    wait,
                )
                self._sleep(wait)
                attempt += 1

    def _send(
        self,
        method: str,
        path: str,
        *,
        token: str | None,
        json_body: Any,
        form: Any,
        params: Any,
        deadline: float | None = None,
    ) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        timeout = self._timeout
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise FreshBooksError(ErrorKind.NETWORK, "timed out")
            timeout = min(self._timeout, left)
        try:
            response = self._http.request(
                method, path, json=json_body, data=form, params=params, headers=headers, timeout=timeout
            )
        except httpx.TimeoutException:
            raise FreshBooksError(ErrorKind.NETWORK, "timed out") from None
        except httpx.TransportError as exc:
            raise FreshBooksError(ErrorKind.NETWORK, type(exc).__name__) from None
        if (response.status_code == 204 or not response.content) and response.is_success:
            return None
        if not response.is_success:
            raise classify_response(response.status_code, response.content, response.headers)
        try:
            # Amounts may come as JSON numbers: read them as Decimal, never through float.
            body = response.json(parse_float=Decimal)
        except ValueError:
            raise FreshBooksError(
                ErrorKind.PROTOCOL, "response is not JSON", status=response.status_code
            ) from None
        if error_status(body) is not None:
            raise classify_response(response.status_code, response.content, response.headers)
        return body

    # -- OAuth and identity (reference §7) -----------------------------------------------------

    def _token_call(
        self, form: dict[str, str], now: dt.datetime, deadline: float | None = None
    ) -> TokenGrant:
        # Form-encoded, as FreshBooks' own SDK sends it. Never retried after a 5xx: a refresh that
        # reached FreshBooks may already have spent the single-use refresh token.
        body = self.request("POST", "/auth/oauth/token", token=None, form=form, deadline=deadline)
        with _reading_answer():
            return _parse_grant(body, now)

    @staticmethod
    def within(seconds: float, call: Callable[[float], T]) -> T:
        """`call(deadline)`'s result, or a NETWORK error once `seconds` have passed, whatever the
        network does meanwhile (connector.domain.refresh.within says why a timeout is not enough)."""
        try:
            return refresh.within(seconds, call, name="freshbooks-deadline")
        except refresh.DeadlinePassed as exc:
            metrics.FRESHBOOKS_API_ERRORS.labels(kind=ErrorKind.NETWORK).inc()
            raise FreshBooksError(ErrorKind.NETWORK, str(exc)) from None

    def exchange_code(
        self, *, code: str, redirect_uri: str, client_id: str, client_secret: str, now: dt.datetime
    ) -> TokenGrant:
        return self._token_call(
            {
                "grant_type": "authorization_code",
                "client_id": client_id,
                "client_secret": client_secret,
                "code": code,
                "redirect_uri": redirect_uri,
            },
            now,
        )

    def refresh_tokens(
        self,
        *,
        refresh_token: str,
        redirect_uri: str,
        client_id: str,
        client_secret: str,
        now: dt.datetime,
        within: float | None = None,
    ) -> TokenGrant:
        """A new token pair for a (single-use) refresh token. With `within`, the call is over,
        answered or given up, within that many seconds (see `within`): what the refresh lease
        (connector.freshbooks.tokens) needs, so that it can end before anyone else refreshes."""
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": client_id,
            "client_secret": client_secret,
            "redirect_uri": redirect_uri,
        }
        if within is None:
            return self._token_call(form, now)
        return self.within(within, lambda deadline: self._token_call(form, now, deadline))

    def identity(self, *, token: str) -> Identity:
        body = self.request("GET", "/auth/api/v1/users/me", token=token)
        with _reading_answer():
            return _parse_identity(body)

    # -- events API (reference §3) -------------------------------------------------------------

    @staticmethod
    def _callbacks_path(account_id: str, callback_id: int | None = None) -> str:
        base = f"/events/account/{account_id}/events/callbacks"
        return base if callback_id is None else f"{base}/{callback_id}"

    def register_callback(self, *, token: str, account_id: str, event: str, uri: str) -> CallbackInfo:
        body = self.request(
            "POST",
            self._callbacks_path(account_id),
            token=token,
            json_body={"callback": {"event": event, "uri": uri}},
        )
        with _reading_answer():
            return _parse_callback(_result(body, "callback"))

    def verify_callback(
        self, *, token: str, account_id: str, callback_id: int, verifier: str
    ) -> CallbackInfo:
        body = self.request(
            "PUT",
            self._callbacks_path(account_id, callback_id),
            token=token,
            json_body={"callback": {"verifier": verifier}},
        )
        with _reading_answer():
            return _parse_callback(_result(body, "callback"))

    def list_callbacks(self, *, token: str, account_id: str) -> list[CallbackInfo]:
        """Every callback of the account, all pages."""
        found: list[CallbackInfo] = []
        page = 1
        while True:
            body = self.request(
                "GET", self._callbacks_path(account_id), token=token, params={"page": page, "per_page": 100}
            )
            with _reading_answer():
                result = _result(body, "callbacks")
                if not isinstance(result, list):
                    raise FreshBooksError(ErrorKind.PROTOCOL, "result.callbacks is not a list")
                found.extend(_parse_callback(raw) for raw in result)
            pages = body["response"]["result"].get("pages") or 1
            if page >= int(pages) or not result:
                return found
            page += 1

    def delete_callback(self, *, token: str, account_id: str, callback_id: int) -> None:
        try:
            self.request("DELETE", self._callbacks_path(account_id, callback_id), token=token)
        except FreshBooksError as error:
            if error.kind is not ErrorKind.NOT_FOUND:  # already gone is what we wanted
                raise

    def resend_verification(self, *, token: str, account_id: str, callback_id: int) -> CallbackInfo:
        body = self.request(
            "PUT",
            self._callbacks_path(account_id, callback_id),
            token=token,
            json_body={"callback": {"resend": True}},
        )
        with _reading_answer():
            return _parse_callback(_result(body, "callback"))

    # -- accounting objects (reference §6) -----------------------------------------------------

    def get_object(self, *, token: str, account_id: str, kind: ObjectKind, object_id: str) -> dict[str, Any]:
        """Fetch one invoice, payment, bill or expense as FreshBooks returns it."""
        resource, key, includes = OBJECT_ENDPOINTS[kind]
        params = [("include[]", name) for name in includes]
        body = self.request(
            "GET",
            f"/accounting/account/{account_id}/{resource}/{object_id}",
            token=token,
            params=params or None,
        )
        with _reading_answer():
            obj = _result(body, key)
            if not isinstance(obj, dict):
                raise FreshBooksError(ErrorKind.PROTOCOL, f"result.{key} is not an object")
        return obj

    def list_updated_since(
        self, *, token: str, account_id: str, kind: ObjectKind, day: dt.date, max_pages: int = 50
    ) -> list[dict[str, Any]]:
        """Objects of `kind` updated on or after `day` (the reconciliation poll), all pages.

        FreshBooks' `updated_min` is day-granular and takes a date, not a time (reference-reports
        §6.1), and the day is US/Eastern like the `updated` field it filters: callers pass the
        Eastern day and sift the answer by time themselves. Bills document no date filter at all,
        so for them every bill comes back and the sifting is all there is.
        """
        return list(
            self.iter_list(
                with_token=lambda call: call(token),
                account_id=account_id,
                kind=kind,
                search=[("search[updated_min]", day.isoformat())],
                max_pages=max_pages,
            )
        )

    def list_page(
        self,
        *,
        token: str,
        account_id: str,
        kind: ObjectKind,
        page: int,
        search: Sequence[tuple[str, str]] = (),
        includes: Sequence[str] | None = None,
    ) -> ListPage:
        """One page (of PER_PAGE) of a list endpoint. `search` holds ready `search[...]` pairs;
        `includes` defaults to what a single GET of the kind asks for (OBJECT_ENDPOINTS)."""
        resource, _key, default_includes = OBJECT_ENDPOINTS[kind]
        plural = resource.rsplit("/", 1)[-1]
        params = [
            *search,
            ("page", str(page)),
            # Always sent: the default page size is undocumented, and more than 100 is cut to 100.
            ("per_page", str(PER_PAGE)),
            *(("include[]", name) for name in (default_includes if includes is None else includes)),
        ]
        body = self.request("GET", f"/accounting/account/{account_id}/{resource}", token=token, params=params)
        with _reading_answer():
            result = _result(body, plural)
            if not isinstance(result, list):
                raise FreshBooksError(ErrorKind.PROTOCOL, f"result.{plural} is not a list")
            try:
                pages = int(body["response"]["result"].get("pages") or 1)
            except (TypeError, ValueError):
                raise FreshBooksError(ErrorKind.PROTOCOL, "result.pages is not a number") from None
        return ListPage(items=[item for item in result if isinstance(item, dict)], page=page, pages=pages)

    def iter_list(
        self,
        *,
        with_token: Callable[[Callable[[str], ListPage]], ListPage],
        account_id: str,
        kind: ObjectKind,
        search: Sequence[tuple[str, str]] = (),
        includes: Sequence[str] | None = None,
        max_pages: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every object a list endpoint returns, page by page: only one page is held at a time.

        Each page is fetched through `with_token` (e.g. TokenSource.call, which refreshes the token
        and tries again on a 401), so a long listing survives its token expiring halfway. It stops
        on an empty page or at `pages`, never on `total`, which can count objects the token cannot
        read (freshbooks-reports.md §6.1); `max_pages` None reads them all.
        """
        page = 1
        while True:
            listed = with_token(
                functools.partial(
                    self._page_with_token,
                    account_id=account_id,
                    kind=kind,
                    page=page,
                    search=search,
                    includes=includes,
                )
            )
            yield from listed.items
            if not listed.items or page >= listed.pages or (max_pages is not None and page >= max_pages):
                return
            page += 1

    def _page_with_token(
        self,
        token: str,
        *,
        account_id: str,
        kind: ObjectKind,
        page: int,
        search: Sequence[tuple[str, str]],
        includes: Sequence[str] | None,
    ) -> ListPage:
        return self.list_page(
            token=token, account_id=account_id, kind=kind, page=page, search=search, includes=includes
        )


PER_PAGE = 100  # FreshBooks' most (freshbooks-reports.md §6.1)


@dataclass(frozen=True, slots=True)
class ListPage:
    items: list[dict[str, Any]]
    page: int
    pages: int


# (path under /accounting/account/<id>/, result key, include[] values)
OBJECT_ENDPOINTS: dict[ObjectKind, tuple[str, str, tuple[str, ...]]] = {
    ObjectKind.INVOICE: ("invoices/invoices", "invoice", ()),
    # A payment carries neither invoice number nor client name; ask for both in the same call.
    ObjectKind.PAYMENT: ("payments/payments", "payment", ("invoice", "client")),
    ObjectKind.BILL: ("bills/bills", "bill", ()),
    # An expense names only its category's id; the name comes embedded with include[]=category.
    ObjectKind.EXPENSE: ("expenses/expenses", "expense", ("category",)),
}
