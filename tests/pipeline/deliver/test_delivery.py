"""Delivery to Slack over real HTTP: every error class, in-doubt reconciliation, replay after a fix,
pacing, and no duplicates across processes. Both databases; time is the injected clock, never a sleep."""

from __future__ import annotations

import datetime as dt
import http.client
import itertools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from sqlalchemy import select

from connector.pipeline.backoff import SCHEDULE
from connector.pipeline.deliver.engine import LEASE, DeliveryEngine
from connector.pipeline.deliver.errors import (
    ERROR_TABLE,
    MAX_CODE_LENGTH,
    Outcome,
    Scope,
    classify,
    error_code,
)
from connector.pipeline.render.formatting import METADATA_EVENT_TYPE
from connector.slack.notify import SlackNotifier
from storage import outbox
from storage.db import Database
from storage.models import Delivery, DeliveryState, Event
from tests.support.builders import payment_json
from tests.support.desk import (
    ACCOUNTING,
    GAP,
    PRIVATE,
    SALES,
    UPDATED,
    Desk,
    eventually,
    invoice,
    slack_event,
    web,
)
from tests.support.fakes.slack import (
    BOT_USER_ID,
    DROP,
    STORE_THEN_DROP,
    TEAM_ID,
    Channel,
    FakeSlack,
    Scripted,
)
from tests.support.live import ADMIN, FB_ACCOUNT, SLACK_BOT_TOKEN, FakeClock

# Run again by .ci/run from a leap day just before midnight US/Eastern (tests/support/live.py).
pytestmark = pytest.mark.date_sensitive


# -- the reference's error table (slack.md §2), transcribed, against connector/pipeline/deliver/errors.py

RETRY_CODES = ["ratelimited", "rate_limited", "service_unavailable", "request_timeout", "team_added_to_org",
               "org_login_required", "http_500", "http_503"]  # fmt: skip
IN_DOUBT_CODES = ["internal_error", "fatal_error", "timeout", "connection_dropped"]
CHANNEL_CODES = ["channel_not_found", "is_archived", "not_in_channel", "restricted_action",
                 "restricted_action_read_only_channel", "restricted_action_thread_only_channel",
                 "restricted_action_non_threadable_channel", "ekm_access_denied", "team_access_not_granted",
                 "slack_connect_canvas_sharing_blocked", "slack_connect_file_link_sharing_blocked",
                 "slack_connect_lists_sharing_blocked", "cannot_reply_to_message", "messages_tab_disabled",
                 "team_not_found",
                 "message_limit_exceeded"]  # quota: "human or plan issue; defer"  # fmt: skip
AUTH_CODES = ["invalid_auth", "not_authed", "account_inactive", "token_revoked", "missing_scope",
              "no_permission", "access_denied", "accesslimited", "app_access_restricted",
              "enterprise_is_restricted", "not_allowed_token_type", "two_factor_setup_required",
              "token_expired"]  # no token rotation in single-workspace mode: reinstall  # fmt: skip
BUG_CODES = ["invalid_blocks", "invalid_blocks_format", "msg_blocks_too_long", "no_text",
             "too_many_attachments", "too_many_contact_cards", "attachment_payload_limit_exceeded",
             "invalid_metadata_format", "invalid_metadata_schema", "metadata_too_large",
             "metadata_must_be_sent_from_app", "markdown_text_conflict", "invalid_arguments",
             "invalid_arg_name", "invalid_array_arg", "invalid_charset", "invalid_form_data",
             "invalid_post_type", "missing_post_type", "as_user_not_supported", "is_bot",
             "deprecated_endpoint", "method_deprecated", "missing_file_data", "msg_too_long"]  # fmt: skip
# File uploads (slack-files-and-scheduling.md §1.1 and §1.3), beyond the codes above.
FILE_CODES: dict[str, tuple[Outcome, Scope | None]] = {
    "file_not_found": (Outcome.RETRY, None),  # never uploaded, or expired: upload again
    "invalid_channel": (Outcome.NEEDS_PERSON, Scope.CHANNEL),
    "posting_to_channel_denied": (Outcome.NEEDS_PERSON, Scope.CHANNEL),
    **{code: (Outcome.NEEDS_PERSON, Scope.WORKSPACE) for code in (
        "file_uploads_disabled", "file_uploads_except_images_disabled", "file_upload_size_restricted",
        "file_type_not_allowed", "storage_limit_reached")},
    **{code: (Outcome.BUG, None)
       for code in ("missing_argument", "alt_txt_too_large", "channels_limit_exceeded")},
}  # fmt: skip
REFERENCE: dict[str, tuple[Outcome, Scope | None]] = {
    **FILE_CODES,
    **{code: (Outcome.RETRY, None) for code in RETRY_CODES},
    **{code: (Outcome.IN_DOUBT, None) for code in IN_DOUBT_CODES},
    **{code: (Outcome.NEEDS_PERSON, Scope.CHANNEL) for code in CHANNEL_CODES},
    **{code: (Outcome.NEEDS_PERSON, Scope.WORKSPACE) for code in AUTH_CODES},
    **{code: (Outcome.BUG, None) for code in BUG_CODES},
}


