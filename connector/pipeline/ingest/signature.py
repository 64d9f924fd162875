"""FreshBooks webhook signatures (reference §2): base64 HMAC-SHA256 over json.dumps of the form.

FreshBooks signs `json.dumps(dict_of_fields)` with Python's default separators (", ", ": ") and
ensure_ascii, keys in the order they were sent, every value a string. Sorting the keys, compact
separators or any other re-serialisation gives a different MAC, so we sign the wire order.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable, Sequence

SIGNATURE_HEADER = "X-FreshBooks-Hmac-SHA256"


def compute_signature(fields: Sequence[tuple[str, str]], verifier: str) -> str:
    """The header value FreshBooks sends for these form fields, keyed by the callback's verifier."""
    message = json.dumps(dict(fields))
    mac = hmac.new(verifier.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(mac).decode("ascii")


def signature_matches(
    fields: Sequence[tuple[str, str]], header: str | None, verifiers: Iterable[str]
) -> bool:
    """True if `header` is the signature of `fields` under any of the connection's verifiers.

    Each connection has one verifier per registered callback and the webhook does not say which
    callback fired, so every verifier is tried; each comparison is constant-time and all are made.
    """
    if not header:
        return False
    presented = header.strip().encode("ascii", errors="replace")
    matched = False
    for verifier in verifiers:
        expected = compute_signature(fields, verifier).encode("ascii")
        matched |= hmac.compare_digest(expected, presented)
    return matched
