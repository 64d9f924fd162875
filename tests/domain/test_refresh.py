"""The refresh rules every expiring token follows (FreshBooks and Slack): margin, deadline, lease."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest

from connector.domain.refresh import (
    LEASE,
    REFRESH_DEADLINE,
    STORE_SLACK,
    WAIT_LIMIT,
    WAIT_STEP,
    DeadlinePassed,
    is_due,
    refresh_margin,
    wait_rounds,
    within,
)


def test_the_refresh_margin_scales_with_the_tokens_lifetime() -> None:
    issued = dt.datetime(2028, 2, 29, 23, 59, tzinfo=dt.UTC)
    twelve_hours, four_seconds = issued + dt.timedelta(hours=12), issued + dt.timedelta(seconds=4)
    assert refresh_margin(issued, twelve_hours) == dt.timedelta(minutes=10)
    assert refresh_margin(issued, four_seconds) == dt.timedelta(seconds=1)
    assert refresh_margin(None, four_seconds) == dt.timedelta(minutes=10)  # unknown: the default
    assert refresh_margin(four_seconds, issued) == dt.timedelta(minutes=10)  # nonsense: the default
    assert not is_due(four_seconds, issued, issued + dt.timedelta(seconds=2.9))
    assert is_due(four_seconds, issued, issued + dt.timedelta(seconds=3))
    assert not is_due(None, None, issued)  # a token that never expires


def test_the_lease_outlasts_the_refresh_deadline_and_a_dead_holder_costs_under_30_s() -> None:
    """The lease covers the refresh call's hard deadline and the store after it, so no second
    process spends the same single-use refresh token meanwhile; and it is short enough that a
    holder killed mid-refresh leaves room in issue 12's 30 s for the events to be delivered."""
    lease = LEASE.total_seconds()
    assert lease >= REFRESH_DEADLINE + STORE_SLACK
    assert STORE_SLACK >= 2.0  # one short write transaction, on a busy machine
    assert lease <= 15
    assert WAIT_LIMIT >= 2 * LEASE  # a waiter outwaits the dead holder's lease and a taker-over's


def test_a_waiter_with_a_clock_that_never_moves_still_stops() -> None:
    assert wait_rounds() * WAIT_STEP >= WAIT_LIMIT.total_seconds()


def test_within_answers_with_the_calls_result_or_its_own_error() -> None:
    assert within(5.0, lambda deadline: deadline > time.monotonic()) is True
    with pytest.raises(ValueError, match="bad answer"):
        within(5.0, lambda _deadline: (_ for _ in ()).throw(ValueError("bad answer")))
    # A socket timeout inside the call is the call's answer, not the deadline passing.
    with pytest.raises(TimeoutError) as info:
        within(5.0, lambda _deadline: (_ for _ in ()).throw(TimeoutError("timed out")))
    assert not isinstance(info.value, DeadlinePassed)


def test_within_stops_waiting_at_the_deadline_whatever_the_call_does() -> None:
    never = threading.Event()
    began = time.monotonic()
    with pytest.raises(DeadlinePassed, match=r"no answer within 0\.3 s"):
        within(0.3, lambda _deadline: never.wait(30))
    assert 0.3 <= time.monotonic() - began < 3.0
    never.set()
