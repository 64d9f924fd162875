"""Keeping exactly one verified callback per event at FreshBooks, without ever duplicating one."""

from __future__ import annotations

from sqlalchemy import select, update

from connector.domain.events import SUPPORTED_EVENTS
from connector.freshbooks.callbacks import plan_callbacks, webhook_url
from connector.freshbooks.client import CallbackInfo
from storage.models import FreshBooksCallback
from tests.support.fakes.freshbooks import FakeCallback
from tests.support.live import FB_ACCOUNT, Live

URI = "https://fb.example/freshbooks/webhooks/tok"


def info(callback_id: int, event: str, *, uri: str = URI, verified: bool = True) -> CallbackInfo:
    return CallbackInfo(callback_id=callback_id, event=event, uri=uri, verified=verified)


def test_plan_registers_only_what_is_missing() -> None:
    plan = plan_callbacks(
        [info(1, "invoice.create"), info(2, "bill.create", uri="https://someone-else/hook")],
        uri=URI,
        events=("invoice.create", "bill.create"),
        verifiers_held={1},
    )
    assert set(plan.keep) == {"invoice.create"}
    assert plan.register == ("bill.create",)
    assert (plan.resend, plan.delete) == ((), ())


def test_plan_deletes_duplicates_and_strays_keeping_the_one_we_can_verify() -> None:
    plan = plan_callbacks(
        [info(1, "invoice.create"), info(2, "invoice.create"), info(3, "client.update")],
        uri=URI,
        events=("invoice.create",),
        verifiers_held={2},
    )
    assert plan.keep["invoice.create"].callback_id == 2
    assert sorted(plan.delete) == [1, 3]


def test_plan_resends_unverified_or_lost_verifiers() -> None:
    plan = plan_callbacks(
        [info(1, "invoice.create", verified=False), info(2, "bill.create")],
        uri=URI,
        events=("invoice.create", "bill.create"),
        verifiers_held=set(),
    )
    assert sorted(plan.resend) == [1, 2]


def local(live: Live) -> list[FreshBooksCallback]:
    with live.services.db.session() as session:
        return list(session.scalars(select(FreshBooksCallback).order_by(FreshBooksCallback.event)))


def test_ensure_all_registers_and_verifies_every_event(live: Live) -> None:
    new = live.connect()
    assert live.services.registrar is not None
    health = live.services.registrar.ensure_all(new.connection.id)

    assert health.healthy
    assert (health.expected, health.registered, health.verified) == (13, 13, 13)
    assert sorted(c.event for c in live.fake.callbacks.values()) == sorted(SUPPORTED_EVENTS)
    assert all(c.verified for c in live.fake.callbacks.values())
    assert all(c.verified and c.verifier_enc for c in local(live))

    # A second run (a reconnect, the scheduled check) changes nothing at FreshBooks.
    posts = len(live.fake.calls_to("POST", "/events"))
    assert live.services.registrar.ensure_all(new.connection.id).healthy
    assert len(live.fake.calls_to("POST", "/events")) == posts
    assert len(live.fake.callbacks) == 13


def test_duplicates_at_freshbooks_are_removed(live: Live) -> None:
    new = live.connect()
    uri = webhook_url(live.url, new.webhook_token)
    for callback_id, event in ((7001, "invoice.create"), (7002, "invoice.create")):
        live.fake.callbacks[callback_id] = FakeCallback(
            callback_id, FB_ACCOUNT, event, uri, "v", verified=True
        )
    live.fake.callbacks[7003] = FakeCallback(7003, FB_ACCOUNT, "invoice.create", "https://other/x", "v", True)

    assert live.services.registrar is not None
    health = live.services.registrar.ensure_all(new.connection.id)

    assert health.healthy
    ours = [c for c in live.fake.callbacks.values() if c.uri == uri]
    assert sorted(c.event for c in ours) == sorted(SUPPORTED_EVENTS)
    assert 7003 in live.fake.callbacks  # someone else's callback is left alone


def test_a_vanished_callback_is_registered_again(live: Live) -> None:
    new = live.connect()
    assert live.services.registrar is not None
    live.services.registrar.ensure_all(new.connection.id)
    victim = next(c for c in live.fake.callbacks.values() if c.event == "payment.create")
    del live.fake.callbacks[victim.callback_id]  # FreshBooks disabled it after failures

    health = live.services.registrar.ensure_all(new.connection.id)

    assert health.healthy
    assert victim.callback_id not in {c.callback_id for c in local(live)}
    assert "payment.create" in {c.event for c in live.fake.callbacks.values()}


def test_a_lost_verifier_is_recovered_with_a_resend(live: Live) -> None:
    new = live.connect()
    assert live.services.registrar is not None
    live.services.registrar.ensure_all(new.connection.id)
    with live.services.db.session() as session:
        session.execute(
            update(FreshBooksCallback)
            .where(FreshBooksCallback.event == "bill.update")
            .values(verifier_enc=None, verified=False)
        )
    health = live.services.registrar.ensure_all(new.connection.id)
    assert health.healthy
    resends = [c for c in live.fake.calls_to("PUT", "/events") if c.body == {"callback": {"resend": True}}]
    assert len(resends) == 1
    assert live.fake.deliver(FB_ACCOUNT, "bill.update", "1").status_code == 200


def test_freshbooks_refusing_a_registration_is_reported(live: Live) -> None:
    from tests.support.fakes.freshbooks import Scripted

    new = live.connect()
    live.fake.script("POST", "/events", Scripted(400, {"errno": 422, "message": "Unrecognized event."}))
    assert live.services.registrar is not None
    health = live.services.registrar.ensure_all(new.connection.id)
    assert not health.healthy
    assert health.verified == 12
    assert len(health.errors) == 1
    assert "Unrecognized event" in health.errors[0]
