"""Parsing webhook bodies: every malformed shape is refused with a reason."""

from __future__ import annotations

import pytest

from connector.domain.events import IGNORED_EVENTS, SUPPORTED_EVENTS
from connector.pipeline.ingest.form import (
    MalformedWebhook,
    Notification,
    is_verify,
    parse_fields,
    parse_notification,
    parse_verify,
)

FORM = "application/x-www-form-urlencoded"


def test_fields_keep_wire_order_and_blank_values() -> None:
    fields = parse_fields(b"name=invoice.create&object_id=12&account_id=&user_id=1", FORM + "; charset=utf-8")
    assert fields == (("name", "invoice.create"), ("object_id", "12"), ("account_id", ""), ("user_id", "1"))


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"a=1", "application/json", "must be application/x-www-form-urlencoded"),
        (b"a=1", None, "must be application/x-www-form-urlencoded"),
        (b"", FORM, "empty"),
        (b"a=1&b", FORM, "not a valid form encoding"),
        (b"a=%ZZ", FORM, None),
        (b"a=\xff", FORM, "not valid UTF-8"),
        (b"a=1&a=2", FORM, "'a' is repeated"),
        (b"a=" + b"x" * (16 * 1024), FORM, "larger than 16 KiB"),
    ],
)
def test_malformed_bodies(body: bytes, content_type: str | None, reason: str | None) -> None:
    if reason is None:  # a bad percent-escape is kept literally, as FreshBooks would have signed it
        assert parse_fields(body, content_type) == (("a", "%ZZ"),)
        return
    with pytest.raises(MalformedWebhook) as info:
        parse_fields(body, content_type)
    assert reason in info.value.reason


def test_exactly_16_kib_is_accepted() -> None:
    body = b"a=" + b"x" * (16 * 1024 - 2)
    assert len(parse_fields(body, FORM)[0][1]) == 16 * 1024 - 2


def test_notification_is_typed() -> None:
    fields = parse_fields(b"name=payment.create&object_id=235435&account_id=ACM123&user_id=1", FORM)
    assert not is_verify(fields)
    assert parse_notification(fields) == Notification(
        name="payment.create", object_id="235435", account_id="ACM123", fields=fields
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"object_id=1", "missing field 'name'"),
        (b"name=&object_id=1", "missing field 'name'"),
        (b"name=invoice.create", "missing field 'object_id'"),
        (b"name=invoice.create&object_id=", "missing field 'object_id'"),
        (b"name=invoice.create&object_id=a%20b", "not a FreshBooks id"),
        (b"name=invoice.paid&object_id=1", "unknown event name 'invoice.paid'"),
        (b"name=invoice.create&object_id=1&account_id=a-b", "not a FreshBooks account id"),
    ],
)
def test_bad_notifications(body: bytes, reason: str) -> None:
    with pytest.raises(MalformedWebhook) as info:
        parse_notification(parse_fields(body, FORM))
    assert reason in info.value.reason


def test_verify_request() -> None:
    fields = parse_fields(
        b"user_id=214214&name=callback.verify&verifier=xf8pxDkZ&object_id=778599&account_id=xazq5"
        b"&system=https%3A%2F%2Fthumbworks.freshbooks.com",
        FORM,
    )
    assert is_verify(fields)
    verify = parse_verify(fields)
    assert (verify.callback_id, verify.verifier, verify.account_id) == (778599, "xf8pxDkZ", "xazq5")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"name=callback.verify&verifier=v", "numeric object_id"),
        (b"name=callback.verify&verifier=v&object_id=abc", "numeric object_id"),
        (b"name=callback.verify&object_id=5", "needs a verifier"),
        (b"name=callback.verify&object_id=5&verifier=" + b"v" * 600, "too long"),
    ],
)
def test_bad_verify_requests(body: bytes, reason: str) -> None:
    with pytest.raises(MalformedWebhook) as info:
        parse_verify(parse_fields(body, FORM))
    assert reason in info.value.reason


def test_supported_and_ignored_events_do_not_overlap() -> None:
    assert set(SUPPORTED_EVENTS).isdisjoint(IGNORED_EVENTS)
    assert len(SUPPORTED_EVENTS) == 13
    assert {"client.update", "estimate.sendByEmail", "time_entry.delete"} <= IGNORED_EVENTS
