"""Fuzzing (hypothesis) of the two doors strangers can knock on, over real HTTP, both databases.

* The webhook endpoint: random bodies, encodings (invalid UTF-8 too), content types, header values,
  sizes past the limit, chunked bodies, random and near-valid signatures. Never a 5xx; nothing is
  queued in webhook_inbox unless the signature is valid for the body; the server stays up.
* The slash command: correctly signed, with random `text` (unicode, control characters, huge
  strings, channel/user mention syntax) after every subcommand. Always a 200 answer with a
  message, never a listener exception.

FUZZ_EXAMPLES sets the examples per test (CI: the default, a few hundred in all). Runs are
derandomized and keep no example database, so CI is reproducible. The long run is in the README.
"""

from __future__ import annotations

import base64
import hmac
import logging
import os
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from connector.domain.events import SUPPORTED_EVENTS, VERIFY_EVENT
from connector.pipeline.ingest.form import MAX_BODY_BYTES, MalformedWebhook, parse_fields
from connector.pipeline.ingest.signature import SIGNATURE_HEADER, compute_signature
from storage.models import WebhookInbox
from tests.support.fakes.slack import Channel
from tests.support.live import ADMIN, FB_ACCOUNT, MEMBER, Live, clock_start, signed_slack_post

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "75"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    # The live app is built once per test and shared by its examples on purpose: state left by one
    # example (rules, verifications) is more input for the next.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

FORM = "application/x-www-form-urlencoded"
ACCOUNTING = "C0ACCOUNT"


