"""A background thread that runs one step function whenever it is woken or its interval passes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class BackgroundLoop:
    """Runs `step` (returns how much work it did) until it finds nothing, then waits for `wake()`.

    The wake-up makes new work start at once; the idle interval is only the fallback for work
    that becomes due later (retries) or was left behind by another process.
    """

    def __init__(
        self,
        name: str,
        step: Callable[[], int],
        *,
        idle_seconds: float = 5.0,
        gather_seconds: float = 0.0,
        next_due: Callable[[], float | None] | None = None,
    ) -> None:
        self.name = name
        self._step = step
        self._idle = idle_seconds
        # After a step that found work, let more arrive before the next one: a burst of webhooks is
        # then handled in a few batches (few write transactions) rather than one by one.
        self._gather = gather_seconds
        # Seconds until work the step knows of becomes due (None: nothing known). The gather wait
        # ends then rather than at the next multiple of it: a channel's next post goes when its
        # pacing allows, not up to a gather later.
        self._next_due = next_due
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        self._wakeup.set()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            self._wakeup.clear()
            try:
                did = self._step()
                failures = 0
            except Exception:
                # The step's own error handling failed (e.g. the database is down): log, back off, go on.
                failures += 1
                log.exception("%s step failed", self.name)
                self._wakeup.wait(min(60.0, self._idle * 2**failures))
                continue
            if did == 0:
                self._wakeup.wait(self._idle)
            elif self._gather:
                self._stopping.wait(self._gather_wait())

    def _gather_wait(self) -> float:
        due = self._next_due() if self._next_due else None
        return self._gather if due is None else min(self._gather, max(0.0, due))
