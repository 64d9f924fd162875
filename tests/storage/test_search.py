"""Audit search by words: exactly the events carrying every word, newest first, whatever the plan.

storage.search picks its plan from how common each word is (a rare word drives; only common words:
the newest events first, then the least common word drives). The thresholds are lowered here so
that a few dozen events take every plan; the answer must not depend on which one ran.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random

import pytest
from sqlalchemy import text

from storage import search
from storage.crypto import Cipher
from storage.db import Database
from storage.models import Event
from tests.support.live import FakeClock, add_connection

# How often each word is carried; "num" is a word with two terms (a number typed as INV-0042
# matches the whole number or its digits), and an event may carry both.
WORDS = {"ltd": 0.9, "acme": 0.5, "rare": 0.1, "mid": 0.3, "num": 0.2}
TERMS = {
    "ltd": ("t-ltd",),
    "acme": ("t-acme",),
    "rare": ("t-rare",),
    "mid": ("t-mid",),
    "num": ("t-n1", "t-n2"),
}
QUERIES = [
    ("ltd", "rare"),
    ("rare", "ltd"),
    ("ltd", "acme", "mid"),
    ("mid", "acme", "ltd"),
    ("ltd", "acme", "rare", "mid"),
    ("acme", "num"),
    ("num",),
    ("ltd",),
]


def _seed(
    db: Database, cipher: Cipher, clock: FakeClock
) -> tuple[int, dict[int, tuple[dt.datetime, set[str]]]]:
    """60 events whose times are not in id order (some equal), each carrying random words."""
    rng = random.Random(12)
    connection_id = add_connection(db, cipher, "ACC1")
    with db.read() as session:
        workspace_id = int(
            session.execute(text("SELECT workspace_id FROM freshbooks_connections")).scalar_one()
        )
    carried: dict[int, tuple[dt.datetime, set[str]]] = {}
    with db.session() as session:
        for n in range(60):
            at = clock() - dt.timedelta(minutes=rng.randrange(40))
            event = Event(
                connection_id=connection_id,
                object_kind="invoice",
                source="webhook",
                name="invoice.create",
                object_id=str(n),
                object_updated=f"u{n}",
                notable=True,
                created_at=at,
            )
            session.add(event)
            session.flush()
            words = {word for word, share in WORDS.items() if rng.random() < share}
            terms = [term for word in words for term in TERMS[word]]
            if "num" in words and rng.random() < 0.5:
                terms.remove("t-n2")  # some carry the number's digits only
            search.add_terms(session, workspace_id=workspace_id, event_id=event.id, terms=sorted(terms))
            carried[event.id] = (at, words)
    return workspace_id, carried


@pytest.mark.parametrize(("rare_rows", "first_window"), [(0, 4), (0, 1000), (8, 4), (1000, 4)])
def test_every_plan_finds_exactly_the_events_carrying_all_words_newest_first(
    db: Database,
    cipher: Cipher,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    rare_rows: int,
    first_window: int,
) -> None:
    monkeypatch.setattr(search, "RARE_ROWS", rare_rows)
    monkeypatch.setattr(search, "FIRST_WINDOW", first_window)
    workspace_id, carried = _seed(db, cipher, clock)
    for words, limit in itertools.product(QUERIES, (3, 100)):
        expected = sorted(
            (event_id for event_id, (_at, has) in carried.items() if set(words) <= has),
            key=lambda event_id: (carried[event_id][0], event_id),
            reverse=True,
        )[:limit]
        spec = search.SearchFilter(workspace_id=workspace_id, term_groups=tuple(TERMS[w] for w in words))
        with db.read() as session:
            found = [row.event_id for row in search.search(session, spec, limit=limit, time_limit=30)]
        assert found == expected, (words, limit)
    assert any(words == {"ltd", "acme", "mid"} for _at, words in carried.values())  # matches exist


def test_words_no_event_carries_together_find_nothing(db: Database, cipher: Cipher, clock: FakeClock) -> None:
    workspace_id, carried = _seed(db, cipher, clock)
    spec = search.SearchFilter(workspace_id=workspace_id, term_groups=(("t-ltd",), ("t-nobody",)))
    with db.read() as session:
        assert search.search(session, spec, limit=10, time_limit=30) == []
    assert len(carried) == 60