@pytest.mark.parametrize("code", sorted(REFERENCE))
def test_every_reference_error_is_classified_as_the_reference_says(code: str) -> None:
    classification = classify(code)

    assert (classification.outcome, classification.scope) == REFERENCE[code]
    assert classification.known


def test_the_table_has_nothing_the_reference_does_not() -> None:
    assert set(ERROR_TABLE) - set(REFERENCE) <= {"http_502", "http_504"}  # more 5xx, also retried
    assert {classify(code).outcome for code in ("http_502", "http_504")} == {Outcome.RETRY}


@pytest.mark.parametrize("code", ["brand_new_error", "", "Received a response in a non-JSON format: <html>"])
def test_unknown_codes_need_a_person_and_say_they_are_unknown(code: str) -> None:
    classification = classify(code)

    assert classification.outcome is Outcome.NEEDS_PERSON
    assert classification.known is False


@pytest.mark.parametrize(
    ("status", "error", "code"),
    [
        (429, "ratelimited", "ratelimited"),
        (429, "rate_limited", "rate_limited"),
        (429, None, "ratelimited"),
        (500, None, "http_500"),
        (503, "", "http_503"),
        (502, "Received a response in a non-JSON format: <html>Bad gateway</html>", "http_502"),
        (500, "internal_error", "internal_error"),
        (503, "service_unavailable", "service_unavailable"),
        (200, "channel_not_found", "channel_not_found"),
        (200, "brand_new_error", "brand_new_error"),
        (200, "x" * 200, "x" * MAX_CODE_LENGTH),
        (404, None, "http_404"),
    ],
)
def test_error_code_names_a_failed_call(status: int, error: str | None, code: str) -> None:
    assert error_code(status, error) == code


# -- the fake Slack's own behaviour ------------------------------------------------------------------


@pytest.fixture
def slack_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(slack_clock: FakeClock) -> Iterator[FakeSlack]:
    with FakeSlack(clock=lambda: slack_clock().timestamp()) as slack:
        slack.add_channel(Channel(ACCOUNTING, name="accounting"))
        yield slack


def test_fake_enforces_one_post_per_second_per_channel_when_asked(
    fake: FakeSlack, slack_clock: FakeClock
) -> None:
    fake.add_channel(Channel(SALES))
    client = web(fake)
    client.chat_postMessage(channel=ACCOUNTING, text="one")
    client.chat_postMessage(channel=ACCOUNTING, text="off by default")
    fake.enforce_channel_rate = True

    with pytest.raises(SlackApiError) as refused:
        client.chat_postMessage(channel=ACCOUNTING, text="too soon")
    client.chat_postMessage(channel=SALES, text="another channel is not limited")
    slack_clock.advance(seconds=1)
    client.chat_postMessage(channel=ACCOUNTING, text="a second later")

    assert refused.value.response.status_code == 429
    assert refused.value.response.headers["Retry-After"] == "1"
    assert refused.value.response.data == {"ok": False, "error": "ratelimited"}
    assert [m["text"] for m in fake.channels[ACCOUNTING].messages] == [
        "one",
        "off by default",
        "a second later",
    ]
    assert [c[1]["text"] for c in fake.rate_limited] == ["too soon"]


def test_fake_store_then_drop_keeps_the_message_and_gives_no_answer(fake: FakeSlack) -> None:
    fake.script("chat.postMessage", STORE_THEN_DROP, DROP)
    client = web(fake)

    with pytest.raises(http.client.RemoteDisconnected):
        client.chat_postMessage(channel=ACCOUNTING, text="stored")
    with pytest.raises(http.client.RemoteDisconnected):
        client.chat_postMessage(channel=ACCOUNTING, text="never stored")

    assert [m["text"] for m in fake.channels[ACCOUNTING].messages] == ["stored"]


def test_fake_permalink_replies_and_metadata(fake: FakeSlack, slack_clock: FakeClock) -> None:
    client = web(fake)
    marker = {"event_type": "t", "event_payload": {"k": "v"}}
    parent = client.chat_postMessage(channel=ACCOUNTING, text="card", metadata=marker)["ts"]
    slack_clock.advance(seconds=1)
    reply = client.chat_postMessage(channel=ACCOUNTING, text="reply", thread_ts=parent, metadata=marker)["ts"]

    link = client.chat_getPermalink(channel=ACCOUNTING, message_ts=reply)["permalink"]
    bare = client.conversations_replies(channel=ACCOUNTING, ts=parent)["messages"]
    full = client.conversations_replies(channel=ACCOUNTING, ts=parent, include_all_metadata=True)["messages"]
    history = client.conversations_history(channel=ACCOUNTING, include_all_metadata=True)["messages"]

    assert link == f"https://fake.slack.test/archives/{ACCOUNTING}/p{reply.replace('.', '')}"
    assert float(reply) - float(parent) >= 1  # ts follows the injected clock
    assert [m["text"] for m in full] == ["card", "reply"]
    assert [m["metadata"] for m in bare] == [{"event_type": "t"}] * 2
    assert [m["metadata"] for m in full] == [marker] * 2
    assert [m["text"] for m in history] == ["card"]  # replies are not in the channel's history
    with pytest.raises(SlackApiError, match="message_not_found"):
        client.chat_getPermalink(channel=ACCOUNTING, message_ts="1.000001")


