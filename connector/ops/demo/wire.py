"""The HTTP plumbing of the stand-in servers (the demo's FreshBooks and Slack, and the test fakes,
which import it from here): read a request's body and fields, write an answer. Only the wire; what
each server answers stays with it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl

FORM = "application/x-www-form-urlencoded"


def read_body(request: BaseHTTPRequestHandler) -> bytes:
    """The request's body, as long as its Content-Length says (none: empty)."""
    length = int(request.headers.get("Content-Length") or 0)
    return request.rfile.read(length) if length else b""


def lower_headers(request: BaseHTTPRequestHandler) -> dict[str, str]:
    return {k.lower(): v for k, v in request.headers.items()}


def freshbooks_body(content_type: str, raw: bytes, *, unreadable: Callable[[bytes], Any]) -> Any:
    """A FreshBooks request's body: a form as a dict, else JSON (empty: None); JSON that does not
    parse becomes `unreadable(raw)`, which each server answers its own way."""
    if content_type.startswith(FORM):
        return dict(parse_qsl(raw.decode()))
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return unreadable(raw)


def slack_params(query: str, content_type: str, raw: str) -> dict[str, Any]:
    """A Web API call's arguments: the query string's, then the body's (JSON or form), as Slack
    accepts both. ValueError if a JSON body does not parse."""
    params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    if content_type.startswith("application/json"):
        params.update(json.loads(raw or "{}"))
    else:
        params.update(parse_qsl(raw, keep_blank_values=True))
    return params


def send(
    request: BaseHTTPRequestHandler,
    status: int,
    payload: bytes,
    *,
    content_type: str | None,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Answer with `payload` and its length; `content_type` None sends no Content-Type."""
    request.send_response(status)
    for name, value in (headers or {}).items():
        request.send_header(name, value)
    if content_type is not None:
        request.send_header("Content-Type", content_type)
    request.send_header("Content-Length", str(len(payload)))
    request.end_headers()
    request.wfile.write(payload)
