"""Answering a slash command in time, however slow the work behind it.

Slack gives the HTTP answer 3 s from the moment it sends the command, and that includes the trip
over the internet both ways; so a command acknowledges within ACK_BUDGET_SECONDS of arriving on
this server. The work (a permission check through users.info, conversations.info, a post) runs on
a pool; the listener waits for its answer until the budget is spent, then acknowledges with a
short "working on it" line, and the work's answer goes to the command's response_url instead.
One answer in the usual case, never a timeout when Slack or the database is slow.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from connector.telemetry import metrics

log = logging.getLogger(__name__)

# Work allowed before the command must be acknowledged, from its arrival on this server. Slack's
# 3 s include the round trip across the internet; a second of ours leaves the rest to the network
# and the margin covers a busy machine (the acknowledgement itself is an HTTP answer to write).
ACK_BUDGET_SECONDS = 0.75
# Where the Slack route stamps when a request arrived (time.monotonic()), in Bolt's context.
ARRIVED = "fbslack_arrived"

FAILED_TEXT = "Something went wrong before this finished. Try again in a moment."


class Answer(Protocol):
    """What a command handler answers through: Bolt's `ack`, or a DeferredAck standing in for it."""

    def __call__(
        self,
        text: str | None = None,
        blocks: list[dict[str, Any]] | None = None,
        response_type: str | None = None,
    ) -> Any: ...


class DeferredAck:
    """The `ack` a handler is given. Called in time, it is Bolt's ack; called after `expire()`
    acknowledged the command with `meanwhile`, its answer goes to the response_url instead."""

    def __init__(
        self,
        ack: Callable[..., Any],
        respond: Callable[..., Any],
        *,
        arrived: float,
        meanwhile: str,
    ) -> None:
        self._ack = ack
        self._respond = respond
        self._arrived = arrived
        self.meanwhile = meanwhile  # handlers say what they are doing once they know
        self._lock = threading.Lock()
        self._acknowledged = threading.Event()
        self._late = False

    @property
    def late(self) -> bool:
        return self._late

    def __call__(
        self,
        text: str | None = None,
        blocks: list[dict[str, Any]] | None = None,
        response_type: str | None = None,
    ) -> None:
        with self._lock:
            if not self._acknowledged.is_set():
                self._acknowledge(text=text, blocks=blocks, response_type=response_type)
                return
            late = self._late
        if late and (text or blocks):
            self._respond(text=text or "", blocks=blocks, response_type="ephemeral")

    def wait(self, deadline: float) -> None:
        """Block until the handler acknowledged, or until `deadline` (monotonic), then acknowledge
        with `meanwhile` so Slack's answer is never late."""
        if self._acknowledged.wait(timeout=max(0.0, deadline - time.monotonic())):
            return
        with self._lock:
            if self._acknowledged.is_set():
                return
            self._late = True
            metrics.SLASH_COMMANDS_HANDED_OVER.inc()
            self._acknowledge(text=self.meanwhile, blocks=None, response_type="ephemeral")

    def _acknowledge(self, **answer: Any) -> None:
        # Under the lock: exactly one call to Bolt's ack, whoever gets there first.
        # Observed first: once Bolt holds the answer the response may be on its way.
        metrics.SLASH_COMMAND_ACK_SECONDS.observe(time.monotonic() - self._arrived)
        self._ack(**{key: value for key, value in answer.items() if value is not None})
        self._acknowledged.set()


def run_in_time(
    pool: Callable[[Callable[[], None]], Any],
    work: Callable[[DeferredAck], None],
    answer: DeferredAck,
    *,
    deadline: float,
) -> None:
    """Run `work(answer)` on `pool` and return once the command is acknowledged (by the work, or
    with `answer.meanwhile` at `deadline`); the work goes on after that if it must."""

    def guarded() -> None:
        try:
            work(answer)
        except Exception:
            log.exception("slash command failed")
            answer(response_type="ephemeral", text=FAILED_TEXT)

    pool(guarded)
    answer.wait(deadline)