def test_fake_revoked_and_removed_tokens(fake: FakeSlack) -> None:
    fake.valid_tokens.add("xoxb-other")
    fake.revoke_token(SLACK_BOT_TOKEN)
    fake.valid_tokens.discard("xoxb-other")

    with pytest.raises(SlackApiError, match="token_revoked"):
        web(fake).chat_postMessage(channel=ACCOUNTING, text="x")
    with pytest.raises(SlackApiError, match="invalid_auth"):
        web(fake, "xoxb-other").chat_postMessage(channel=ACCOUNTING, text="x")
    assert fake.channels[ACCOUNTING].messages == []


# -- a connected workspace with the fake Slack on the test's clock -----------------------------------


@contextmanager
def extra_engine(desk: Desk, *, senders: int, db: Database | None = None) -> Iterator[DeliveryEngine]:
    """Another DeliveryEngine (with `db` of its own: another process) on the same fake Slack."""
    client = desk.web()
    engine = DeliveryEngine(
        db=db or desk.live.services.db,
        cipher=desk.live.services.cipher,
        client_for_team=lambda _team_id: client,
        notifier=SlackNotifier(lambda _team_id: client),
        clock=desk.live.clock,
        senders=senders,
    )
    try:
        yield engine
    finally:
        engine.close()


# -- retry: Slack refused the request, try again later -------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        ("service_unavailable", "service_unavailable"),
        ((500, {}, {}), "http_500"),
        ((503, {}, {"ok": False}), "http_503"),
        ((503, {}, {"ok": False, "error": "service_unavailable"}), "service_unavailable"),
        ((502, {}, "<html><body><h1>502 Bad Gateway</h1></body></html>"), "http_502"),
    ],
)
def test_transient_errors_are_retried_after_a_backoff(desk: Desk, answer: Scripted, code: str) -> None:
    desk.slack.script("chat.postMessage", answer)
    (delivery_id,) = desk.queue(ACCOUNTING)
    started = desk.live.clock()

    desk.run()
    failed = desk.get(delivery_id)
    desk.drain()  # the retry is not due yet

    assert (failed.state, failed.attempts, failed.last_error_code) == (DeliveryState.PENDING, 1, code)
    assert 3.75 <= (failed.next_attempt_at - started).total_seconds() <= 6.25  # 5 s, +-25% jitter
    assert failed.sent_at is None  # refused: a replay would not need to look for it
    assert desk.texts(ACCOUNTING) == []
    desk.advance_to_next_attempt(delivery_id)
    desk.drain()
    assert desk.get(delivery_id).state == DeliveryState.DELIVERED
    assert desk.texts(ACCOUNTING) == ["Invoice ACM1001 created"]
    assert desk.posts_of(delivery_id) == 2
    assert desk.slack.dms(ADMIN) == []


def test_rate_limit_pauses_the_workspace_for_retry_after_and_counts_no_attempt(desk: Desk) -> None:
    desk.slack.script("chat.postMessage", (429, {"Retry-After": "30"}, {"ok": False, "error": "ratelimited"}))
    (first,) = desk.queue(ACCOUNTING)
    limited_at = desk.live.clock()

    desk.run()
    (second,) = desk.queue(SALES)  # another channel of the same workspace waits too
    for _ in range(20):  # 22 s of rounds, all inside the pause
        assert desk.run() == 0

    paused = desk.get(first)
    assert (paused.state, paused.attempts, paused.last_error_code) == (
        DeliveryState.PENDING,
        0,
        "ratelimited",
    )
    assert paused.next_attempt_at == limited_at + dt.timedelta(seconds=30)
    assert len(desk.slack.calls_to("chat.postMessage")) == 1
    desk.live.clock.now = limited_at + dt.timedelta(seconds=30)
    desk.drain()
    assert desk.states([first, second]) == [DeliveryState.DELIVERED] * 2
    assert desk.get(first).attempts == 1
    assert len(desk.slack.calls_to("chat.postMessage")) == 3


def test_retries_end_parked_after_about_a_day_and_the_installer_is_told(desk: Desk) -> None:
    desk.slack.script("chat.postMessage", *["service_unavailable"] * (len(SCHEDULE) + 1))
    (delivery_id,) = desk.queue(ACCOUNTING)
    started = desk.live.clock()
    tries: list[dt.datetime] = []

    while desk.get(delivery_id).state == DeliveryState.PENDING and len(tries) < 20:
        desk.advance_to_next_attempt(delivery_id)
        tries.append(desk.live.clock())
        assert desk.live.services.engine.run_once() == 1

    parked = desk.get(delivery_id)
    assert len(tries) == len(SCHEDULE) + 1
    for step, (before, after) in zip(SCHEDULE, itertools.pairwise(tries), strict=True):
        assert step * 0.75 <= after - before <= step * 1.25
    elapsed = tries[-1] - started
    assert dt.timedelta(hours=17) <= elapsed <= dt.timedelta(hours=29)  # about a day
    assert (parked.state, parked.parked_reason, parked.attempts) == (
        DeliveryState.PARKED,
        "service_unavailable",
        len(SCHEDULE) + 1,
    )
    [dm] = desk.slack.dms(ADMIN)
    assert f"still failing after {len(SCHEDULE) + 1} attempts" in dm["text"]


