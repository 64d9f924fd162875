"""POST /freshbooks/webhooks/<token> end to end: real HTTP, fake FreshBooks, SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from connector.freshbooks.verification import (
    MAX_PENDING_PER_CONNECTION,
    STALE_AFTER,
    UNKNOWN_CALLBACK_GRACE,
    decide,
)
from connector.pipeline.ingest.signature import compute_signature
from storage.inbox import REPEAT_WINDOW
from storage.models import CallbackVerification, FreshBooksCallback, InboxState, WebhookDigest
from tests.support.fakes.freshbooks import FakeCallback
from tests.support.live import FB_ACCOUNT, Live, clock_start
from tests.support.webhooks import inbox_rows, rejected, signed

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def count(live: Live, model: type) -> int:
    with live.services.db.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


# -- registration and the verification handshake ---------------------------------------------------


def test_verify_that_arrives_before_registration_returns_is_completed(live: Live) -> None:
    new = live.connect_and_register("invoice.create")

    (fb_callback,) = live.fake.callbacks.values()
    # The fake POSTed callback.verify while the registration call was still open, and we answered 200.
    assert [r.status_code for r in live.fake.verify_responses] == [200]
    assert fb_callback.verified is True
    with live.services.db.session() as session:
        ours = session.scalars(select(FreshBooksCallback)).one()
        verification = session.scalars(select(CallbackVerification)).one()
    assert ours.connection_id == new.connection.id
    assert ours.callback_id == fb_callback.callback_id
    assert ours.verified is True
    assert ours.verifier_enc is not None
    assert fb_callback.verifier not in ours.verifier_enc  # stored encrypted
    assert live.services.cipher.decrypt(ours.verifier_enc) == fb_callback.verifier
    assert verification.state == "accepted"
    put = live.fake.calls_to("PUT", f"/events/account/{FB_ACCOUNT}/events/callbacks/")
    assert [c.body for c in put] == [{"callback": {"verifier": fb_callback.verifier}}]


def test_forged_verify_for_a_verified_callback_changes_nothing(live: Live) -> None:
    new = live.connect_and_register("invoice.create")
    (fb_callback,) = live.fake.callbacks.values()
    puts_before = len(live.fake.calls_to("PUT", "/events"))

    forged = urllib.parse.urlencode(
        {"name": "callback.verify", "object_id": str(fb_callback.callback_id), "verifier": "attacker-key"}
    )
    assert live.post_webhook(new.webhook_token, forged).status_code == 200
    live.services.verification.process_pending()

    with live.services.db.session() as session:
        ours = session.scalars(select(FreshBooksCallback)).one()
        states = session.scalars(select(CallbackVerification.state).order_by(CallbackVerification.id)).all()
    assert live.services.cipher.decrypt(ours.verifier_enc or "") == fb_callback.verifier
    assert states == ["accepted"], "the forged candidate was dropped, not kept"
    assert len(live.fake.calls_to("PUT", "/events")) == puts_before  # never even asked FreshBooks
    # Webhooks signed with the attacker's key are still refused.
    fields = live.fake.webhook_fields(FB_ACCOUNT, "invoice.create", "42")
    response = live.post_webhook(
        new.webhook_token, urllib.parse.urlencode(fields), signature=compute_signature(fields, "attacker-key")
    )
    assert response.status_code == 401


def test_forged_verify_for_an_unverified_callback_is_refused_by_freshbooks(live: Live) -> None:
    live.fake.send_verify_on_register = False
    new = live.connect_and_register("payment.create")
    (fb_callback,) = live.fake.callbacks.values()

    forged = urllib.parse.urlencode(
        {"name": "callback.verify", "object_id": str(fb_callback.callback_id), "verifier": "attacker-key"}
    )
    assert live.post_webhook(new.webhook_token, forged).status_code == 200
    live.services.verification.process_pending()
    with live.services.db.session() as session:
        ours = session.scalars(select(FreshBooksCallback)).one()
        assert ours.verified is False
        assert ours.verifier_enc is None
        assert session.scalars(select(CallbackVerification.state)).all() == ["rejected"]

    # The genuine handshake still goes through afterwards.
    assert live.fake.send_verify(fb_callback).status_code == 200
    live.services.verification.process_pending()
    with live.services.db.session() as session:
        ours = session.scalars(select(FreshBooksCallback)).one()
    assert ours.verified is True
    assert live.services.cipher.decrypt(ours.verifier_enc or "") == fb_callback.verifier


def test_verify_for_a_callback_we_never_registered_waits_then_expires_and_is_purged(live: Live) -> None:
    new = live.connect()
    stranger = FakeCallback(
        callback_id=999_999,
        account_id=FB_ACCOUNT,
        event="invoice.create",
        uri=f"{live.url}/freshbooks/webhooks/{new.webhook_token}",
        verifier="whatever",
    )
    assert live.fake.send_verify(stranger).status_code == 200

    live.services.verification.process_pending()
    with live.services.db.session() as session:
        assert session.scalars(select(CallbackVerification.state)).all() == ["pending"]
    live.clock.advance(minutes=UNKNOWN_CALLBACK_GRACE.total_seconds() / 60 + 1)
    assert live.services.verification.process_pending() == 1
    assert count(live, CallbackVerification) == 0
    assert count(live, FreshBooksCallback) == 0
    assert live.fake.calls_to("PUT", "/events") == []


def forged_verify(callback_id: int) -> str:
    return urllib.parse.urlencode(
        {"name": "callback.verify", "object_id": str(callback_id), "verifier": f"forged-{callback_id}"}
    )


def pending_of(live: Live, connection_id: int) -> int:
    with live.services.db.read() as session:
        return len(
            session.scalars(
                select(CallbackVerification.id).where(
                    CallbackVerification.connection_id == connection_id,
                    CallbackVerification.state == "pending",
                )
            ).all()
        )


def test_a_flood_of_forged_verifies_for_one_connection_never_holds_another(live: Live) -> None:
    """Verify requests cannot be signed. 100 forged ones for one connection (unknown callback ids,
    which wait for a registration that may still be under way) used to fill the loop's whole pass
    and hold every other connection's verification for 10 minutes, or for as long as they came."""
    flooded = live.connect()
    other = live.connect(team_id="T0002", account_id="OTHER2")
    assert live.services.registrar is not None
    before = rejected("too_many_verifications")

    with httpx.Client() as client:
        url = f"{live.url}/freshbooks/webhooks/{flooded.webhook_token}"
        answers = [
            client.post(url, content=forged_verify(500_000 + n), headers=FORM).status_code for n in range(100)
        ]
    cap = MAX_PENDING_PER_CONNECTION
    assert answers == [200] * cap + [429] * (100 - cap)
    assert rejected("too_many_verifications") == before + 100 - cap
    assert pending_of(live, flooded.connection.id) == cap

    # The other connection's handshake goes through at once, on the registration path...
    first = live.services.registrar.register(other.connection.id, "invoice.create")
    # ... and on the loop's path, in its first pass, behind none of the flood.
    live.fake.send_verify_on_register = False
    second = live.services.registrar.register(other.connection.id, "bill.create")
    assert live.fake.send_verify(live.fake.callbacks[second.callback_id]).status_code == 200
    assert live.services.verification.process_pending() == 1
    with live.services.db.read() as session:
        theirs = session.scalars(
            select(FreshBooksCallback).where(FreshBooksCallback.connection_id == other.connection.id)
        ).all()
    assert sorted(c.callback_id for c in theirs if c.verified) == [first.callback_id, second.callback_id]
    assert all(live.fake.callbacks[c].verified for c in (first.callback_id, second.callback_id))
    # FreshBooks was never asked about a forged candidate: they name no callback we registered.
    put = {c.path.rsplit("/", 1)[1] for c in live.fake.calls_to("PUT", "/events")}
    assert put == {str(first.callback_id), str(second.callback_id)}
    assert pending_of(live, flooded.connection.id) == cap

    # The flood's candidates expire with the registration grace and are deleted, not kept.
    live.clock.advance(minutes=UNKNOWN_CALLBACK_GRACE.total_seconds() / 60 + 1)
    assert live.services.verification.process_pending() == cap
    assert pending_of(live, flooded.connection.id) == 0
    with live.services.db.read() as session:
        left = session.scalars(
            select(CallbackVerification.connection_id).where(CallbackVerification.state != "accepted")
        ).all()
    assert left == []
    # And the flooded connection takes verify requests again.
    assert live.post_webhook(flooded.webhook_token, forged_verify(1)).status_code == 200


