"""Posting an image to a channel with Slack's external upload: three steps (reference
slack-files-and-scheduling.md §1). `files.upload` is gone (sunset 2025-11-12).

1. `files.getUploadURLExternal(filename, length, alt_txt)` gives an upload URL and the file's id;
2. the bytes are POSTed to that URL (no token: the URL is the credential, so it is never logged);
3. `files.completeUploadExternal(files=[{id, title}], channel_id, thread_ts)` shares the file.

Slack finishes sharing after step 3 answers (security scans): its answer has no message `ts`, the
file message appears in the channel later, and a message posted right after can land above it.
`find_share` looks for the file's message once it is there.

A failure is raised as `UploadFailed`, naming its step: before step 3 nothing can have reached
the channel, so the whole upload may simply be done again; a step 3 whose answer was lost may
have shared the file (`maybe_shared`), so look (`find_share`) before uploading again.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Any

import httpx
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError

log = logging.getLogger(__name__)

ALT_TEXT_MAX = 1000  # files.getUploadURLExternal's alt_txt: alt_txt_too_large beyond
TITLE_MAX = 250  # not documented for uploads; a longer title is cut rather than refused
HISTORY_PAGES = 3  # pages of 100 messages find_share reads, newest first
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (OSError, httpx.TransportError, SlackRequestError)


class Step(enum.StrEnum):
    GET_URL = "files.getUploadURLExternal"
    UPLOAD = "upload"
    COMPLETE = "files.completeUploadExternal"


@dataclass(frozen=True, slots=True)
class UploadedFile:
    """A file Slack accepted and is sharing; its message appears in the channel later."""

    file_id: str
    title: str
    channel_id: str
    thread_ts: str | None


class UploadFailed(Exception):
    """One step of an upload failed. `error` is Slack's code (or None: see `status`), `status` the
    HTTP status (0: no answer), `retry_after` Slack's Retry-After in seconds on a 429."""

    def __init__(
        self,
        step: Step,
        *,
        status: int,
        error: str | None,
        retry_after: float | None = None,
        file_id: str | None = None,
        answered: bool = True,
    ) -> None:
        super().__init__(f"{step}: {error or f'HTTP {status}'}")
        self.step = step
        self.status = status
        self.error = error
        self.retry_after = retry_after
        self.file_id = file_id
        self.answered = answered  # False: the connection failed, so the call may or may not have happened

    @property
    def maybe_shared(self) -> bool:
        """Whether the file may be in the channel anyway: only a completion that went unanswered,
        or that Slack says failed on its side (internal_error, fatal_error), can have shared it."""
        if self.step is not Step.COMPLETE:
            return False
        return not self.answered or self.error in ("internal_error", "fatal_error")