# -- in doubt: the post may have landed; look before posting again -----------------------------------


@pytest.mark.parametrize("threaded", [False, True], ids=["top-level", "thread-reply"])
@pytest.mark.parametrize(
    ("answer", "landed"),
    [
        (STORE_THEN_DROP, True),
        ((500, {}, {"ok": False, "error": "internal_error"}), False),
        ("internal_error", False),
        ("fatal_error", False),
        (DROP, False),
    ],
    ids=["stored-then-dropped", "internal_error-500", "internal_error", "fatal_error", "dropped"],
)
def test_in_doubt_posts_are_reconciled_never_posted_twice(
    desk: Desk, answer: Scripted, landed: bool, threaded: bool
) -> None:
    if threaded:  # the invoice's card first; the payment then replies in its thread
        (card,) = desk.queue(ACCOUNTING)
        desk.drain()
        payment = {**payment_json(5, "100.00", UPDATED), "invoiceid": 1001}
        delivery_id = desk.queue_event(ACCOUNTING, "payment", "payment.create", payment)
    else:
        (delivery_id,) = desk.queue(ACCOUNTING)
    before = len(desk.slack.channels[ACCOUNTING].messages)
    desk.slack.script("chat.postMessage", answer)

    desk.run()
    doubt = desk.get(delivery_id)
    desk.drain()  # nothing is posted before the recheck
    after_attempt = len(desk.slack.channels[ACCOUNTING].messages)
    desk.advance_to_next_attempt(delivery_id)
    desk.drain()

    assert doubt.state == DeliveryState.IN_DOUBT
    assert doubt.sent_at is not None
    assert (doubt.next_attempt_at - doubt.sent_at).total_seconds() >= 10  # a moment for Slack to settle
    assert after_attempt - before == (1 if landed else 0)
    done = desk.get(delivery_id)
    messages = desk.slack.channels[ACCOUNTING].messages
    assert done.state == DeliveryState.DELIVERED
    assert len(messages) - before == 1  # exactly one message, whoever posted it
    assert done.slack_ts == messages[-1]["ts"]
    assert desk.posts_of(delivery_id) == (1 if landed else 2)
    assert (
        done.permalink == f"https://fake.slack.test/archives/{ACCOUNTING}/p{done.slack_ts.replace('.', '')}"
    )
    search = "conversations.replies" if threaded else "conversations.history"
    [(_, params, _)] = desk.slack.calls_to(search)
    assert params["include_all_metadata"] in ("1", True)
    if threaded:
        assert params["ts"] == desk.get(card).slack_ts == done.thread_ts
        assert messages[-1]["thread_ts"] == done.thread_ts


def test_an_in_doubt_post_is_looked_for_where_it_was_posted(desk: Desk) -> None:
    # The invoice's first message is in doubt; meanwhile its second one goes out and becomes the
    # card. The first must still be looked for in the channel, not in the new card's thread.
    (first,) = desk.queue(ACCOUNTING)
    desk.slack.script("chat.postMessage", STORE_THEN_DROP)
    desk.run()
    second = desk.queue_event(ACCOUNTING, "invoice", "invoice.sendByEmail", invoice(1001))
    desk.run()
    assert desk.get(second).state == DeliveryState.DELIVERED

    desk.advance_to_next_attempt(first)
    desk.drain()

    done = desk.get(first)
    assert (done.state, done.thread_ts) == (DeliveryState.DELIVERED, None)
    assert desk.posts_of(first) == 1
    assert len(desk.slack.channels[ACCOUNTING].messages) == 2


@pytest.mark.parametrize("landed", [True, False], ids=["landed", "not-landed"])
def test_a_crash_mid_post_is_reconciled_after_the_lease(desk: Desk, landed: bool) -> None:
    (delivery_id,) = desk.queue(ACCOUNTING)
    with desk.live.services.db.session() as session:  # another process claims, marks, posts, dies
        [claim] = outbox.claim_due(session, owner="crashed", now=desk.live.clock(), lease=LEASE, limit=1)
        assert outbox.mark_sent(
            session, delivery_id=delivery_id, owner="crashed", now=desk.live.clock(), thread_ts=None
        )
    if landed:
        marker = {"event_type": METADATA_EVENT_TYPE, "event_payload": {"delivery_key": claim.delivery_key}}
        crashed_ts = desk.web().chat_postMessage(
            channel=ACCOUNTING, text="Invoice ACM1001 created.", metadata=marker
        )["ts"]

    for _ in range(50):  # 55 s: still leased by the dead process
        assert desk.run() == 0
    desk.live.clock.advance(seconds=LEASE.total_seconds())
    desk.drain()

    done = desk.get(delivery_id)
    assert done.state == DeliveryState.DELIVERED
    assert desk.texts(ACCOUNTING) == ["Invoice ACM1001 created"]
    assert desk.posts_of(delivery_id) == 1
    if landed:
        assert done.slack_ts == crashed_ts
    assert len(desk.slack.calls_to("conversations.history")) == 1


