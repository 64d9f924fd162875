"""The FreshBooks client: every error shape, retries that honour Retry-After, nothing retried blindly."""

from __future__ import annotations

import datetime as dt
import json
import socket

import pytest
from prometheus_client import REGISTRY

from connector.domain.events import ObjectKind
from connector.freshbooks.client import (
    ErrorKind,
    FreshBooksClient,
    FreshBooksError,
    classify_response,
    error_status,
)
from tests.support.fakes.freshbooks import FakeFreshBooks, Scripted


@pytest.mark.parametrize(
    ("status", "body", "kind", "message", "code"),
    [
        (
            404,
            {"errno": 404, "message": "Requested resource could not be found."},
            ErrorKind.NOT_FOUND,
            "Requested resource could not be found.",
            "404",
        ),
        # The SDK's fixture serves an auth failure with HTTP 404: the body decides.
        (
            404,
            {"errno": 401, "message": "invalid_token: expired"},
            ErrorKind.AUTH,
            "invalid_token: expired",
            "401",
        ),
        (
            400,
            {"errno": 422, "message": "semantic errors", "details": ["event: Unrecognized event."]},
            ErrorKind.VALIDATION,
            "semantic errors",
            "422",
        ),
        (
            401,
            {"error": "unauthenticated", "error_description": "This action requires authentication."},
            ErrorKind.AUTH,
            "This action requires authentication.",
            "unauthenticated",
        ),
        (
            400,
            {"error": "invalid_grant", "error_description": "The refresh token is invalid."},
            ErrorKind.AUTH,
            "The refresh token is invalid.",
            "invalid_grant",
        ),
        (
            404,
            {"code": 5, "message": "Request failed with status_code: 404", "details": []},
            ErrorKind.NOT_FOUND,
            "Request failed with status_code: 404",
            "5",
        ),
        (200, {"code": 16, "message": "unauthenticated"}, ErrorKind.AUTH, "unauthenticated", "16"),
        (
            422,
            {"response": {"errors": [{"errno": 1012, "field": "userid", "message": "Client not found."}]}},
            ErrorKind.VALIDATION,
            "Client not found.",
            "1012",
        ),
        (
            400,
            {"errors": {"message": "Bad name", "status": 400, "details": []}},
            ErrorKind.VALIDATION,
            "Bad name",
            "400",
        ),
        (503, None, ErrorKind.SERVER, "HTTP 503", None),
        (429, {"errno": 429, "message": "slow down"}, ErrorKind.RATE_LIMITED, "slow down", "429"),
        (302, None, ErrorKind.PROTOCOL, "HTTP 302", None),
    ],
)
def test_error_shapes(status: int, body: object, kind: ErrorKind, message: str, code: str | None) -> None:
    raw = json.dumps(body).encode() if body is not None else b"<html>oops</html>"
    error = classify_response(status, raw, {"retry-after": "7"})
    assert (error.kind, error.message, error.code, error.retry_after) == (kind, message, code, 7.0)


def test_retry_after_http_date_is_ignored() -> None:
    assert classify_response(429, b"", {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}).retry_after is None


@pytest.fixture
def fake() -> FakeFreshBooks:
    with FakeFreshBooks() as server:
        yield server


def client_for(fake: FakeFreshBooks, waits: list[float]) -> FreshBooksClient:
    return FreshBooksClient(base_url=fake.base_url, sleep=waits.append, timeout=5)


def test_429_is_retried_after_retry_after(fake: FakeFreshBooks) -> None:
    fake.add_object("ACM1", "invoices", {"id": 1, "updated": "u"})
    fake.script("GET", "/accounting", Scripted(429, {"errno": 429, "message": "slow"}, {"Retry-After": "3"}))
    waits: list[float] = []
    obj = client_for(fake, waits).get_object(
        token="fb-access-token", account_id="ACM1", kind=ObjectKind.INVOICE, object_id="1"
    )
    assert obj["id"] == 1
    assert waits == [3.0]
    assert len(fake.calls_to("GET", "/accounting")) == 2


def test_gives_up_after_max_retries(fake: FakeFreshBooks) -> None:
    fake.script("GET", "/accounting", *[Scripted(502, None)] * 5)
    waits: list[float] = []
    with pytest.raises(FreshBooksError) as info:
        client_for(fake, waits).get_object(
            token="fb-access-token", account_id="A1", kind=ObjectKind.BILL, object_id="1"
        )
    assert info.value.kind is ErrorKind.SERVER
    assert len(waits) == 3
    assert all(0 < w <= 30 for w in waits)


