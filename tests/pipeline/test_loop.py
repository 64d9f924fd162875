"""BackgroundLoop: wakes, the idle interval, the gather wait and when it ends early."""

from __future__ import annotations

import threading
import time

from connector.pipeline.loop import BackgroundLoop

DEADLINE_S = 10.0


class Steps:
    """A step that always finds work, counting its runs; `reached(n)` waits for the n-th run."""

    def __init__(self) -> None:
        self.runs = 0
        self._changed = threading.Condition()

    def __call__(self) -> int:
        with self._changed:
            self.runs += 1
            self._changed.notify_all()
        return 1

    def reached(self, runs: int) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.runs >= runs, DEADLINE_S)


def test_known_due_work_ends_the_gather_wait_early() -> None:
    steps = Steps()
    # A gather of an hour: only the hint (due now) can bring the step back within the deadline.
    loop = BackgroundLoop("hinted", steps, idle_seconds=3600, gather_seconds=3600, next_due=lambda: 0.0)
    loop.start()
    try:
        assert steps.reached(3)
    finally:
        loop.stop()


def test_the_gather_wait_is_never_longer_than_configured() -> None:
    steps = Steps()
    # Work due in an hour must not hold the loop longer than its gather (other processes' posts,
    # new work): the step comes back after the short gather.
    loop = BackgroundLoop("far", steps, idle_seconds=3600, gather_seconds=0.01, next_due=lambda: 3600.0)
    loop.start()
    try:
        assert steps.reached(3)
    finally:
        loop.stop()


def test_without_a_hint_the_loop_gathers_for_its_full_wait() -> None:
    steps = Steps()
    loop = BackgroundLoop("plain", steps, idle_seconds=3600, gather_seconds=3600)
    loop.start()
    try:
        assert steps.reached(1)
        started = time.monotonic()
        loop.stop(timeout=DEADLINE_S)  # stopping ends the gather wait
        assert time.monotonic() - started < DEADLINE_S
        assert steps.runs == 1, "the step ran again without being due or woken"
    finally:
        loop.stop()