def test_a_lost_lease_is_never_posted_on(desk: Desk) -> None:
    (delivery_id,) = desk.queue(ACCOUNTING)
    with desk.live.services.db.session() as session:
        outbox.claim_due(session, owner="slow", now=desk.live.clock(), lease=LEASE, limit=1)
    desk.live.clock.advance(seconds=LEASE.total_seconds() + 1)

    with desk.live.services.db.session() as session:  # the lease ran out before the post began
        assert not outbox.mark_sent(
            session, delivery_id=delivery_id, owner="slow", now=desk.live.clock(), thread_ts=None
        )
    desk.drain()  # a live process takes it over
    with desk.live.services.db.session() as session:
        assert not outbox.mark_sent(
            session, delivery_id=delivery_id, owner="slow", now=desk.live.clock(), thread_ts=None
        )

    assert desk.get(delivery_id).state == DeliveryState.DELIVERED
    assert desk.posts_of(delivery_id) == 1


# -- needs a person: parked with the reason, the installer told once per cause ------------------------


@pytest.mark.parametrize(
    ("channel", "code"),
    [
        (None, "channel_not_found"),
        (lambda: Channel(PRIVATE, name="old", is_archived=True), "is_archived"),
        (lambda: Channel(PRIVATE, name="board", is_private=True, is_member=False), "not_in_channel"),
    ],
    ids=["channel_not_found", "is_archived", "not_in_channel-private"],
)
def test_channel_problems_park_and_tell_the_installer_once(
    desk: Desk, channel: Callable[[], Channel] | None, code: str
) -> None:
    if channel is not None:
        desk.slack.add_channel(channel())
    broken = desk.queue(PRIVATE, 3)
    (fine,) = desk.queue(ACCOUNTING)

    desk.drain()

    assert desk.states(broken) == [DeliveryState.PARKED] * 3
    assert {desk.get(i).parked_reason for i in broken} == {code}
    assert desk.get(fine).state == DeliveryState.DELIVERED  # another channel is not held up
    [dm] = desk.slack.dms(ADMIN)
    assert f"<#{PRIVATE}>" in dm["text"]
    assert desk.open_causes() == [f"{code}:{PRIVATE}"]
    assert desk.workspace().suspended_reason is None
    if code == "not_in_channel":
        assert "/invite" in dm["text"]
        assert desk.slack.calls_to("conversations.join")  # tried, and refused for a private channel


def test_not_in_channel_on_a_public_channel_joins_and_posts(desk: Desk) -> None:
    desk.slack.add_channel(Channel(PRIVATE, name="public-but-not-joined", is_member=False))
    (delivery_id,) = desk.queue(PRIVATE)

    desk.drain()

    done = desk.get(delivery_id)
    assert (done.state, done.attempts) == (DeliveryState.DELIVERED, 1)  # the refused try did not count
    assert desk.slack.channels[PRIVATE].is_member
    assert desk.texts(PRIVATE) == ["Invoice ACM1001 created"]
    assert desk.slack.dms(ADMIN) == []


@pytest.mark.parametrize("code", ["token_revoked", "invalid_auth"])
def test_workspace_auth_failures_suspend_the_workspace(desk: Desk, code: str) -> None:
    if code == "token_revoked":
        desk.slack.revoke_token(SLACK_BOT_TOKEN)
    else:
        desk.slack.valid_tokens.discard(SLACK_BOT_TOKEN)
    first = desk.queue(ACCOUNTING, 3)
    (other,) = desk.queue(SALES)

    desk.drain()
    for _ in range(10):
        desk.run()

    # The two channels' first posts went out together and both were refused; then nothing more.
    assert len(desk.slack.calls_to("chat.postMessage")) == 2
    assert desk.states([first[0], other]) == [DeliveryState.PARKED] * 2
    assert desk.states(first[1:]) == [DeliveryState.PENDING] * 2  # held, not tried
    assert desk.get(other).parked_reason == code
    assert desk.workspace().suspended_reason == code
    assert desk.open_causes() == [code]
    assert not desk.due()  # the delivery loop idles instead of spinning on a suspended workspace
    assert desk.live.services.engine.step() == 0


def test_a_malformed_message_fails_and_is_never_retried(desk: Desk) -> None:
    desk.slack.script("chat.postMessage", "invalid_blocks")
    (delivery_id,) = desk.queue(ACCOUNTING)

    desk.drain()
    desk.live.clock.advance(days=2)
    desk.drain()

    failed = desk.get(delivery_id)
    assert (failed.state, failed.last_error_code) == (DeliveryState.FAILED, "invalid_blocks")
    assert desk.posts_of(delivery_id) == 1
    assert desk.slack.dms(ADMIN) == []


# -- replay after a person fixed it: Slack's events re-queue what was parked ---------------------------


def _invite(slack: FakeSlack) -> dict[str, Any]:
    slack.channels[PRIVATE].is_member = True
    return {"type": "member_joined_channel", "user": BOT_USER_ID, "channel": PRIVATE, "channel_type": "G",
            "team": TEAM_ID, "inviter": ADMIN}  # fmt: skip


def _unarchive(slack: FakeSlack) -> dict[str, Any]:
    slack.channels[PRIVATE].is_archived = False
    return {"type": "channel_unarchive", "channel": PRIVATE, "user": ADMIN}