def _retry_after(exc: SlackApiError) -> float | None:
    if int(exc.response.status_code) != 429:
        return None
    try:
        return max(0.0, float(exc.response.headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0


def _refused(step: Step, exc: SlackApiError, file_id: str | None = None) -> UploadFailed:
    data = exc.response.data
    error = data.get("error") if isinstance(data, dict) else None
    return UploadFailed(
        step,
        status=int(exc.response.status_code),
        error=str(error) if error else None,
        retry_after=_retry_after(exc),
        file_id=file_id,
    )


def _unanswered(step: Step, exc: BaseException, file_id: str | None = None) -> UploadFailed:
    timed_out = isinstance(exc, (TimeoutError, httpx.TimeoutException))
    return UploadFailed(
        step,
        status=0,
        error="timeout" if timed_out else "connection_dropped",
        file_id=file_id,
        answered=False,
    )


def _upload_url(client: WebClient, *, filename: str, data: bytes, alt_text: str) -> tuple[str, str]:
    try:
        answer = client.files_getUploadURLExternal(filename=filename, length=len(data), alt_txt=alt_text)
    except SlackApiError as exc:
        raise _refused(Step.GET_URL, exc) from exc
    except CONNECTION_ERRORS as exc:
        raise _unanswered(Step.GET_URL, exc) from exc
    return str(answer["upload_url"]), str(answer["file_id"])


def _send_bytes(url: str, data: bytes, *, file_id: str, timeout: float) -> None:
    try:
        answer = httpx.post(
            url, content=data, headers={"Content-Type": "application/octet-stream"}, timeout=timeout
        )
    except httpx.TransportError as exc:
        raise _unanswered(Step.UPLOAD, exc, file_id) from exc
    if answer.status_code != 200:
        # Never the URL in a message or log: it is the upload's only credential.
        raise UploadFailed(Step.UPLOAD, status=answer.status_code, error=None, file_id=file_id)


def _complete(
    client: WebClient, *, file_id: str, title: str, channel_id: str, thread_ts: str | None
) -> dict[str, Any]:
    try:
        answer = client.files_completeUploadExternal(
            files=[{"id": file_id, "title": title}], channel_id=channel_id, thread_ts=thread_ts
        )
    except SlackApiError as exc:
        raise _refused(Step.COMPLETE, exc, file_id) from exc
    except CONNECTION_ERRORS as exc:
        raise _unanswered(Step.COMPLETE, exc, file_id) from exc
    return dict(answer.data) if isinstance(answer.data, dict) else {}


def _join(client: WebClient, channel_id: str) -> bool:
    """Join a public channel the bot is not in (channels:join); a private one needs /invite."""
    try:
        client.conversations_join(channel=channel_id)
    except SlackApiError:
        return False
    except CONNECTION_ERRORS:
        return False
    return True


def post_file(
    client: WebClient,
    *,
    channel_id: str,
    data: bytes,
    filename: str,
    title: str,
    alt_text: str,
    thread_ts: str | None = None,
) -> UploadedFile:
    """Upload `data` and share it in `channel_id` (in the thread of `thread_ts` when given).

    Returns when Slack accepted the file; its message appears in the channel a little later.
    A public channel the bot has left is joined once; any other failure raises UploadFailed.
    """
    if not data:
        raise ValueError("an upload needs at least one byte")
    if len(alt_text) > ALT_TEXT_MAX:
        raise ValueError(f"alt text is limited to {ALT_TEXT_MAX} characters")
    title = title[:TITLE_MAX]
    url, file_id = _upload_url(client, filename=filename, data=data, alt_text=alt_text)
    _send_bytes(url, data, file_id=file_id, timeout=float(client.timeout))
    try:
        _complete(client, file_id=file_id, title=title, channel_id=channel_id, thread_ts=thread_ts)
    except UploadFailed as failure:
        # The bytes are with Slack already: after joining, the same file is shared, not sent again.
        if failure.error != "not_in_channel" or not _join(client, channel_id):
            raise
        _complete(client, file_id=file_id, title=title, channel_id=channel_id, thread_ts=thread_ts)
    log.info("file %s accepted for %s; Slack shares it shortly", file_id, channel_id)
    return UploadedFile(file_id=file_id, title=title, channel_id=channel_id, thread_ts=thread_ts)


def post_chart(
    client: WebClient,
    *,
    channel_id: str,
    thread_ts: str | None,
    png: bytes,
    title: str,
    alt_text: str,
) -> UploadedFile:
    """A PNG chart in a channel or a thread: `post_file` with a .png name from the title."""
    if not png.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError("a chart must be a PNG")
    stem = "".join(c if c.isalnum() else "-" for c in title.lower()).strip("-")
    filename = "-".join(part for part in stem.split("-") if part)[:80] or "chart"
    return post_file(
        client,
        channel_id=channel_id,
        data=png,
        filename=f"{filename}.png",
        title=title,
        alt_text=alt_text,
        thread_ts=thread_ts,
    )


def _has_file(message: dict[str, Any], file_id: str) -> bool:
    return any(isinstance(f, dict) and f.get("id") == file_id for f in message.get("files") or ())


def find_share(client: WebClient, uploaded: UploadedFile, *, oldest: str = "0") -> str | None:
    """The `ts` of the message that shows the uploaded file, or None while Slack is still sharing
    it (or never will). Reads the thread, or the channel's newest messages since `oldest`
    (channels:history and groups:history, which the app has; files.info would need files:read)."""
    cursor: str | None = None
    for _ in range(HISTORY_PAGES):
        if uploaded.thread_ts is not None:
            page = client.conversations_replies(
                channel=uploaded.channel_id, ts=uploaded.thread_ts, limit=100, cursor=cursor
            )
        else:
            page = client.conversations_history(
                channel=uploaded.channel_id, oldest=oldest, limit=100, cursor=cursor
            )
        for message in page.get("messages") or ():
            if isinstance(message, dict) and _has_file(message, uploaded.file_id):
                return str(message["ts"])
        cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
        if not cursor:
            return None
    return None