def test_a_candidate_that_cannot_be_confirmed_goes_stale() -> None:
    now = clock_start()
    waiting = {"callback_known": True, "callback_verified": False, "resend_requested_at": None, "now": now}
    assert decide(received_at=now - STALE_AFTER, **waiting).put_verifier
    stale = decide(received_at=now - STALE_AFTER - dt.timedelta(seconds=1), **waiting)
    assert stale.drop and not stale.put_verifier


def test_verify_for_another_account_is_refused(live: Live) -> None:
    new = live.connect()
    body = urllib.parse.urlencode(
        {"name": "callback.verify", "object_id": "5", "verifier": "v", "account_id": "OTHER1"}
    )
    response = live.post_webhook(new.webhook_token, body)
    assert response.status_code == 400
    assert "account_id" in response.text
    assert count(live, CallbackVerification) == 0


def test_verification_postponed_while_freshbooks_is_down(live: Live) -> None:
    from tests.support.fakes.freshbooks import Scripted

    live.fake.send_verify_on_register = False
    live.services.freshbooks._sleep = lambda _s: None  # the client's own retries must not wait
    new = live.connect_and_register("bill.create")
    (fb_callback,) = live.fake.callbacks.values()
    live.fake.script("PUT", "/events", *[Scripted(503, {"errno": 503, "message": "down"})] * 4)
    live.fake.send_verify(fb_callback)
    live.services.verification.process_pending()
    with live.services.db.session() as session:
        assert session.scalars(select(CallbackVerification.state)).all() == ["pending"]
    live.services.verification.process_pending()
    with live.services.db.session() as session:
        assert session.scalars(select(CallbackVerification.state)).all() == ["accepted"]
    assert new.connection.id