@pytest.mark.parametrize(
    ("channel", "fix"),
    [
        (lambda: Channel(PRIVATE, name="board", is_private=True, is_member=False), _invite),
        (lambda: Channel(PRIVATE, name="old", is_archived=True), _unarchive),
    ],
    ids=["member_joined_channel", "channel_unarchive"],
)
def test_a_fix_in_slack_replays_the_parked_deliveries(
    desk: Desk, channel: Callable[[], Channel], fix: Callable[[FakeSlack], dict[str, Any]]
) -> None:
    desk.slack.add_channel(channel())  # a new one each time: the fix changes it
    parked = desk.queue(PRIVATE, 2)
    desk.drain()
    assert desk.states(parked) == [DeliveryState.PARKED] * 2

    response = slack_event(desk.live, fix(desk.slack))
    eventually(lambda: desk.states(parked) == [DeliveryState.PENDING] * 2, "parked deliveries re-queued")
    desk.drain()

    assert response.status_code == 200
    assert desk.states(parked) == [DeliveryState.DELIVERED] * 2
    assert desk.texts(PRIVATE) == ["Invoice ACM1001 created", "Invoice ACM1002 created"]
    assert len(desk.slack.dms(ADMIN)) == 1


def test_a_parked_delivery_that_may_have_landed_is_looked_for_before_the_replay(desk: Desk) -> None:
    desk.slack.add_channel(Channel(PRIVATE, name="board", is_private=True))
    (delivery_id,) = desk.queue(PRIVATE)
    desk.slack.script("chat.postMessage", STORE_THEN_DROP)
    desk.run()  # stored, answer lost: in doubt
    desk.slack.channels[PRIVATE].is_member = False  # and then the bot is removed from the channel

    desk.advance_to_next_attempt(delivery_id)
    desk.drain()  # the search is refused (not_in_channel, private: no join): parked, still in doubt
    parked = desk.get(delivery_id)
    slack_event(desk.live, _invite(desk.slack))
    eventually(lambda: desk.get(delivery_id).state != DeliveryState.PARKED, "parked delivery re-queued")
    requeued = desk.get(delivery_id)
    desk.drain()

    assert (parked.state, parked.parked_reason) == (DeliveryState.PARKED, "not_in_channel")
    assert parked.sent_at is not None
    assert requeued.state == DeliveryState.IN_DOUBT
    assert desk.get(delivery_id).state == DeliveryState.DELIVERED
    assert desk.posts_of(delivery_id) == 1
    assert len(desk.slack.channels[PRIVATE].messages) == 1


def test_a_search_rate_limited_stays_in_doubt_and_does_not_pause_posting(desk: Desk) -> None:
    (doubtful,) = desk.queue(ACCOUNTING)
    desk.slack.script("chat.postMessage", STORE_THEN_DROP)
    desk.run()
    desk.slack.script(
        "conversations.history", (429, {"Retry-After": "20"}, {"ok": False, "error": "ratelimited"})
    )
    desk.advance_to_next_attempt(doubtful)
    searched_at = desk.live.clock()

    desk.run()
    (other,) = desk.queue(SALES)
    desk.run()
    waiting = desk.get(doubtful)
    desk.live.clock.now = searched_at + dt.timedelta(seconds=20)
    desk.drain()

    assert (waiting.state, waiting.attempts) == (DeliveryState.IN_DOUBT, 1)
    assert waiting.next_attempt_at == searched_at + dt.timedelta(seconds=20)
    assert desk.get(other).state == DeliveryState.DELIVERED  # posting was not paused
    assert desk.get(doubtful).state == DeliveryState.DELIVERED
    assert desk.posts_of(doubtful) == 1


# -- pacing: one post per channel per 1.05 s; a busy channel never delays a quiet one ----------------


def test_posts_to_a_channel_are_paced_while_another_channel_goes_at_once(desk: Desk) -> None:
    busy = desk.queue(ACCOUNTING, 4)
    (quiet,) = desk.queue(SALES)
    engine = desk.live.services.engine

    assert engine.run_once() == 2  # the busy channel's first post and the quiet channel's, together
    assert engine.run_once() == 0
    desk.live.clock.advance(seconds=1.0)
    assert engine.run_once() == 0  # within the channel gap
    desk.live.clock.advance(seconds=0.06)
    assert engine.run_once() == 1
    desk.drain()

    assert desk.states([*busy, quiet]) == [DeliveryState.DELIVERED] * 5
    assert desk.texts(ACCOUNTING) == [f"Invoice ACM{1001 + i} created" for i in range(4)]
    stamps = [float(m["ts"]) for m in desk.slack.channels[ACCOUNTING].messages]
    assert all(b - a >= 1.05 for a, b in itertools.pairwise(stamps))


def test_pacing_counts_from_slacks_answer_so_a_slow_trip_cannot_bring_two_posts_closer(desk: Desk) -> None:
    """What let two servers on a busy machine draw a 429: the gap counted from the moment a post
    was sent, but Slack judges from when it arrives, and a post delayed on its way (a descheduled
    thread, a slow network) arrives closer to the next one. Only Slack's answer proves arrival."""
    desk.slack.enforce_channel_rate = True
    trips = iter([0.4])  # the first post takes 0.4 s to reach Slack; the next one no time at all

    def arrive(method: str) -> None:
        if method == "chat.postMessage":
            desk.live.clock.advance(seconds=next(trips, 0.0))

    desk.slack.on_arrival = arrive
    desk.queue(ACCOUNTING, 2)
    engine = desk.live.services.engine
    assert engine.run_once() == 1
    for _ in range(300):  # the second post goes as soon as the engine lets it, 10 ms steps
        if engine.run_once():
            break
        desk.live.clock.advance(seconds=0.01)

    assert desk.slack.rate_limited == []
    first, second = (float(m["ts"]) for m in desk.slack.channels[ACCOUNTING].messages)
    assert second - first >= 1.0


