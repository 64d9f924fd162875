"""When an expiring OAuth token is refreshed, and how long one refresh may hold the others up.

FreshBooks access tokens and rotated Slack bot tokens follow the same rules: the refresh token is
single-use, so one process at a time refreshes, under a lease on the row (compare-and-swap). The
lease must outlast the refresh call, or a second process could spend the same refresh token
while the first one's call is still going: so the call has a hard total deadline (`within`) and
the lease is that deadline plus the time to store the new pair. A process that dies mid-refresh
holds the others up for one lease and no longer; waiters wait that long, then take over.

Pure timing rules and one threading helper: no clock is read here but time.monotonic (durations).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, wait
from typing import TypeVar

# How long before its expiry a token is refreshed: ten minutes for 12-hour tokens (FreshBooks',
# Slack's), but never more than a quarter of the token's life, or a short-lived token would be
# refreshed on every call (with 4-second tokens, every call would wait for a refresh another
# call started).
REFRESH_MARGIN = dt.timedelta(minutes=10)
REFRESH_FRACTION = 4

# A refresh call is over, answered or given up, this many seconds after the lease was taken
# (both services answer in well under a second; HTTP clients bound each phase, not the whole) ...
REFRESH_DEADLINE = 10.0
# ... and its new pair is committed within this much more (one short write transaction).
STORE_SLACK = 5.0
# So the lease outlasts the refresh: nobody else spends the same refresh token meanwhile, and a
# process killed mid-refresh blocks refreshes for at most this long (it was 60 s, longer than the
# 30 s in which issue 12 wants events delivered across a SIGKILL).
LEASE = dt.timedelta(seconds=REFRESH_DEADLINE + STORE_SLACK)
# A caller finding someone else's lease waits for that lease to end (then takes over), and for
# one more if another waiter took over first: only past that is something wrong (clocks apart).
WAIT_LIMIT = 2 * LEASE
WAIT_STEP = 0.05


def refresh_margin(issued_at: dt.datetime | None, expires_at: dt.datetime | None) -> dt.timedelta:
    """How long before `expires_at` the token is due for a refresh. Pure.

    Unknown lifetime (no issue time): the default margin, so the worst case is an early refresh,
    after which the lifetime is known.
    """
    if issued_at is None or expires_at is None or expires_at <= issued_at:
        return REFRESH_MARGIN
    return min(REFRESH_MARGIN, (expires_at - issued_at) / REFRESH_FRACTION)


def is_due(expires_at: dt.datetime | None, issued_at: dt.datetime | None, now: dt.datetime) -> bool:
    """Whether a token expiring at `expires_at` should be refreshed at `now`. Pure."""
    if expires_at is None:
        return False
    return expires_at - refresh_margin(issued_at, expires_at) <= now


def wait_rounds(wait_step: float = WAIT_STEP) -> int:
    """How many polls a waiter makes at most. The clock ends a wait (WAIT_LIMIT); the rounds only
    stop a clock that never moves (a test's): with real time each round lasts at least a step."""
    return int(WAIT_LIMIT.total_seconds() / wait_step) + 1


class DeadlinePassed(TimeoutError):
    """`within` stopped waiting: the call may still be running, and may still take effect."""


T = TypeVar("T")


def within(seconds: float, call: Callable[[float], T], *, name: str = "deadline") -> T:
    """`call(deadline)`'s result, or DeadlinePassed once `seconds` have passed, whatever the
    network does meanwhile.

    HTTP clients (httpx, urllib) bound each phase of a request (connect, every read, every
    write), not the whole: an answer trickling in a byte at a time, or a DNS lookup (never
    bounded), can outlast any timeout. So the call runs on a helper thread and the caller stops
    waiting at the deadline. `call` gets the deadline (time.monotonic()) for its own timeouts, so
    the helper ends soon after in all but a trickle; whatever it returns late is dropped.
    """
    deadline = time.monotonic() + seconds
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(call(deadline))
        except BaseException as exc:  # handed to the caller, who re-raises it
            future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    # wait(), not result(timeout=): the call's own TimeoutError (a socket timeout) is its answer.
    done, _ = wait([future], timeout=max(0.0, seconds))
    if not done:
        raise DeadlinePassed(f"no answer within {seconds:.1f} s")
    return future.result()