# -- event webhooks ---------------------------------------------------------------------------------


def test_signed_webhook_is_stored_encrypted_before_the_answer(live: Live) -> None:
    new = live.connect_and_register("invoice.create")
    body, signature = signed(live, "invoice.create", "987654")

    response = live.post_webhook(new.webhook_token, body, signature=signature)

    assert response.status_code == 200
    (row,) = inbox_rows(live)
    assert (row.event_name, row.object_id, row.state) == ("invoice.create", "987654", "pending")
    assert row.connection_id == new.connection.id
    assert body not in row.body_enc
    assert live.services.cipher.decrypt(row.body_enc) == body


def test_unknown_token_is_404_and_stores_nothing(live: Live) -> None:
    live.connect_and_register("invoice.create")
    body, signature = signed(live, "invoice.create", "1")
    for token in ("A" * 43, "not a token!", "short"):
        response = live.post_webhook(token, body, signature=signature)
        assert response.status_code == 404
    assert inbox_rows(live) == []


@pytest.mark.parametrize("header", [None, "", "not-base64", "AAAA"])
def test_missing_or_wrong_signature_is_401_and_not_queued(live: Live, header: str | None) -> None:
    new = live.connect_and_register("invoice.create")
    body, _ = signed(live, "invoice.create", "1")
    reason = "missing_signature" if not header else "bad_signature"
    before = rejected(reason)

    response = live.post_webhook(new.webhook_token, body, signature=header)

    assert response.status_code == 401
    assert inbox_rows(live) == []
    assert rejected(reason) == before + 1


def test_replayed_signature_on_a_changed_body_is_refused(live: Live) -> None:
    new = live.connect_and_register("invoice.create")
    body, signature = signed(live, "invoice.create", "1")
    assert live.post_webhook(new.webhook_token, body, signature=signature).status_code == 200

    tampered = body.replace("object_id=1", "object_id=2")
    assert live.post_webhook(new.webhook_token, tampered, signature=signature).status_code == 401
    reordered = "&".join(reversed(body.split("&")))  # same fields, other order: another MAC
    assert live.post_webhook(new.webhook_token, reordered, signature=signature).status_code == 401
    assert len(inbox_rows(live)) == 1