def test_the_engine_knows_when_the_channels_it_posted_to_may_post_again(desk: Desk) -> None:
    engine = desk.live.services.engine
    assert engine.seconds_until_a_channel_frees() is None
    desk.queue(ACCOUNTING, 2)
    desk.queue(SALES)
    assert engine.run_once() == 2
    # Both posts left at the same (fake) moment: their channels free one gap later.
    assert engine.seconds_until_a_channel_frees() == pytest.approx(1.05)
    desk.live.clock.advance(seconds=0.5)
    assert engine.seconds_until_a_channel_frees() == pytest.approx(0.55)
    desk.live.clock.advance(seconds=0.55)
    assert engine.seconds_until_a_channel_frees() is None
    assert engine.run_once() == 1  # and the waiting post goes then


def test_a_long_queue_does_not_starve_a_quiet_channel(desk: Desk) -> None:
    desk.queue(ACCOUNTING, 100)
    (quiet,) = desk.queue(SALES)

    with extra_engine(desk, senders=1) as engine:
        assert desk.run(engine) == 2

    assert desk.get(quiet).state == DeliveryState.DELIVERED
    assert len(desk.slack.channels[ACCOUNTING].messages) == 1


def test_a_burst_meets_slacks_channel_limit_without_a_single_429(desk: Desk) -> None:
    live = desk.live
    live.slack.enforce_channel_rate = True
    for channel in (ACCOUNTING, SALES):  # one message per invoice, not a summary (test_burst.py)
        assert (
            live.slash(f"route invoice <#{channel}|x> collapse off").json()["text"].startswith("Rule saved")
        )
    for object_id in range(2001, 2011):
        live.fake.add_object(FB_ACCOUNT, "invoices", invoice(object_id))
        assert live.fake.deliver(FB_ACCOUNT, "invoice.create", str(object_id)).status_code == 200

    for _ in range(40):
        work = live.services.inbox_worker.run_once() + live.services.router.run_once()
        if not desk.run() and not work and not desk.due():
            break

    assert desk.slack.rate_limited == []
    for channel in (ACCOUNTING, SALES):
        assert sorted(desk.texts(channel)) == sorted(f"Invoice ACM{i} created" for i in range(2001, 2011))
        stamps = [float(m["ts"]) for m in desk.slack.channels[channel].messages]
        assert all(b - a >= 1.0 for a, b in itertools.pairwise(stamps))


# -- exactly once: two processes, one database; routing twice ----------------------------------------


def test_two_processes_draining_together_never_post_twice(desk: Desk, database_url: str) -> None:
    # More channels than one claimer looks at (a claim locks up to 4 x its limit of channel heads,
    # SKIP LOCKED for the other): whichever claims first, the other still finds work that round.
    channels = [f"C0MULTI{n:02d}" for n in range(20)]
    for channel in channels:
        desk.slack.add_channel(Channel(channel))
    ids = [i for _ in range(3) for channel in channels for i in desk.queue(channel)]
    # Three answers lost after the post was stored: those are reconciled, concurrently too.
    desk.slack.script("chat.postMessage", STORE_THEN_DROP, STORE_THEN_DROP, STORE_THEN_DROP)
    second_db = Database(database_url, pool_size=5)
    start, end = threading.Barrier(3, timeout=60), threading.Barrier(3, timeout=60)
    stop = threading.Event()
    claimed = {"a": 0, "b": 0}
    errors: list[BaseException] = []

    def process(name: str, engine: DeliveryEngine) -> None:
        try:
            while True:
                start.wait()
                if stop.is_set():
                    return
                claimed[name] += engine.run_once()
                end.wait()
        except BaseException as exc:
            errors.append(exc)
            start.abort()
            end.abort()

    try:
        # One sender each: claims of 4 channels at most, heads looked at 16.
        with extra_engine(desk, senders=1) as one, extra_engine(desk, senders=1, db=second_db) as two:
            threads = [threading.Thread(target=process, args=args) for args in (("a", one), ("b", two))]
            for thread in threads:
                thread.start()
            for _ in range(60):
                start.wait()
                end.wait()
                if set(desk.states(ids)) == {DeliveryState.DELIVERED}:
                    break
                desk.live.clock.advance(seconds=GAP)
            stop.set()
            start.wait()
            for thread in threads:
                thread.join(timeout=30)
    finally:
        second_db.dispose()

    assert errors == []
    assert set(desk.states(ids)) == {DeliveryState.DELIVERED}
    keys = {desk.get(i).delivery_key for i in ids}
    posts = desk.slack.posts_by_metadata("delivery_key")
    assert set(posts) == keys
    assert set(posts.values()) == {1}  # every delivery posted exactly once
    assert all(len(desk.slack.channels[c].messages) == 3 for c in channels)
    assert claimed["a"] > 0 and claimed["b"] > 0  # both processes did work


