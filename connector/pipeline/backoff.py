"""Retry schedules. Pure: the attempt number and a random draw in, a delay out."""

from __future__ import annotations

import datetime as dt

# About a day in all; after the last step the item is parked or marked failed, never dropped.
SCHEDULE = (
    dt.timedelta(seconds=5),
    dt.timedelta(seconds=30),
    dt.timedelta(minutes=2),
    dt.timedelta(minutes=10),
    dt.timedelta(minutes=30),
    dt.timedelta(hours=1),
    dt.timedelta(hours=3),
    dt.timedelta(hours=6),
    dt.timedelta(hours=12),
)


def retry_delay(attempts: int, jitter: float = 0.5) -> dt.timedelta | None:
    """Delay before the next try after `attempts` tries (None: give up).

    `jitter` in [0, 1) spreads retries over 75%..125% of the step, so many items that failed
    together (a Slack outage) do not all come back in the same second.
    """
    if attempts < 1 or attempts > len(SCHEDULE):
        return None
    return SCHEDULE[attempts - 1] * (0.75 + 0.5 * jitter)
