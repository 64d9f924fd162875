"""Many threads of several app processes at once, on a clock the test moves: for tests of what
must happen once however many callers race for it (a token renewal, a lease)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

from tests.support.live import FakeClock

P = TypeVar("P")


def race_in_rounds(
    call: Callable[[P], object],
    processes: Sequence[P],
    *,
    rounds: int,
    clock: FakeClock,
    threads: int = 4,
    step_seconds: float = 0.25,
) -> list[BaseException]:
    """`rounds` times: `threads` threads each run `call` with one of `processes` in turn, all at
    once; then the clock moves `step_seconds`. Returns what the calls raised (none: [])."""
    errors: list[BaseException] = []

    def collected(process: P) -> None:
        try:
            call(process)
        except BaseException as exc:  # returned for the caller's assertion
            errors.append(exc)

    for _ in range(rounds):
        started = [
            threading.Thread(target=collected, args=(processes[n % len(processes)],)) for n in range(threads)
        ]
        for thread in started:
            thread.start()
        for thread in started:
            thread.join(30)
        clock.advance(seconds=step_seconds)
    return errors