def test_post_is_not_retried_on_server_error(fake: FakeFreshBooks) -> None:
    fake.script("POST", "/events", Scripted(500, {"errno": 500, "message": "boom"}))
    waits: list[float] = []
    with pytest.raises(FreshBooksError) as info:
        client_for(fake, waits).register_callback(
            token="fb-access-token", account_id="A1", event="invoice.create", uri="https://x.example/cb"
        )
    assert info.value.kind is ErrorKind.SERVER
    assert waits == []
    assert len(fake.calls_to("POST", "/events")) == 1


def test_validation_errors_are_not_retried(fake: FakeFreshBooks) -> None:
    fake.script("PUT", "/events", Scripted(400, {"errno": 422, "message": "bad"}))
    waits: list[float] = []
    with pytest.raises(FreshBooksError) as info:
        client_for(fake, waits).verify_callback(token="t", account_id="A1", callback_id=1, verifier="v")
    assert info.value.kind is ErrorKind.VALIDATION
    assert waits == []


def test_bad_token_is_auth(fake: FakeFreshBooks) -> None:
    with pytest.raises(FreshBooksError) as info:
        client_for(fake, []).get_object(
            token="wrong", account_id="A1", kind=ObjectKind.EXPENSE, object_id="1"
        )
    assert info.value.kind is ErrorKind.AUTH


def test_unreachable_server_is_a_network_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    waits: list[float] = []
    client = FreshBooksClient(base_url=f"http://127.0.0.1:{port}", sleep=waits.append, timeout=2)
    with pytest.raises(FreshBooksError) as info:
        client.get_object(token="t", account_id="A1", kind=ObjectKind.INVOICE, object_id="1")
    assert info.value.kind is ErrorKind.NETWORK
    assert info.value.transient
    assert len(waits) == 3


def test_non_json_success_is_a_protocol_error(fake: FakeFreshBooks) -> None:
    fake.script("GET", "/accounting", Scripted(200, "not an envelope"))
    with pytest.raises(FreshBooksError) as info:
        client_for(fake, []).get_object(
            token="fb-access-token", account_id="A1", kind=ObjectKind.INVOICE, object_id="1"
        )
    assert info.value.kind is ErrorKind.PROTOCOL


def test_register_and_verify_speak_the_events_api(fake: FakeFreshBooks) -> None:
    fake.send_verify_on_register = False
    client = client_for(fake, [])
    info = client.register_callback(
        token="fb-access-token", account_id="A1", event="bill.create", uri="http://127.0.0.1:1/cb"
    )
    assert (info.event, info.verified) == ("bill.create", False)
    (post,) = fake.calls_to("POST", "/events/account/A1/events/callbacks")
    assert post.body == {"callback": {"event": "bill.create", "uri": "http://127.0.0.1:1/cb"}}
    verifier = fake.callbacks[info.callback_id].verifier
    verified = client.verify_callback(
        token="fb-access-token", account_id="A1", callback_id=info.callback_id, verifier=verifier
    )
    assert verified.verified is True


def test_cookies_freshbooks_sets_are_never_sent_back(fake: FakeFreshBooks) -> None:
    # One client serves every customer's calls: a cookie set in an answer to one customer's call
    # (a load balancer's, a CDN's) must not ride along on the next customer's.
    fake.add_object("ACM1", "invoices", {"id": 1, "updated": "u"})
    fake.add_object("ACM2", "invoices", {"id": 2, "updated": "u"})
    fake.script(
        "GET",
        "/accounting",
        Scripted(
            429, {"errno": 429, "message": "slow"}, {"Retry-After": "0", "Set-Cookie": "lb=node7; Path=/"}
        ),
    )
    client = client_for(fake, [])
    client.get_object(token="fb-access-token", account_id="ACM1", kind=ObjectKind.INVOICE, object_id="1")
    client.get_object(token="fb-access-token", account_id="ACM2", kind=ObjectKind.INVOICE, object_id="2")
    calls = fake.calls_to("GET", "/accounting")
    assert len(calls) == 3
    assert [call.headers.get("cookie") for call in calls] == [None, None, None]  # "lb=n7" without the fix


def _protocol_errors() -> float:
    return REGISTRY.get_sample_value("fbslack_freshbooks_api_errors_total", {"kind": "protocol"}) or 0.0


def test_an_answer_that_cannot_be_read_is_counted_as_an_api_error(fake: FakeFreshBooks) -> None:
    client = client_for(fake, [])
    before = _protocol_errors()
    # Valid JSON in FreshBooks' envelope, but no invoice in it: found by the parsing, after request().
    fake.script("GET", "/accounting", Scripted(200, {"response": {"result": {"other": {}}}}))
    with pytest.raises(FreshBooksError) as info:
        client.get_object(token="fb-access-token", account_id="A1", kind=ObjectKind.INVOICE, object_id="1")
    assert info.value.kind is ErrorKind.PROTOCOL
    fake.script("GET", "/accounting", Scripted(200, {"response": {"result": {"invoices": "x", "pages": 1}}}))
    with pytest.raises(FreshBooksError):
        client.list_updated_since(
            token="fb-access-token", account_id="A1", kind=ObjectKind.INVOICE, day=dt.date(2028, 2, 29)
        )
    assert _protocol_errors() - before == 2