@contextmanager
def errors_logged() -> Iterator[list[logging.LogRecord]]:
    """Every ERROR (or worse) record logged meanwhile, from any logger: Bolt reports a listener
    exception this way, werkzeug an exception that escaped the app."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(level=logging.ERROR)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield records
    finally:
        root.removeHandler(handler)


def describe(records: list[logging.LogRecord]) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in records]


# -- the webhook endpoint ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookRequest:
    token: str
    body: bytes
    content_type: bytes | None
    signature: bytes | None
    chunked: bool
    extra_headers: tuple[tuple[bytes, bytes], ...] = ()


KEYS = ["name", "object_id", "account_id", "user_id", "identity_id", "business_id", "verifier", ""]
NAMES = [*sorted(SUPPORTED_EVENTS), VERIFY_EVENT, "invoice.explode", "", "callback.verify "]
CONTENT_TYPES: list[bytes | None] = [
    FORM.encode(),
    b"application/x-www-form-urlencoded; charset=utf-8",
    b"APPLICATION/X-WWW-FORM-URLENCODED",
    b"application/json",
    b"multipart/form-data; boundary=x",
    b"text/plain; charset=latin-1",
    b"",
    None,
]
# Header values as bytes: anything HTTP can carry (latin-1 without control characters, no leading
# or trailing space), not only ASCII.
header_bytes = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=120
).map(lambda s: s.encode("latin-1").strip(b" \t"))
field_text = st.one_of(
    st.sampled_from(NAMES),
    st.text(max_size=40),
    st.from_regex(r"[0-9]{1,20}", fullmatch=True),
    st.just(FB_ACCOUNT),
)
fields_strategy = st.lists(
    st.tuples(st.one_of(st.sampled_from(KEYS), st.text(max_size=12)), field_text), max_size=8
)


def near_valid_fields(name: str, object_id: str, extra: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [
        ("name", name),
        ("object_id", object_id),
        ("user_id", "1"),
        ("account_id", FB_ACCOUNT),
        *extra,
    ]


@st.composite
def genuine_fields(draw: st.DrawFn) -> list[tuple[str, str]]:
    """What FreshBooks sends for a supported event, sometimes with extra fields of any text."""
    return near_valid_fields(
        draw(st.sampled_from(sorted(SUPPORTED_EVENTS))),
        draw(st.from_regex(r"[0-9]{1,12}", fullmatch=True)),
        draw(st.lists(st.tuples(st.sampled_from(["extra", "note", "z"]), st.text(max_size=20)), max_size=2)),
    )


@st.composite
def fuzzed_body(draw: st.DrawFn, fields: list[tuple[str, str]]) -> bytes:
    encoded = urllib.parse.urlencode(fields)
    body_kind = draw(st.sampled_from(["bytes", "recoded", "mangled", "huge"]))
    if body_kind == "bytes":
        return draw(st.binary(max_size=600))
    if body_kind == "recoded":  # the same text in another encoding (or raw, unquoted unicode)
        raw = "&".join(f"{k}={v}" for k, v in fields)
        return raw.encode(draw(st.sampled_from(["utf-8", "utf-16", "latin-1"])), errors="replace")
    if body_kind == "mangled":  # invalid UTF-8 or a broken escape spliced into a good form
        cut = draw(st.integers(0, len(encoded)))
        junk = draw(
            st.sampled_from(
                [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"%", b"%zz", b"%ff", b"&&", b"=", b"&a=1"]
            )
        )
        return encoded.encode()[:cut] + junk + encoded.encode()[cut:]
    # around the size limit, and past it
    size = draw(st.sampled_from([MAX_BODY_BYTES - 1, MAX_BODY_BYTES, MAX_BODY_BYTES + 1, 4 * MAX_BODY_BYTES]))
    return (encoded.encode() + b"&pad=" + b"x" * size)[:size]


@st.composite
def webhook_requests(draw: st.DrawFn, token: str, verifier: str) -> WebhookRequest:
    """A genuine webhook with none, one or all of its parts fuzzed (body, signature, URL token,
    content type), so the fuzz reaches past each check in turn, not only the first."""
    fuzzed = draw(st.sampled_from(["none", "body", "signature", "token", "content_type", "all"]))
    if fuzzed == "all":
        fields = draw(
            st.one_of(
                fields_strategy,
                st.builds(
                    near_valid_fields,
                    st.sampled_from(NAMES),
                    st.one_of(st.from_regex(r"[0-9]{1,12}", fullmatch=True), st.text(max_size=40)),
                    st.lists(st.tuples(st.text(max_size=10), st.text(max_size=20)), max_size=3),
                ),
            )
        )
    else:
        fields = draw(genuine_fields())
    body = urllib.parse.urlencode(fields).encode()
    if fuzzed in ("body", "all"):
        body = draw(fuzzed_body(fields))
    valid = compute_signature(fields, verifier)
    signature: bytes | None = valid.encode()  # right for `fields`: valid while the body says them
    if fuzzed in ("signature", "all"):
        signature = draw(
            st.one_of(
                st.none(),
                st.just(valid.rstrip("=").encode()),
                st.just(valid.swapcase().encode()),
                st.just(valid[:-2].encode()),
                st.just(compute_signature(fields, verifier + "x").encode()),  # another callback's key
                st.just(compute_signature(list(reversed(fields)), verifier).encode()),  # other order
                st.binary(min_size=32, max_size=32).map(base64.b64encode),
                header_bytes,
            )
        )
    url_token = token
    if fuzzed in ("token", "all"):
        url_token = draw(
            st.one_of(
                st.from_regex(r"[A-Za-z0-9_-]{1,140}", fullmatch=True),
                st.just(token[:-1] + ("A" if token[-1] != "A" else "B")),
                st.just(token.upper()),
            )
        )
    content_type: bytes | None = draw(st.sampled_from(CONTENT_TYPES[:3]))
    if fuzzed in ("content_type", "all"):
        content_type = draw(st.one_of(st.sampled_from(CONTENT_TYPES[3:]), header_bytes))
    extra_headers = draw(
        st.lists(
            st.tuples(
                st.one_of(
                    st.sampled_from([b"Content-Encoding", b"Accept-Charset", b"X-Forwarded-For", b"Cookie"]),
                    st.from_regex(rb"X-[A-Za-z0-9-]{1,20}", fullmatch=True),
                ),
                header_bytes,
            ),
            max_size=3,
        )
    )
    return WebhookRequest(
        token=url_token,
        body=body,
        content_type=content_type,
        signature=signature,
        chunked=draw(st.booleans()),
        extra_headers=tuple(extra_headers),
    )


def inbox_count(live: Live) -> int:
    with live.services.db.read() as session:
        return session.scalar(select(func.count()).select_from(WebhookInbox)) or 0


def is_authentic(request: WebhookRequest, token: str, verifier: str) -> bool:
    """What FreshBooks would have had to sign: the body's own fields, under the callback's key."""
    if request.token != token or request.signature is None:
        return False
    try:
        content_type = request.content_type.decode("latin-1") if request.content_type is not None else None
        fields = parse_fields(request.body, content_type)
    except MalformedWebhook:
        return False
    presented = request.signature.decode("latin-1").strip()  # as the server reads a header
    return hmac.compare_digest(
        compute_signature(fields, verifier).encode(), presented.encode("ascii", errors="replace")
    )


def send(live: Live, request: WebhookRequest) -> httpx.Response:
    headers: dict[bytes, bytes] = dict(request.extra_headers)
    if request.content_type is not None:
        headers[b"Content-Type"] = request.content_type
    if request.signature is not None:
        headers[SIGNATURE_HEADER.encode()] = request.signature
    content: bytes | Iterator[bytes] = request.body
    if request.chunked:  # no Content-Length: the app must still stop reading at the limit
        content = iter([request.body[i : i + 4096] for i in range(0, len(request.body), 4096)] or [b""])
    return httpx.post(
        f"{live.url}/freshbooks/webhooks/{request.token}", content=content, headers=headers, timeout=30
    )


def test_webhook_endpoint_fuzz(live: Live) -> None:
    new = live.connect_and_register("invoice.create")
    (callback,) = live.fake.callbacks.values()
    token, verifier = new.webhook_token, callback.verifier
    outcomes: dict[str, int] = {}

    @FUZZ
    @given(request=webhook_requests(token, verifier))
    def one(request: WebhookRequest) -> None:
        before = inbox_count(live)
        with errors_logged() as errors:
            response = send(live, request)
        added = inbox_count(live) - before
        assert response.status_code < 500, (response.status_code, response.text)
        assert not errors, describe(errors)
        authentic = is_authentic(request, token, verifier)
        if not authentic:
            assert added == 0, f"queued without a valid signature: {request!r}"
        else:
            is_event = response.status_code == 200 and b"verification" not in response.content
            repeated = b"repeated webhook" in response.content  # the same body within 24 h
            assert added == (1 if is_event and not repeated else 0), (response.status_code, response.text)
        key = f"{response.status_code} {'authentic' if authentic else 'refused'}"
        outcomes[key] = outcomes.get(key, 0) + 1

    one()
    # The fuzz reached past the door, not only the 4xx answers at it.
    assert outcomes.get("200 authentic", 0) > 0, outcomes
    assert outcomes.get("401 refused", 0) > 0, outcomes
    assert outcomes.get("400 refused", 0) > 0, outcomes
    # Still up, and still accepting the real thing.
    assert httpx.get(f"{live.url}/healthz").status_code == 200
    assert live.fake.deliver(FB_ACCOUNT, "invoice.create", "987654").status_code == 200


# -- the slash command ------------------------------------------------------------------------------

SUBCOMMANDS = [
    "",
    "help",
    "connect",
    "status",
    "route",
    "rules",
    "unroute",
    "test",
    "ROUTE",
    "route\t",
    "rout",
]
# Not fuzzed: `disconnect` takes no arguments, and it would end the connection the others use.
pieces = st.one_of(
    st.sampled_from(
        [
            "invoice",
            "invoice.create,invoice.paid",
            "all",
            "payment",
            "bill",
            "expense",
            "min",
            "max",
            "5,000",
            "1e308",
            "-0",
            "NaN",
            "currency",
            "USD",
            "billable",
            "client",
            "vendor",
            '"Acme',
            '"Acme Corp"',
            "#3",
            "99999999999999999999999",
            f"<#{ACCOUNTING}>",
            f"<#{ACCOUNTING}|accounting>",
            "<#C0NOWHERE|gone>",
            "<#G0PRIVATE>",
            "<#>",
            "<#C|>",
            "<@UMEMBER>",
            "<@U123|bob>",
            "<!here>",
            "<!subteam^S123>",
            "<https://example.com|x>",
            "&lt;#C0ACCOUNT&gt;",
            "#accounting",
            "\u202eevil",
            "\x00",
            "\u200b",
        ]
    ),
    st.text(max_size=30),
    st.from_regex(r"[0-9.,]{1,25}", fullmatch=True),
)
slash_texts = st.one_of(
    st.builds(
        lambda sub, parts, sep: sub + sep + sep.join(parts),
        st.sampled_from(SUBCOMMANDS),
        st.lists(pieces, max_size=8),
        st.sampled_from([" ", "  ", "\t", "\n", "\u3000"]),
    ),
    st.text(max_size=200),
    st.builds(
        lambda sub, n, ch: f"{sub} " + ch * n,
        st.sampled_from(SUBCOMMANDS),
        st.sampled_from([1000, 20_000]),
        st.sampled_from(["x", "é", "😀", "<", '"', " ", "\x01"]),
    ),
)


def slash(live: Live, text: str, user_id: str) -> httpx.Response:
    body = urllib.parse.urlencode(
        {
            "team_id": "T0001",
            "channel_id": "C0GENERAL",
            "user_id": user_id,
            "command": "/freshbooks",
            "text": text,
            "response_url": live.slack.response_url(),
            "trigger_id": "13345224609.738474920.8088930838d88f008e0",
        }
    )
    return signed_slack_post(live.url, body, timeout=30)


def test_slash_command_fuzz(live: Live) -> None:
    live.slack.add_channel(Channel(ACCOUNTING, name="accounting"))
    live.slack.add_channel(Channel("C0GENERAL", name="general"))
    live.connect_and_register("invoice.create")

    @FUZZ
    @given(text=slash_texts, user_id=st.sampled_from([ADMIN, ADMIN, MEMBER]))
    def one(text: str, user_id: str) -> None:
        with errors_logged() as errors:
            response = slash(live, text, user_id)
        assert response.status_code == 200, (response.status_code, response.text[:500])
        # An answer in the channel, or an empty acknowledgement when a modal opened instead.
        assert not response.content or response.json()["text"].strip(), response.text[:500]
        assert not errors, describe(errors)

    with errors_logged() as late:  # a listener that failed after its acknowledgement logs later
        one()
        assert slash(live, "rules", ADMIN).status_code == 200  # still answering
    assert not late, describe(late)


# -- numbers in any script ------------------------------------------------------------------------
# str.isdigit() accepts '²' and '٣', int() reads '٣' but not '²', and an id of 25 digits overflows
# the database's 64-bit integer: every number a command reads must come back as a helpful answer.

unicode_numbers = st.one_of(
    st.text(alphabet=st.characters(categories=["Nd", "No", "Nl"]), min_size=1, max_size=30),
    st.text(alphabet=st.characters(categories=["Nd", "No"]) | st.sampled_from("0123456789,."), max_size=30),
    st.integers(min_value=10**15, max_value=10**40).map(str),  # past 64 bits, no leading zeros
    st.from_regex(r"[0-9]{1,3}(,[0-9]{3}){4,8}(\.[0-9]{1,2})?", fullmatch=True),
)
# The cases that answered 500 before (issue 12), always tried whatever hypothesis draws.
KNOWN_NUMBERS = [
    ("unroute {}", "²"),
    ("unroute {}", "٣"),
    ("unroute {}", "1234567890123456789012345"),
    ("replay D{}", "99999999999999999999999"),
    ("route invoice <#C0ACCOUNT|accounting> min {}", "\u0661\u0660\u0660"),
    ("route invoice <#C0ACCOUNT|accounting> min {}", "1" * 40),
]
NUMBER_COMMANDS = [
    "unroute {}",
    "unroute #{}",
    "replay D{}",
    "replay {}",
    "replay {} to <#C0ACCOUNT|accounting>",
    "route invoice <#C0ACCOUNT|accounting> min {}",
    "route invoice <#C0ACCOUNT|accounting> min 1 max {}",
    "audit D{}",
    "audit {}",
    "audit since:{}d",
    "replay failed since {}",
]


def known_numbers(test: Any) -> Any:
    for template, number in reversed(KNOWN_NUMBERS):
        test = example(template=template, number=number)(test)
    return test


def test_numbers_in_any_script_are_parsed_or_explained() -> None:
    """The parsers alone, many examples: a number is read (and fits the database) or explained."""
    from connector.features.audit.replay import ReplayOne, ReplaySyntaxError, parse_replay_command
    from connector.features.audit.search import AuditSyntaxError, parse_audit_query
    from connector.features.rules.syntax import (
        MAX_AMOUNT_DIGITS,
        RouteSyntaxError,
        parse_id,
        parse_route_command,
    )

    today = clock_start().date()

    @settings(max_examples=EXAMPLES * 4, deadline=None, derandomize=True, database=None)
    @given(number=unicode_numbers)
    def one(number: str) -> None:
        rule_id = parse_id(number)
        assert rule_id is None or 0 <= rule_id < 2**63
        try:
            replay = parse_replay_command(f"D{number}", today=today)
        except ReplaySyntaxError as exc:
            assert "Usage" in str(exc)
        else:
            assert isinstance(replay, ReplayOne) and 0 <= replay.delivery_id < 2**63
        try:
            spec = parse_route_command(f"route invoice <#C0ACCOUNT> min {number}".removeprefix("route "))
        except RouteSyntaxError as exc:
            assert exc.problem.strip()
        else:
            assert spec.min_amount is not None
            assert len(str(int(spec.min_amount))) <= MAX_AMOUNT_DIGITS
        try:
            query = parse_audit_query(f"D{number} since:{number}d", today=today)
        except AuditSyntaxError as exc:
            assert "Usage" in str(exc)
        else:
            assert query.delivery_id is None or 0 <= query.delivery_id < 2**63

    one()


def test_slash_command_numbers_fuzz(live: Live) -> None:
    """The same numbers through signed slash commands over real HTTP: a 200 and words, never a 500."""
    live.slack.add_channel(Channel(ACCOUNTING, name="accounting"))
    live.connect_and_register("invoice.create")

    @FUZZ
    @given(template=st.sampled_from(NUMBER_COMMANDS), number=unicode_numbers)
    @known_numbers
    def one(template: str, number: str) -> None:
        with errors_logged() as errors:
            response = slash(live, template.format(number), ADMIN)
        assert response.status_code == 200, (response.status_code, response.text[:500])
        assert response.json()["text"].strip(), response.text[:500]
        assert not errors, describe(errors)

    with errors_logged() as late:
        one()
    assert not late, describe(late)
