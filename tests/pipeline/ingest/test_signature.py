"""The FreshBooks signature algorithm (reference §2), against the reference test vector."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from urllib.parse import urlencode

from hypothesis import given
from hypothesis import strategies as st

from connector.pipeline.ingest.form import parse_fields
from connector.pipeline.ingest.signature import compute_signature, signature_matches

VECTOR_BODY = (
    b"name=invoice.create&object_id=1234567&account_id=6BApk&business_id=6543&identity_id=1234&user_id=1"
)
VECTOR_VERIFIER = "scADVVi5QuKuj5qTjVkbJNYQe7V7USpGd"
VECTOR_SIGNATURE = "/S03vyYmI7CekM4YXBHUhs9o5rnMtqGLrW3aA8S9gPc="
FORM = "application/x-www-form-urlencoded"


def test_reference_vector() -> None:
    fields = parse_fields(VECTOR_BODY, FORM)
    assert compute_signature(fields, VECTOR_VERIFIER) == VECTOR_SIGNATURE
    assert signature_matches(fields, VECTOR_SIGNATURE, [VECTOR_VERIFIER])
    assert signature_matches(fields, f"  {VECTOR_SIGNATURE}\n", [VECTOR_VERIFIER])


def test_key_order_is_the_wire_order_not_sorted() -> None:
    fields = parse_fields(VECTOR_BODY, FORM)
    assert compute_signature(tuple(sorted(fields)), VECTOR_VERIFIER) != VECTOR_SIGNATURE


def test_compact_json_would_give_another_mac() -> None:
    fields = parse_fields(VECTOR_BODY, FORM)
    compact = json.dumps(dict(fields), separators=(",", ":")).encode()
    mac = base64.b64encode(hmac.new(VECTOR_VERIFIER.encode(), compact, hashlib.sha256).digest()).decode()
    assert mac != compute_signature(fields, VECTOR_VERIFIER)


def test_non_ascii_values_are_escaped_like_python_json() -> None:
    fields = (("name", "client.update"), ("note", "café"))
    expected_message = b'{"name": "client.update", "note": "caf\\u00e9"}'
    expected = base64.b64encode(hmac.new(b"k", expected_message, hashlib.sha256).digest()).decode()
    assert compute_signature(fields, "k") == expected


def test_no_header_or_no_verifier_never_matches() -> None:
    fields = parse_fields(VECTOR_BODY, FORM)
    assert not signature_matches(fields, None, [VECTOR_VERIFIER])
    assert not signature_matches(fields, "", [VECTOR_VERIFIER])
    assert not signature_matches(fields, VECTOR_SIGNATURE, [])


def test_any_of_several_verifiers_matches() -> None:
    fields = parse_fields(VECTOR_BODY, FORM)
    assert signature_matches(fields, VECTOR_SIGNATURE, ["other", VECTOR_VERIFIER, "third"])
    assert not signature_matches(fields, VECTOR_SIGNATURE, ["other", "third"])


def test_non_ascii_header_does_not_crash() -> None:
    fields = parse_fields(VECTOR_BODY, FORM)
    assert not signature_matches(fields, "sïgnature", [VECTOR_VERIFIER])


keys = st.text(alphabet=st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=12)
values = st.text(max_size=40)


@given(
    pairs=st.dictionaries(keys, values, min_size=1, max_size=8),
    verifier=st.text(min_size=1, max_size=40),
)
def test_round_trip_through_the_wire(pairs: dict[str, str], verifier: str) -> None:
    body = urlencode(list(pairs.items())).encode()
    fields = parse_fields(body, FORM)
    signature = compute_signature(list(pairs.items()), verifier)
    assert signature_matches(fields, signature, [verifier])


@given(
    pairs=st.dictionaries(keys, values, min_size=1, max_size=8),
    verifier=st.text(min_size=1, max_size=40),
    extra=st.text(min_size=1, max_size=5),
)
def test_any_changed_value_breaks_the_signature(pairs: dict[str, str], verifier: str, extra: str) -> None:
    items = list(pairs.items())
    signature = compute_signature(items, verifier)
    key, value = items[0]
    changed = [(key, value + extra), *items[1:]]
    assert not signature_matches(changed, signature, [verifier])