def test_routing_the_same_event_twice_queues_it_once(desk: Desk) -> None:
    live = desk.live
    assert live.slash(f"route invoice <#{ACCOUNTING}|accounting>").json()["text"].startswith("Rule saved")
    live.fake.add_object(FB_ACCOUNT, "invoices", invoice(3001))
    live.fake.deliver(FB_ACCOUNT, "invoice.create", "3001")
    live.services.inbox_worker.run_once()

    assert live.services.router.run_once() == 1
    with live.services.db.session() as session:  # as if the routing transaction were replayed
        for event in session.scalars(select(Event)):
            event.routed_at = None
    assert live.services.router.run_once() == 0
    with live.services.db.session() as session:
        [delivery] = session.scalars(select(Delivery))
        again = outbox.add_delivery(
            session,
            event_id=delivery.event_id,
            workspace_id=delivery.workspace_id,
            channel_id=ACCOUNTING,
            rule_ids=[],
            now=live.clock(),
        )
    desk.drain()

    assert again is False
    assert desk.texts(ACCOUNTING) == ["Invoice ACM3001 created"]


def test_a_new_token_resumes_a_suspended_workspace_and_replays_its_deliveries(desk: Desk) -> None:
    desk.slack.revoke_token(SLACK_BOT_TOKEN)
    held = desk.queue(ACCOUNTING, 2)
    desk.drain()
    assert desk.workspace().suspended_reason == "token_revoked"
    assert desk.live.services.engine.resume_workspaces() == 0  # still refused: stays suspended

    desk.slack.revoked_tokens.discard(SLACK_BOT_TOKEN)  # reinstalled: the token works again
    desk.slack.valid_tokens.add(SLACK_BOT_TOKEN)
    assert desk.live.services.engine.resume_workspaces() == 1
    desk.drain()

    assert desk.workspace().suspended_reason is None
    assert desk.open_causes() == []
    assert desk.states(held) == [DeliveryState.DELIVERED] * 2


def test_a_fixed_channel_is_told_about_again_if_it_breaks_again(desk: Desk) -> None:
    desk.slack.add_channel(Channel(PRIVATE, name="board", is_private=True, is_member=False))
    desk.queue(PRIVATE)
    desk.drain()
    assert desk.open_causes() == [f"not_in_channel:{PRIVATE}"]
    slack_event(desk.live, _invite(desk.slack))
    eventually(lambda: desk.open_causes() == [], "alert resolved by the fix")
    desk.drain()

    desk.slack.channels[PRIVATE].is_member = False  # someone removed the app again
    desk.queue(PRIVATE)
    desk.drain()
    assert len(desk.slack.dms(ADMIN)) == 2  # told again: it is a new breakage


@pytest.mark.parametrize("kind", ["app_uninstalled", "tokens_revoked"])
def test_uninstall_parks_waiting_deliveries_and_a_reinstall_resumes_them(desk: Desk, kind: str) -> None:
    waiting = desk.queue(ACCOUNTING, 2)
    event: dict[str, Any] = {"type": kind}
    if kind == "tokens_revoked":
        event["tokens"] = {"bot": [BOT_USER_ID]}
    assert slack_event(desk.live, event).status_code == 200
    eventually(lambda: desk.states(waiting) == [DeliveryState.PARKED] * 2, "waiting deliveries parked")
    assert desk.workspace().suspended_reason == kind
    desk.drain()
    assert desk.slack.calls_to("chat.postMessage") == []  # nothing posted while uninstalled

    assert desk.live.services.engine.resume_workspaces() == 1  # the token works: reinstalled
    desk.drain()
    assert desk.states(waiting) == [DeliveryState.DELIVERED] * 2


@pytest.mark.parametrize("kind", ["channel", "group"])
def test_an_archived_channel_parks_what_waits_and_its_unarchive_replays_it(desk: Desk, kind: str) -> None:
    waiting = desk.queue(ACCOUNTING, 2)
    elsewhere = desk.queue(SALES)
    response = slack_event(desk.live, {"type": f"{kind}_archive", "channel": ACCOUNTING, "user": ADMIN})
    eventually(lambda: desk.states(waiting) == [DeliveryState.PARKED] * 2, "waiting deliveries parked")
    desk.slack.channels[ACCOUNTING].is_archived = True
    desk.drain()
    assert response.status_code == 200
    assert desk.states(elsewhere) == [DeliveryState.DELIVERED]  # other channels go on
    assert desk.slack.calls_to("chat.postMessage") and all(
        params.get("channel") != ACCOUNTING for _m, params, _h in desk.slack.calls_to("chat.postMessage")
    )  # no attempt was wasted on the archived channel
    assert {desk.get(i).parked_reason for i in waiting} == {"is_archived"}

    desk.slack.channels[ACCOUNTING].is_archived = False
    slack_event(desk.live, {"type": f"{kind}_unarchive", "channel": ACCOUNTING, "user": ADMIN})
    eventually(lambda: desk.states(waiting) == [DeliveryState.PENDING] * 2, "parked deliveries re-queued")
    desk.drain()
    assert desk.states(waiting) == [DeliveryState.DELIVERED] * 2
