"""The stage contract, and the order of the background stages, declared once.

One webhook's way: ingest (connector.pipeline.ingest, on the request: verify, parse, store, answer)
-> enrich (connector.pipeline.enrich: fetch the object, record the events once) -> route
(connector.pipeline.route: rules to deliveries; its hook connector.pipeline.index makes each event
findable by `/freshbooks audit`) -> render and deliver (connector.pipeline.render and .deliver, in
the delivery loop, paced per channel). The inbox loop walks `background_stages` in order, the way
bolt-python's App.dispatch walks its middleware list.

A stage handler answers with `Processed`, or raises `RetryLater` or `PermanentFailure`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from storage.inbox import InboxItem
from storage.models import InboxState


class RetryLater(Exception):
    """Raised by a stage when the item should be tried again later (the message is logged)."""

    def __init__(self, message: str, *, not_before: dt.datetime | None = None) -> None:
        super().__init__(message)
        self.not_before = not_before


class PermanentFailure(Exception):
    """Raised by a stage when retrying cannot help; the item is marked failed for a person to look at."""


@dataclass(frozen=True, slots=True)
class Processed:
    state: InboxState
    event_id: int | None = None
    note: str | None = None  # why a row was ignored, kept on the row for people looking later


Handler = Callable[[InboxItem], Processed]


@dataclass(frozen=True, slots=True)
class Stage:
    name: str
    run_once: Callable[[], int]  # one batch; returns how much it did
    then: Callable[[], None] | None = None  # woken when this stage did something: the next loop


def background_stages(
    *, enrich: Callable[[], int], route: Callable[[], int], deliver: Callable[[], None]
) -> list[Stage]:
    """The stages the inbox loop runs, in the data's order. Ingest runs before them, on the request
    path; render and deliver after them, in the delivery loop that `deliver` wakes."""
    return [
        Stage("enrich", enrich),  # inbox rows -> recorded events
        Stage("route", route, then=deliver),  # recorded events -> deliveries (and the audit index)
    ]


def run_stages(stages: Sequence[Stage]) -> int:
    """One pass over `stages` in order. Returns what the first stage processed: the loop runs again
    at once while there is more of it."""
    processed = 0
    for position, stage in enumerate(stages):
        done = stage.run_once()
        if position == 0:
            processed = done
        if done and stage.then is not None:
            stage.then()
    return processed
