"""The digest's chart, drawn and shared in Slack: the one call the sending code makes.

Failures are `connector.slack.files.UploadFailed`; `connector.pipeline.deliver.errors.classify_upload`
says what to do about one (retry, look for the share first, or tell a person).
"""

from __future__ import annotations

from slack_sdk import WebClient

from connector.features.digest.chart import alt_text, chart_for, chart_png
from connector.features.digest.figures import Digest, DigestInputs
from connector.slack.files import UploadedFile, post_chart


def share_chart(
    client: WebClient, *, channel_id: str, thread_ts: str | None, digest: Digest, inputs: DigestInputs
) -> UploadedFile | None:
    """Draw the digest's chart and upload it to the channel (or the thread of `thread_ts`).

    None when there is nothing to draw (no cash moved and nothing is owed): no empty picture.
    The file's message appears in Slack shortly after this returns (`files.find_share`).
    """
    drawn = chart_for(digest, inputs)
    if drawn.empty:
        return None
    return post_chart(
        client,
        channel_id=channel_id,
        thread_ts=thread_ts,
        png=chart_png(drawn),
        title=drawn.title,
        alt_text=alt_text(drawn),
    )