def test_rejections_are_logged_without_body_or_signature(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    new = live.connect_and_register("invoice.create")
    body, _ = signed(live, "invoice.create", "55501")
    with caplog.at_level(logging.INFO):
        live.post_webhook(new.webhook_token, body, signature="Zm9yZ2VkLXNpZ25hdHVyZQ==")
    ours = [
        r for r in caplog.records if r.name.split(".")[0] in ("connector", "storage", "slack_ui", "fbslack")
    ]
    text = "\n".join(r.getMessage() + str(getattr(r, "context", "")) for r in ours)
    assert "invalid signature" in text
    assert "55501" not in text
    assert "Zm9yZ2VkLXNpZ25hdHVyZQ==" not in text
    assert new.webhook_token not in text


def test_malformed_bodies_get_400_with_the_reason(live: Live) -> None:
    new = live.connect_and_register("invoice.create")
    callback = next(iter(live.fake.callbacks.values()))

    def sign(fields: list[tuple[str, str]]) -> tuple[str, str]:
        return urllib.parse.urlencode(fields), compute_signature(fields, callback.verifier)

    cases: list[tuple[str, str | None, str | None, str]] = []
    body, sig = sign([("name", "invoice.create")])
    cases.append((body, sig, None, "object_id"))
    body, sig = sign([("object_id", "1")])
    cases.append((body, sig, None, "name"))
    body, sig = sign([("name", "invoice.explode"), ("object_id", "1")])
    cases.append((body, sig, None, "unknown event"))
    body, sig = sign([("name", "invoice.create"), ("object_id", "1/../../x")])
    cases.append((body, sig, None, "object_id"))
    cases.append(("name=invoice.create&object_id=1&object_id=2", "x", None, "repeated"))
    cases.append(('{"name": "invoice.create"}', "x", "application/json", "form"))
    cases.append(("name=invoice.create&object_id=1", "x", "text/plain", "form"))
    cases.append(("name=invoice.create&" + "x=" + "a" * 17000, "x", None, "16 KiB"))
    cases.append(("just-some-text", "x", None, "form encoding"))
    cases.append(("", "x", None, "empty"))

    for body, signature, content_type, reason in cases:
        response = live.post_webhook(new.webhook_token, body, signature=signature, content_type=content_type)
        expected = 413 if reason == "16 KiB" else 400  # too large is its own status (Content Too Large)
        assert response.status_code == expected, (body[:60], response.text)
        assert reason in response.text, (body[:60], response.text)
    assert inbox_rows(live) == []


def test_invalid_utf8_is_400(live: Live) -> None:
    new = live.connect_and_register("invoice.create")
    response = live.post_webhook(new.webhook_token, b"name=\xff\xfe&object_id=1", signature="x")
    assert response.status_code == 400
    assert "UTF-8" in response.text


def test_signed_webhook_for_another_account_is_400(live: Live) -> None:
    new = live.connect_and_register("invoice.create")
    body, signature = signed(live, "invoice.create", "1", account_id="OTHER1")
    response = live.post_webhook(new.webhook_token, body, signature=signature)
    assert response.status_code == 400
    assert "account_id" in response.text
    assert inbox_rows(live) == []


def test_known_but_unsupported_event_is_kept_as_ignored(live: Live) -> None:
    new = live.connect_and_register("client.update")
    body, signature = signed(live, "client.update", "921895")
    response = live.post_webhook(new.webhook_token, body, signature=signature)
    assert response.status_code == 200
    (row,) = inbox_rows(live)
    assert row.state == InboxState.IGNORED
    assert live.services.inbox_worker.run_once() == 0


def repeated() -> float:
    return REGISTRY.get_sample_value("fbslack_webhooks_repeated_total", {"event": "invoice.update"}) or 0.0


def test_a_body_repeated_within_24_hours_is_acknowledged_without_a_row_or_a_fetch(live: Live) -> None:
    new = live.connect_and_register("invoice.update")
    live.fake.add_object(FB_ACCOUNT, "invoices", {"id": 77, "updated": "2026-11-24 07:00:00"})
    body, signature = signed(live, "invoice.update", "77")
    fetch = f"/accounting/account/{FB_ACCOUNT}/invoices/invoices/77"
    before = repeated()

    first = live.post_webhook(new.webhook_token, body, signature=signature)
    assert (first.status_code, first.text) == (200, "ok\n")
    assert live.services.inbox_worker.run_once() == 1
    for _ in range(3):  # a FreshBooks retry, or someone replaying a captured request
        again = live.post_webhook(new.webhook_token, body, signature=signature)
        assert (again.status_code, again.text) == (200, "repeated webhook, already received\n")
    assert live.services.inbox_worker.run_once() == 0
    assert len(inbox_rows(live)) == 1
    assert len(live.fake.calls_to("GET", fetch)) == 1
    assert repeated() == before + 3

    # Only the bytes count: the same fields in another order are another body (and another MAC).
    callback = next(c for c in live.fake.callbacks.values() if c.event == "invoice.update")
    fields = list(reversed(live.fake.webhook_fields(FB_ACCOUNT, "invoice.update", "77")))
    other = live.post_webhook(
        new.webhook_token,
        urllib.parse.urlencode(fields),
        signature=compute_signature(fields, callback.verifier),
    )
    assert (other.status_code, other.text) == (200, "ok\n")
    assert len(inbox_rows(live)) == 2

    # The window is 24 hours of the injected clock, from the stored one.
    live.clock.advance(seconds=REPEAT_WINDOW.total_seconds() - 1)
    assert live.post_webhook(new.webhook_token, body, signature=signature).text.startswith("repeated")
    live.clock.advance(seconds=2)
    assert live.post_webhook(new.webhook_token, body, signature=signature).text == "ok\n"
    assert len(inbox_rows(live)) == 3

    # What is kept is a keyed hash per connection, never the body, and old ones are purged.
    with live.services.db.read() as session:
        digests = session.execute(select(WebhookDigest.connection_id, WebhookDigest.digest)).all()
    assert len(digests) == 2 and {c for c, _ in digests} == {new.connection.id}
    assert all(body not in d and hashlib.sha256(body.encode()).hexdigest()[:32] != d for _, d in digests)
    live.clock.advance(seconds=REPEAT_WINDOW.total_seconds() + 1)
    live.services.retention.purge()
    assert count(live, WebhookDigest) == 0


def test_identical_webhooks_at_once_make_one_row(live: Live) -> None:
    """Concurrent requests share a commit (the group commit), or race in separate ones: either
    way the body is stored once and every request is acknowledged."""
    new = live.connect_and_register("invoice.update")
    body, signature = signed(live, "invoice.update", "88")
    start = threading.Barrier(16)

    def post(_: int) -> httpx.Response:
        start.wait(10)
        return live.post_webhook(new.webhook_token, body, signature=signature)

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(post, range(16)))
    assert [a.status_code for a in answers] == [200] * 16
    assert sorted(a.text for a in answers) == ["ok\n"] + ["repeated webhook, already received\n"] * 15
    assert [r.object_id for r in inbox_rows(live)] == ["88"]


def test_any_registered_callbacks_verifier_is_accepted(live: Live) -> None:
    new = live.connect_and_register("invoice.create", "payment.create", "expense.delete")
    for event in ("invoice.create", "payment.create", "expense.delete"):
        response = live.fake.deliver(FB_ACCOUNT, event, "12")
        assert response.status_code == 200, event
    assert sorted(r.event_name for r in inbox_rows(live)) == [
        "expense.delete",
        "invoice.create",
        "payment.create",
    ]
    assert new.connection.id


# -- health and the status page --------------------------------------------------------------------


def test_healthz_reports_database(live: Live) -> None:
    import httpx

    from storage.db import Database

    response = httpx.get(f"{live.url}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}

    working = live.services.db
    live.services.db = Database("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    try:
        response = httpx.get(f"{live.url}/healthz")
    finally:
        live.services.db.dispose()
        live.services.db = working
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "unreachable"}
