"""Per-person limits on what a slash command makes the app do in Slack.

`/freshbooks test` posts into a channel and anyone may run it, so one person may post one sample
per SAMPLE_INTERVAL. The limit is a named lease in the database (job_leases), not a counter in
memory: the web workers and every host behind a load balancer share it, and the time comes from
the injected clock.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from connector.domain.clock import Clock
from storage import leases
from storage.db import Database

SAMPLE_INTERVAL = dt.timedelta(seconds=30)
_NAME_MAX = 64  # job_leases.name


def _lease_name(team_id: str, user_id: str) -> str:
    name = f"sample:{team_id}:{user_id}"
    if len(name) <= _NAME_MAX:
        return name
    return "sample:" + hashlib.sha256(f"{team_id}:{user_id}".encode()).hexdigest()[:40]


class SampleLimit:
    def __init__(self, *, db: Database, clock: Clock, interval: dt.timedelta = SAMPLE_INTERVAL) -> None:
        self._db = db
        self._clock = clock
        self._interval = interval

    @property
    def interval(self) -> dt.timedelta:
        return self._interval

    def take(self, *, team_id: str, user_id: str) -> dt.timedelta | None:
        """None: this person may post a sample now (and the next one waits the interval); otherwise
        how long until they may."""
        now = self._clock()
        with self._db.session() as session:
            until = leases.acquire_or_held_until(
                session, name=_lease_name(team_id, user_id), owner=user_id, now=now, ttl=self._interval
            )
        return None if until is None else until - now


def wait_words(wait: dt.timedelta) -> str:
    """`25 seconds`, `1 second`, `2 minutes`: a wait as a person says it, rounded up. Pure."""
    seconds = max(1, -int(-wait.total_seconds() // 1))
    if seconds < 120:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    return f"{-(-seconds // 60)} minutes"