# FreshBooks can answer an error with HTTP 200 (freshbooks-reports.md §4 quirk 7): each body next
# to the 4xx/5xx status it would come with; at 200 it must be classified the same way.
ERRORS_UNDER_200 = [
    ({"response": {"errors": [{"errno": 1012, "field": "userid", "message": "Client not found."}]}}, 422),
    ({"code": 5, "message": "Request failed with status_code: 404", "details": []}, 404),
    ({"code": 16, "message": "unauthenticated", "details": []}, 401),
    ({"code": 3, "message": "Invalid data in this request.", "details": []}, 400),
    ({"errno": 404, "message": "Requested resource could not be found."}, 404),
    ({"errno": 401, "message": "invalid_token: expired"}, 404),
    ({"errors": {"message": "Bad name", "status": 400, "details": []}}, 400),
    ({"error": "unauthenticated", "error_description": "This action requires authentication."}, 401),
]


@pytest.mark.parametrize(("body", "status"), ERRORS_UNDER_200)
def test_an_error_body_under_http_200_is_the_same_error(
    fake: FakeFreshBooks, body: dict[str, object], status: int
) -> None:
    fake.script("GET", "/accounting", Scripted(200, body))
    with pytest.raises(FreshBooksError) as info:
        client_for(fake, []).get_object(
            token="fb-access-token", account_id="A1", kind=ObjectKind.INVOICE, object_id="1"
        )
    at_4xx = classify_response(status, json.dumps(body).encode(), {})
    assert (info.value.kind, info.value.message, info.value.code) == (
        at_4xx.kind,
        at_4xx.message,
        at_4xx.code,
    )
    assert info.value.kind is not ErrorKind.PROTOCOL
    assert info.value.status == 200  # what the wire said, for the log


def test_transient_errors_under_http_200_are_retried(fake: FakeFreshBooks) -> None:
    fake.add_object("A1", "invoices", {"id": 1, "updated": "u"})
    fake.script(
        "GET",
        "/accounting",
        Scripted(200, {"code": 8, "message": "Too many requests", "details": []}),
        Scripted(200, {"errors": {"message": "Unavailable", "status": 503, "details": []}}),
    )
    waits: list[float] = []
    obj = client_for(fake, waits).get_object(
        token="fb-access-token", account_id="A1", kind=ObjectKind.INVOICE, object_id="1"
    )
    assert obj["id"] == 1
    assert len(waits) == 2


def test_a_list_answered_with_an_error_under_http_200_fails_as_that_error(fake: FakeFreshBooks) -> None:
    # Bills without the add-on, as seen in the wild: an error envelope instead of a result.
    errors = {"response": {"errors": [{"errno": 41001, "message": "Bills are not enabled."}]}}
    fake.script("GET", "/accounting", Scripted(200, errors))
    with pytest.raises(FreshBooksError) as info:
        client_for(fake, []).list_updated_since(
            token="fb-access-token",
            account_id="A1",
            kind=ObjectKind.BILL,
            day=dt.date(2028, 2, 29),
        )
    assert (info.value.kind, info.value.message, info.value.code) == (
        ErrorKind.VALIDATION,
        "Bills are not enabled.",
        "41001",
    )


def test_success_bodies_are_not_mistaken_for_errors() -> None:
    assert error_status({"response": {"result": {"invoice": {"id": 1}}}}) is None
    assert error_status({"response": {"id": 1, "errors": []}}) is None
    assert error_status({"access_token": "a", "refresh_token": "r", "expires_in": 5}) is None
    assert error_status({"code": 0, "message": "OK"}) is None
    assert error_status(None) is None


def test_lists_ask_by_day_and_read_every_page(fake: FakeFreshBooks) -> None:
    for n in range(1, 251):
        fake.add_object("A1", "payments", {"id": n, "updated": f"2028-02-{28 + n % 2} 23:59:59"})
    found = client_for(fake, []).list_updated_since(
        token="fb-access-token", account_id="A1", kind=ObjectKind.PAYMENT, day=dt.date(2028, 2, 29)
    )
    assert sorted(int(o["id"]) for o in found) == list(range(1, 251, 2))  # the 29th's, whatever the time
    calls = fake.calls_to("GET", "/accounting/account/A1/payments/payments")
    assert [(c.query["search[updated_min]"], c.query["page"]) for c in calls] == [
        (["2028-02-29"], ["1"]),
        (["2028-02-29"], ["2"]),
    ]
