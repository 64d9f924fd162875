"""Collecting the app's log records, to check that no secret or customer data is ever logged."""

from __future__ import annotations

import logging

from connector.ops.logs import JsonFormatter
from tests.support.live import (
    FB_REFRESH,
    FB_TOKEN,
    SLACK_BOT_TOKEN,
    SLACK_SIGNING_SECRET,
)

# What no log line of the app may ever contain, whatever the test does (issue #7): the fixtures'
# tokens and secrets, and customer data from the sample objects. Per-test values (verifiers,
# webhook URL tokens, grants) are added from the `live` fixture when a test uses it.
NEVER_LOGGED = {
    "FreshBooks access token": FB_TOKEN,
    "FreshBooks refresh token": FB_REFRESH,
    "FreshBooks client secret": "fb-secret",
    "Slack bot token": SLACK_BOT_TOKEN,
    "Slack signing secret": SLACK_SIGNING_SECRET,
    "client name": "Gordon Shumway",
    "business name": "Acme Bookkeeping",
}


# The test harness's own servers (werkzeug request lines carry URL tokens; production runs
# gunicorn without an access log) and the fakes are not the app.
NOT_THE_APP = ("werkzeug", "tests")


class CollectRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.split(".")[0] in NOT_THE_APP:
            return
        try:
            self.lines.append(self.format(record))
        except Exception:
            return
