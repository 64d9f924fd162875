"""The webhook route answered by `fbslack serve`'s front on its loop (connector.ops.web.direct_routes)
answers exactly as the Flask route does, request for request: status, text, headers and metrics.

Each case goes to the app twice: through a Werkzeug server (the Flask route, as under any other
server) and through connector.ops.front in this process with the direct route on, both on one
database. Requests the direct route cannot answer without the database (an uncached lookup, a
callback.verify, a signature that needs the fresh verifiers) are handed to the same Flask route.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client import REGISTRY

from connector.ops.front import Front, Limits
from connector.ops.web import body_limits, direct_routes
from connector.pipeline.ingest.intake import TARGET_TTL_SECONDS
from connector.pipeline.ingest.signature import SIGNATURE_HEADER, compute_signature
from tests.support.live import FB_ACCOUNT, Live
from tests.support.webhooks import inbox_rows

REASONS = ("unknown_token", "missing_signature", "bad_signature", "malformed", "too_many_verifications")


@dataclass
class Served:
    port: int
    app_calls: list[int]  # requests the front handed to the WSGI app


@contextlib.contextmanager
def front_for(live: Live) -> Iterator[Served]:
    """A second process-like instance of the app (as a gunicorn worker builds it) behind the front."""
    from app import create_app

    app = create_app(live.settings, clock=live.clock, start_background=False)
    services = app.extensions["fbslack"]
    calls = [0]

    def counted(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        calls[0] += 1
        return app(environ, start_response)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.setblocking(False)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    served = Front(
        counted,
        body_limit=body_limits(app.url_map),
        threads=2,
        limits=Limits(),
        direct=direct_routes(services.intake),
    )

    async def run() -> None:
        server = await served.serve(sock)
        started.set()
        async with server:
            with contextlib.suppress(asyncio.CancelledError):
                await server.serve_forever()

    thread = threading.Thread(target=lambda: loop.run_until_complete(run()), daemon=True)
    thread.start()
    assert started.wait(5)
    try:
        yield Served(sock.getsockname()[1], calls)
    finally:
        for task in asyncio.all_tasks(loop):
            loop.call_soon_threadsafe(task.cancel)
        thread.join(5)
        served.close()
        services.stop()


def post(base: str, token: str, body: bytes, headers: list[tuple[str, str]]) -> httpx.Response:
    return httpx.post(f"{base}/freshbooks/webhooks/{token}", content=body, headers=headers, timeout=10)


def counts() -> dict[str, float]:
    found = {
        reason: REGISTRY.get_sample_value("fbslack_webhooks_rejected_total", {"reason": reason}) or 0.0
        for reason in REASONS
    }
    found["acks"] = REGISTRY.get_sample_value("fbslack_webhook_ack_seconds_count") or 0.0
    return found


def delta(before: dict[str, float]) -> dict[str, float]:
    after = counts()
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


# A case: (name, whether the front answers it itself, a request maker). The maker gets 0 for the
# Flask route's copy and 1 for the front's, so a webhook that is stored is a different one on each.
Headers = list[tuple[str, str]]
Request = tuple[str, bytes, Headers]
Case = tuple[str, bool, Callable[[int], Request]]
FORM = ("Content-Type", "application/x-www-form-urlencoded")


def test_the_front_answers_webhooks_itself_exactly_as_the_flask_route_does(live: Live) -> None:
    new = live.connect_and_register("invoice.create", "client.update")
    token = new.webhook_token
    verifiers = {c.event: c.verifier for c in live.fake.callbacks.values()}

    def fields_of(event: str, object_id: str, account_id: str = FB_ACCOUNT) -> list[tuple[str, str]]:
        return live.fake.webhook_fields(account_id, event, object_id)

    def signed(fields: list[tuple[str, str]], event: str = "invoice.create") -> Request:
        signature = compute_signature(fields, verifiers[event])
        return token, urllib.parse.urlencode(fields).encode(), [FORM, (SIGNATURE_HEADER, signature)]

    stored_before = signed(fields_of("invoice.create", "700"))
    _, body, headers = stored_before
    assert post(live.url, token, body, headers).text == "ok\n"  # so that both copies are repeats
    signature = headers[1]
    cases: list[Case] = [
        ("stored", True, lambda side: signed(fields_of("invoice.create", f"70{side + 1}"))),
        ("repeated", True, lambda side: stored_before),
        (
            "ignored event",
            True,
            lambda side: signed(fields_of("client.update", f"80{side}"), "client.update"),
        ),
        ("two signature headers", False, lambda side: (token, body, [FORM, signature, signature])),
        ("no signature", True, lambda side: (token, body, [FORM])),
        ("wrong signature", False, lambda side: (token, body, [FORM, (SIGNATURE_HEADER, "Zm9v")])),
        ("another account", True, lambda side: signed(fields_of("invoice.create", "9", "OTHER1"))),
        ("unknown event", True, lambda side: signed([("name", "invoice.explode"), ("object_id", "1")])),
        ("no object_id", True, lambda side: signed([("name", "invoice.create")])),
        ("json", True, lambda side: (token, b'{"name": "x"}', [("Content-Type", "application/json")])),
        ("no content type", True, lambda side: (token, body, [signature])),
        ("empty", True, lambda side: (token, b"", [FORM, signature])),
        ("not UTF-8", True, lambda side: (token, b"name=\xff\xfe&object_id=1", [FORM, signature])),
        ("repeated field", True, lambda side: (token, b"name=a&name=b", [FORM, signature])),
        ("impossible token", True, lambda side: ("short", body, headers)),
        ("unknown token", False, lambda side: ("A" * 43, body, headers)),
        (
            "callback.verify",
            False,
            lambda side: signed(
                [("name", "callback.verify"), ("object_id", str(side + 1)), ("verifier", "v")]
            ),
        ),
    ]

    with front_for(live) as front:
        base = f"http://127.0.0.1:{front.port}"
        for name, direct, make in cases:
            flask_token, flask_body, flask_headers = make(0)
            before = counts()
            expected = post(live.url, flask_token, flask_body, flask_headers)
            expected_counts = delta(before)
            front_token, front_body, front_headers = make(1)
            # Fill the front's cached lookup (a wrong signature is checked against fresh verifiers,
            # in the Flask route), so that a case it can answer alone is answered alone.
            post(base, token, body, [FORM, (SIGNATURE_HEADER, "d2FybQ==")])
            warmed, calls = time.monotonic(), front.app_calls[0]
            before = counts()
            got = post(base, front_token, front_body, front_headers)
            got_counts = delta(before)
            assert (got.status_code, got.reason_phrase, got.text) == (
                expected.status_code,
                expected.reason_phrase,
                expected.text,
            ), name
            assert got.headers["Content-Type"] == expected.headers["Content-Type"], name
            assert got_counts == expected_counts, name
            if time.monotonic() - warmed < TARGET_TTL_SECONDS:  # else the cache may have expired
                answered_alone = front.app_calls[0] == calls
                assert answered_alone == direct, name
        # Too large: refused before any route code runs, by either server, and counted as a refused
        # (malformed) webhook by both.
        big = b"name=invoice.create&x=" + b"a" * 17000
        for server in (live.url, base):
            before = counts()
            refused = post(server, token, big, [FORM, signature])
            assert refused.status_code == 413, server
            assert refused.text == "the body is larger than 16 KiB, the limit of this URL\n", server
            assert delta(before).get("malformed") == 1, server
        # Both copies of each stored webhook are in the inbox, the repeated one once.
        stored = sorted(row.object_id for row in inbox_rows(live))
        assert stored == ["700", "701", "702", "800", "801"]
