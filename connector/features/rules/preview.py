"""Rule preview: what a rule would have posted over the last 30 days, from the recorded events.

`evaluate` is pure (a rule and parsed events in, counts and examples out) and uses the very matching
the router uses (connector.features.rules.syntax), so a preview cannot disagree with what the rule will do.
`PreviewService` loads the events, bounded: at most SCAN_CAP of the newest, only those whose name
the rule can match, so a busy workspace costs a bounded number of decryptions.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from connector.domain.clock import Clock
from connector.domain.events import ALL_EVENT_NAMES
from connector.domain.money import Money
from connector.domain.rules import Rule
from connector.freshbooks.models import FreshBooksObject, parse_stored
from connector.pipeline.route.matching import (
    RoutableEvent,
    facts_of,
    pattern_matches,
    rule_matches,
)
from storage import connections, events, outbox
from storage.crypto import Cipher
from storage.db import Database

WINDOW_DAYS = 30
SCAN_CAP = 5000
EXAMPLES = 3


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    event_id: int
    at: dt.datetime  # when the connector recorded it
    facts: RoutableEvent


@dataclass(frozen=True, slots=True)
class Example:
    at: dt.datetime
    event_name: str
    counterparty: str | None
    amount: Money | None


@dataclass(frozen=True, slots=True)
class Preview:
    channel_id: str
    days: int
    matched: int  # messages the rule would have posted (one per matching event)
    capped: bool  # the scan stopped at its cap: `matched` is a lower bound ("at least")
    scanned: int
    oldest_scanned: dt.datetime | None  # how far back the scan reached (matters when capped)
    by_event: tuple[tuple[str, int], ...]  # matched count per event name, most first
    examples: tuple[Example, ...]  # the newest matches
    already_posted: int  # matched events that were already posted to that channel


def event_names_for(rule: Rule) -> tuple[str, ...]:
    """Every event name one of the rule's patterns matches (the scan reads only these)."""
    return tuple(name for name in ALL_EVENT_NAMES if any(pattern_matches(p, name) for p in rule.patterns))


def matching(rule: Rule, recorded: Iterable[RecordedEvent]) -> list[RecordedEvent]:
    """The events `rule` sends to its channel, as if it were active (a paused rule is previewed too)."""
    active = dataclasses.replace(rule, paused=False)
    return [event for event in recorded if rule_matches(active, event.facts)]


def evaluate(
    rule: Rule,
    recorded: Iterable[RecordedEvent],
    *,
    delivered: Collection[int] = (),
    capped: bool = False,
    days: int = WINDOW_DAYS,
    examples: int = EXAMPLES,
) -> Preview:
    """Match `rule` (as if active) against `recorded`, newest first; `delivered` are the ids of events
    already posted to the rule's channel."""
    events_seen = list(recorded)
    matched = matching(rule, events_seen)
    counts = Counter(event.facts.name for event in matched)
    delivered_ids = set(delivered)
    return Preview(
        channel_id=rule.channel_id,
        days=days,
        matched=len(matched),
        capped=capped,
        scanned=len(events_seen),
        oldest_scanned=min((e.at for e in events_seen), default=None),
        by_event=tuple(sorted(counts.items(), key=lambda item: (-item[1], item[0]))),
        examples=tuple(
            Example(
                at=e.at, event_name=e.facts.name, counterparty=e.facts.counterparty, amount=e.facts.amount
            )
            for e in sorted(matched, key=lambda e: e.at, reverse=True)[:examples]
        ),
        already_posted=sum(1 for e in matched if e.event_id in delivered_ids),
    )


class PreviewService:
    def __init__(self, *, db: Database, cipher: Cipher, clock: Clock, cap: int = SCAN_CAP) -> None:
        self._db = db
        self._cipher = cipher
        self._clock = clock
        self._cap = cap

    def preview(self, *, team_id: str, rule: Rule) -> Preview:
        """The preview of `rule` over this workspace's events of the last WINDOW_DAYS days."""
        since = self._clock() - dt.timedelta(days=WINDOW_DAYS)
        names = event_names_for(rule)
        with self._db.read() as session:
            workspace = connections.workspace_of_team(session, team_id)
            if workspace is None or not names:
                return evaluate(rule, [])
            rows = events.recent_of_workspace(
                session, workspace_id=workspace, since=since, names=names, limit=self._cap + 1
            )
            capped = len(rows) > self._cap
            recorded = [
                RecordedEvent(event_id=event_id, at=at, facts=facts_of(name, self._object(kind, object_enc)))
                for event_id, name, kind, object_enc, at in rows[: self._cap]
            ]
            delivered = outbox.delivered_event_ids(
                session,
                workspace_id=workspace,
                channel_id=rule.channel_id,
                event_ids=[e.event_id for e in matching(rule, recorded)],
            )
        return evaluate(rule, recorded, delivered=delivered, capped=capped)

    def _object(self, kind: str, object_enc: str | None) -> FreshBooksObject | None:
        """The event's object as the router reads it; None (unknown facts) when absent or unreadable."""
        if object_enc is None:
            return None
        return parse_stored(kind, self._cipher.decrypt_json(object_enc))
