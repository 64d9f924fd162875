"""Parse a webhook body into typed data. Pure: bytes in, a typed request or MalformedWebhook out."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

from connector.domain.events import VERIFY_EVENT, is_known

MAX_BODY_BYTES = 16 * 1024
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

_OBJECT_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_ACCOUNT_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")
_CALLBACK_ID = re.compile(r"^[0-9]{1,18}$")
_MAX_VERIFIER_LENGTH = 512


class MalformedWebhook(ValueError):
    """The request is not a FreshBooks webhook; `reason` is safe to return to the sender."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


Fields = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Notification:
    """An event webhook: IDs only (the object itself is fetched later)."""

    name: str
    object_id: str
    account_id: str | None
    fields: Fields


@dataclass(frozen=True, slots=True)
class VerifyRequest:
    """FreshBooks' `callback.verify` handshake: `object_id` is the callback id."""

    callback_id: int
    verifier: str
    account_id: str | None


def parse_fields(raw: bytes, content_type: str | None) -> Fields:
    """Split a form body into (key, value) pairs in wire order, refusing anything FreshBooks never sends."""
    if len(raw) > MAX_BODY_BYTES:
        raise MalformedWebhook(f"body is larger than {MAX_BODY_BYTES // 1024} KiB")
    mimetype = (content_type or "").split(";", 1)[0].strip().lower()
    if mimetype != FORM_CONTENT_TYPE:
        raise MalformedWebhook(f"body must be {FORM_CONTENT_TYPE}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedWebhook("body is not valid UTF-8") from None
    if not text:
        raise MalformedWebhook("body is empty")
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True, errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise MalformedWebhook("body is not a valid form encoding") from None
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            # Parsers disagree on which of two values wins, and the signature depends on it.
            raise MalformedWebhook(f"field {key!r} is repeated")
        seen.add(key)
    return tuple(pairs)


def _account_id(values: dict[str, str]) -> str | None:
    account_id = values.get("account_id")
    if account_id is None:
        return None
    if not _ACCOUNT_ID.match(account_id):
        raise MalformedWebhook("account_id is not a FreshBooks account id")
    return account_id


def is_verify(fields: Fields) -> bool:
    return dict(fields).get("name") == VERIFY_EVENT


def parse_verify(fields: Fields) -> VerifyRequest:
    values = dict(fields)
    callback_id = values.get("object_id", "")
    if not _CALLBACK_ID.match(callback_id):
        raise MalformedWebhook("callback.verify needs a numeric object_id (the callback id)")
    verifier = values.get("verifier", "")
    if not verifier:
        raise MalformedWebhook("callback.verify needs a verifier")
    if len(verifier) > _MAX_VERIFIER_LENGTH:
        raise MalformedWebhook("verifier is too long")
    return VerifyRequest(callback_id=int(callback_id), verifier=verifier, account_id=_account_id(values))


def parse_notification(fields: Fields) -> Notification:
    values = dict(fields)
    name = values.get("name")
    if not name:
        raise MalformedWebhook("missing field 'name'")
    if not is_known(name):
        raise MalformedWebhook(f"unknown event name {name[:64]!r}")
    object_id = values.get("object_id")
    if not object_id:
        raise MalformedWebhook("missing field 'object_id'")
    if not _OBJECT_ID.match(object_id):
        raise MalformedWebhook("object_id is not a FreshBooks id")
    return Notification(name=name, object_id=object_id, account_id=_account_id(values), fields=fields)
