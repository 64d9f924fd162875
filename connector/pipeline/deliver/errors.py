"""Every chat.postMessage failure, classified once (reference slack.md §2). Pure data and lookups.

RETRY: Slack refused the request; try again later. IN_DOUBT: the post may have happened; look
in the channel before posting again. NEEDS_PERSON: a human must fix the channel or the install;
park the delivery and replay it when fixed. BUG: our request is wrong; never retry blindly.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from connector.slack.files import Step, UploadFailed


class Outcome(enum.StrEnum):
    RETRY = "retry"
    IN_DOUBT = "in_doubt"
    NEEDS_PERSON = "needs_person"
    BUG = "bug"


class Scope(enum.StrEnum):
    """What a person-fixable problem is about: one channel, or the whole workspace install."""

    CHANNEL = "channel"
    WORKSPACE = "workspace"


@dataclass(frozen=True, slots=True)
class Classification:
    outcome: Outcome
    scope: Scope | None = None
    known: bool = True


_RETRY = ("ratelimited", "rate_limited", "service_unavailable", "request_timeout", "team_added_to_org",
          "org_login_required", "http_500", "http_502", "http_503", "http_504")  # fmt: skip
_IN_DOUBT = ("internal_error", "fatal_error", "timeout", "connection_dropped")
_CHANNEL = ("channel_not_found", "is_archived", "not_in_channel", "restricted_action",
            "restricted_action_read_only_channel", "restricted_action_thread_only_channel",
            "restricted_action_non_threadable_channel", "ekm_access_denied", "team_access_not_granted",
            "slack_connect_canvas_sharing_blocked", "slack_connect_file_link_sharing_blocked",
            "slack_connect_lists_sharing_blocked", "cannot_reply_to_message", "messages_tab_disabled",
            "team_not_found", "message_limit_exceeded")  # fmt: skip
_WORKSPACE = ("invalid_auth", "not_authed", "account_inactive", "token_revoked", "missing_scope",
              "no_permission", "access_denied", "accesslimited", "app_access_restricted",
              "enterprise_is_restricted", "not_allowed_token_type", "two_factor_setup_required",
              "token_expired")  # fmt: skip
_BUG = ("invalid_blocks", "invalid_blocks_format", "msg_blocks_too_long", "no_text", "too_many_attachments",
        "too_many_contact_cards", "attachment_payload_limit_exceeded", "invalid_metadata_format",
        "invalid_metadata_schema", "metadata_too_large", "metadata_must_be_sent_from_app",
        "markdown_text_conflict", "invalid_arguments", "invalid_arg_name", "invalid_array_arg",
        "invalid_charset", "invalid_form_data", "invalid_post_type", "missing_post_type",
        "as_user_not_supported", "is_bot", "deprecated_endpoint", "method_deprecated", "missing_file_data",
        "msg_too_long")  # fmt: skip

# Uploading a file (files.getUploadURLExternal, files.completeUploadExternal; reference
# slack-files-and-scheduling.md §1.1 and §1.3); their other codes are chat.postMessage's too.
_FILES_RETRY = ("file_not_found",)  # the upload did not land or expired: upload it again
_FILES_CHANNEL = ("invalid_channel", "posting_to_channel_denied")
_FILES_WORKSPACE = ("file_uploads_disabled", "file_uploads_except_images_disabled", "file_type_not_allowed",
                    "file_upload_size_restricted", "storage_limit_reached")  # fmt: skip
_FILES_BUG = ("missing_argument", "alt_txt_too_large", "channels_limit_exceeded")

ERROR_TABLE: dict[str, Classification] = {
    **{code: Classification(Outcome.RETRY) for code in _RETRY},
    **{code: Classification(Outcome.IN_DOUBT) for code in _IN_DOUBT},
    **{code: Classification(Outcome.NEEDS_PERSON, Scope.CHANNEL) for code in _CHANNEL},
    **{code: Classification(Outcome.NEEDS_PERSON, Scope.WORKSPACE) for code in _WORKSPACE},
    **{code: Classification(Outcome.BUG) for code in _BUG},
    **{code: Classification(Outcome.RETRY) for code in _FILES_RETRY},
    **{code: Classification(Outcome.NEEDS_PERSON, Scope.CHANNEL) for code in _FILES_CHANNEL},
    **{code: Classification(Outcome.NEEDS_PERSON, Scope.WORKSPACE) for code in _FILES_WORKSPACE},
    **{code: Classification(Outcome.BUG) for code in _FILES_BUG},
}

# An unknown code could be anything; a person looks at it rather than the engine guessing.
UNKNOWN = Classification(Outcome.NEEDS_PERSON, Scope.CHANNEL, known=False)


def classify(code: str) -> Classification:
    return ERROR_TABLE.get(code, UNKNOWN)


def http_status_code(status: int) -> str | None:
    """A Slack answer without an `ok:false` body is named by its HTTP status."""
    if status == 429:
        return "ratelimited"
    if status >= 500:
        return f"http_{status}" if f"http_{status}" in ERROR_TABLE else "http_500"
    return None


MAX_CODE_LENGTH = 64  # the width of the columns that record it


def error_code(status: int, error: str | None) -> str:
    """The code to classify for a failed Slack call: its HTTP status and the body's `error`.

    A 429 is a rate limit whatever the body says. A 5xx whose body is not a Slack error (a proxy's
    HTML page, which slack_sdk turns into a long "non-JSON" message) is named by its status, so it
    is retried rather than parked as unknown.
    """
    if status == 429:
        return error if error in ("ratelimited", "rate_limited") else "ratelimited"
    if status >= 500 and error not in ERROR_TABLE:
        return http_status_code(status) or "http_500"
    return (error or http_status_code(status) or f"http_{status}")[:MAX_CODE_LENGTH]


def classify_upload(failure: UploadFailed) -> tuple[str, Classification]:
    """The code and class of a failed file upload (`connector.slack.files`), as for a post, except
    that a failure before the file could reach the channel is never in doubt: upload it again."""
    if failure.step is Step.UPLOAD and failure.answered and failure.status < 500:
        return f"upload_http_{failure.status}", Classification(Outcome.RETRY)  # a fresh upload URL next time
    code = failure.error or "connection_dropped"
    if failure.answered:
        code = error_code(failure.status, failure.error)
    classification = classify(code)
    if classification.outcome is Outcome.IN_DOUBT and not failure.maybe_shared:
        return code, Classification(Outcome.RETRY)
    return code, classification


HUMAN_REASONS: dict[str, str] = {
    "channel_not_found": "the channel no longer exists, or it is private and the app is not in it",
    "is_archived": "the channel is archived",
    "not_in_channel": "the app is not a member of this private channel: invite it with /invite",
    "invalid_auth": "the app's Slack token is no longer valid: reinstall the app",
    "token_revoked": "the app's Slack token was revoked: reinstall the app",
    "account_inactive": "the app's Slack token belongs to a deactivated account: reinstall the app",
    "missing_scope": "the app lacks a permission it needs: reinstall it from the manifest",
    "message_limit_exceeded": "the workspace reached its message limit (free plan)",
    "file_uploads_disabled": "the workspace does not allow file uploads: an admin can allow them",
    "storage_limit_reached": "the workspace's file storage is full (free plan)",
    "posting_to_channel_denied": "the app may not share files in this channel",
}


def human_reason(code: str) -> str:
    return HUMAN_REASONS.get(code, f"Slack answered `{code}`")
