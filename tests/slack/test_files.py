"""Posting a chart with Slack's three-step upload, over real HTTP against the fake Slack: the
steps, the share that finishes after the upload answers, and every failure classified."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from connector.pipeline.deliver.errors import Outcome, Scope, classify_upload
from connector.slack.files import ALT_TEXT_MAX, Step, UploadedFile, UploadFailed, find_share, post_chart
from connector.slack.slack_tokens import web_client
from tests.support.fakes.slack import DROP, STORE_THEN_DROP, Channel, FakeSlack
from tests.support.live import FakeClock

TOKEN = "xoxb-test"


def _png(width: int = 40, height: int = 30) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (46, 125, 50)).save(out, format="PNG")
    return out.getvalue()


PNG = _png()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(dt.datetime(2027, 4, 5, 12, tzinfo=dt.UTC))


@pytest.fixture
def fake(clock: FakeClock) -> Iterator[FakeSlack]:
    with FakeSlack(clock=lambda: clock().timestamp()) as server:
        server.add_channel(Channel("C1", name="finance"))
        server.add_channel(Channel("CPUB", name="public", is_member=False))
        server.add_channel(Channel("GPRIV", name="private", is_private=True, is_member=False))
        yield server


def _post(fake: FakeSlack, channel_id: str = "C1", thread_ts: str | None = None) -> UploadedFile:
    return post_chart(
        web_client(TOKEN, fake.base_url),
        channel_id=channel_id,
        thread_ts=thread_ts,
        png=PNG,
        title="Cash flow · Mar 29 - Apr 4, 2027",
        alt_text="Chart. USD: in 1,500.50 USD, out 80.25 USD.",
    )


def _methods(fake: FakeSlack) -> list[str]:
    return [method for method, _, _ in fake.calls]


def test_three_steps_then_the_file_appears_in_the_channel_later(fake: FakeSlack, clock: FakeClock) -> None:
    uploaded = _post(fake)
    assert _methods(fake) == ["files.getUploadURLExternal", "upload", "files.completeUploadExternal"]
    [(_, asked, _)] = fake.calls_to("files.getUploadURLExternal")
    assert asked["length"] == str(len(PNG)) and asked["filename"] == "cash-flow-mar-29-apr-4-2027.png"
    assert asked["alt_txt"] == "Chart. USD: in 1,500.50 USD, out 80.25 USD."
    stored = fake.files[uploaded.file_id]
    assert stored.data == PNG and stored.title == "Cash flow · Mar 29 - Apr 4, 2027"
    # Slack answered, but the file is not in the channel yet.
    client = web_client(TOKEN, fake.base_url)
    assert find_share(client, uploaded) is None
    assert client.files_info(file=uploaded.file_id)["file"]["mimetype"] == ""
    # A message posted now lands above the chart (reference §1.4).
    posted = client.chat_postMessage(channel="C1", text="Digest")["ts"]
    clock.advance(seconds=1)
    share_ts = find_share(client, uploaded)
    assert share_ts is not None and float(share_ts) > float(posted)
    info = client.files_info(file=uploaded.file_id)["file"]
    assert info["mimetype"] == "image/png" and info["shares"]["public"]["C1"][0]["ts"] == share_ts
    [message] = [m for m in fake.channels["C1"].messages if m.get("files")]
    assert message["files"][0]["id"] == uploaded.file_id and "thread_ts" not in message


def test_in_a_thread_the_file_is_a_reply(fake: FakeSlack, clock: FakeClock) -> None:
    client = web_client(TOKEN, fake.base_url)
    parent = client.chat_postMessage(channel="C1", text="Digest")["ts"]
    uploaded = _post(fake, thread_ts=parent)
    assert uploaded.thread_ts == parent
    assert find_share(client, uploaded) is None
    clock.advance(seconds=1)
    share_ts = find_share(client, uploaded)
    assert share_ts is not None
    history = client.conversations_history(channel="C1")["messages"]
    assert [m["ts"] for m in history] == [parent]  # a thread reply, not in the channel itself
    [reply] = [m for m in fake.channels["C1"].messages if m["ts"] == share_ts]
    assert reply["thread_ts"] == parent


def test_a_public_channel_the_bot_left_is_joined_and_the_same_bytes_shared(
    fake: FakeSlack, clock: FakeClock
) -> None:
    uploaded = _post(fake, channel_id="CPUB")
    assert _methods(fake) == [
        "files.getUploadURLExternal", "upload", "files.completeUploadExternal", "conversations.join",
        "files.completeUploadExternal",
    ]  # fmt: skip
    clock.advance(seconds=1)
    assert find_share(web_client(TOKEN, fake.base_url), uploaded) is not None


def test_not_in_a_private_channel_needs_a_person(fake: FakeSlack) -> None:
    with pytest.raises(UploadFailed) as failed:
        _post(fake, channel_id="GPRIV")
    failure = failed.value
    assert (failure.step, failure.error, failure.maybe_shared) == (Step.COMPLETE, "not_in_channel", False)
    code, outcome = classify_upload(failure)
    assert (code, outcome.outcome, outcome.scope) == ("not_in_channel", Outcome.NEEDS_PERSON, Scope.CHANNEL)
    fake.process_uploads()
    assert fake.channels["GPRIV"].messages == []


def test_a_revoked_token_needs_a_reinstall_and_sends_nothing(fake: FakeSlack) -> None:
    fake.revoke_token(TOKEN)
    with pytest.raises(UploadFailed) as failed:
        _post(fake)
    code, outcome = classify_upload(failed.value)
    assert failed.value.step is Step.GET_URL
    assert (code, outcome.outcome, outcome.scope) == ("token_revoked", Outcome.NEEDS_PERSON, Scope.WORKSPACE)
    fake.valid_tokens.discard(TOKEN)
    fake.revoked_tokens.discard(TOKEN)
    with pytest.raises(UploadFailed) as failed:
        _post(fake)
    code, outcome = classify_upload(failed.value)
    assert (code, outcome.outcome, outcome.scope) == ("invalid_auth", Outcome.NEEDS_PERSON, Scope.WORKSPACE)
    assert "upload" not in _methods(fake) and fake.files == {}


@pytest.mark.parametrize("method", ["files.getUploadURLExternal", "files.completeUploadExternal"])
def test_rate_limited_says_how_long_to_wait(fake: FakeSlack, method: str) -> None:
    fake.script(method, (429, {"Retry-After": "7"}, {"ok": False, "error": "ratelimited"}))
    with pytest.raises(UploadFailed) as failed:
        _post(fake)
    failure = failed.value
    assert failure.retry_after == 7.0 and failure.step == Step(method)
    code, outcome = classify_upload(failure)
    assert (code, outcome.outcome) == ("ratelimited", Outcome.RETRY)
    assert not failure.maybe_shared


def test_byte_upload_failures_are_retried_never_in_doubt(fake: FakeSlack) -> None:
    fake.script("upload", (500, {}, "<html>upstream unavailable</html>"), (404, {}, "Not Found"), DROP)
    for expected in ("http_500", "upload_http_404", "connection_dropped"):
        with pytest.raises(UploadFailed) as failed:
            _post(fake)
        code, outcome = classify_upload(failed.value)
        assert failed.value.step is Step.UPLOAD and not failed.value.maybe_shared
        assert (code, outcome.outcome) == (expected, Outcome.RETRY)
        assert "files.completeUploadExternal" not in _methods(fake)
    # Nothing was shared, so uploading again is safe: it works now.
    assert _post(fake).file_id


def test_a_lost_completion_answer_is_in_doubt_and_the_share_can_be_found(
    fake: FakeSlack, clock: FakeClock
) -> None:
    fake.script("files.completeUploadExternal", STORE_THEN_DROP)
    started = f"{clock().timestamp():.6f}"
    with pytest.raises(UploadFailed) as failed:
        _post(fake)
    failure = failed.value
    assert (failure.step, failure.answered, failure.maybe_shared) == (Step.COMPLETE, False, True)
    code, outcome = classify_upload(failure)
    assert (code, outcome.outcome) == ("connection_dropped", Outcome.IN_DOUBT)
    assert failure.file_id is not None
    looked = UploadedFile(file_id=failure.file_id, title="", channel_id="C1", thread_ts=None)
    client = web_client(TOKEN, fake.base_url)
    assert find_share(client, looked, oldest=started) is None  # still being shared
    clock.advance(seconds=1)
    assert find_share(client, looked, oldest=started) is not None  # it did land: do not upload again


@pytest.mark.parametrize(
    ("error", "outcome", "scope"),
    [
        ("file_uploads_disabled", Outcome.NEEDS_PERSON, Scope.WORKSPACE),
        ("storage_limit_reached", Outcome.NEEDS_PERSON, Scope.WORKSPACE),
        ("posting_to_channel_denied", Outcome.NEEDS_PERSON, Scope.CHANNEL),
        ("file_not_found", Outcome.RETRY, None),
        ("internal_error", Outcome.RETRY, None),  # before the completion: nothing can be shared
    ],
)
def test_slack_refusals_classified(
    fake: FakeSlack, error: str, outcome: Outcome, scope: Scope | None
) -> None:
    fake.script("files.getUploadURLExternal", error)
    with pytest.raises(UploadFailed) as failed:
        _post(fake)
    code, classified = classify_upload(failed.value)
    assert (code, classified.outcome, classified.scope, classified.known) == (error, outcome, scope, True)


def test_internal_error_on_completion_is_in_doubt(fake: FakeSlack) -> None:
    fake.script("files.completeUploadExternal", "internal_error")
    with pytest.raises(UploadFailed) as failed:
        _post(fake)
    assert failed.value.maybe_shared
    assert classify_upload(failed.value)[1].outcome is Outcome.IN_DOUBT


def test_bad_input_is_refused_before_any_call(fake: FakeSlack) -> None:
    client = web_client(TOKEN, fake.base_url)
    with pytest.raises(ValueError, match="1000 characters"):
        post_chart(
            client, channel_id="C1", thread_ts=None, png=PNG, title="t", alt_text="x" * (ALT_TEXT_MAX + 1)
        )
    with pytest.raises(ValueError, match="PNG"):
        post_chart(client, channel_id="C1", thread_ts=None, png=b"GIF89a", title="t", alt_text="")
    assert fake.calls == []


def test_the_fake_refuses_what_slack_refuses(fake: FakeSlack) -> None:
    client = web_client(TOKEN, fake.base_url)
    with pytest.raises(Exception, match="missing_argument"):
        client.files_getUploadURLExternal(filename="a.png", length=0)
    with pytest.raises(Exception, match="alt_txt_too_large"):
        client.files_getUploadURLExternal(filename="a.png", length=3, alt_txt="x" * 1001)
    got = client.files_getUploadURLExternal(filename="a.png", length=3)
    # Completed before its bytes arrived: Slack has no such file yet.
    with pytest.raises(Exception, match="file_not_found"):
        client.files_completeUploadExternal(files=[{"id": got["file_id"]}], channel_id="C1")
    # Without a channel the file stays private: never shared anywhere.
    assert httpx.post(got["upload_url"], content=b"abc").status_code == 200
    done = client.files_completeUploadExternal(files=[{"id": got["file_id"], "title": "t"}])
    assert done["files"] == [{"id": got["file_id"], "title": "t"}] and "ts" not in done.data
    assert fake.process_uploads() == []
    assert client.files_info(file=got["file_id"])["file"]["shares"] == {}


def test_in_a_private_channel_the_bot_was_invited_to(fake: FakeSlack, clock: FakeClock) -> None:
    fake.add_channel(Channel("GIN", name="board", is_private=True))
    uploaded = _post(fake, channel_id="GIN")
    clock.advance(seconds=1)
    client = web_client(TOKEN, fake.base_url)
    share_ts = find_share(client, uploaded)
    assert share_ts is not None
    assert client.files_info(file=uploaded.file_id)["file"]["shares"] == {
        "private": {"GIN": [{"ts": share_ts}]}
    }
