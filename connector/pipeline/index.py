"""Index: every recorded event becomes findable by `/freshbooks audit`, posted or not.

A hook the route stage runs on each event in its routing transaction, so an event is indexed
exactly once, when it is routed. The vocabulary (which words and numbers an event is found by,
and how a typed word is looked up) is pure and shared with the audit search that reads it.
"""

from __future__ import annotations

import re

from sqlalchemy.orm import Session

from connector.domain.events import ALL_EVENT_NAMES
from connector.freshbooks.models import Bill, FreshBooksObject, Invoice, Payment
from connector.pipeline.route.matching import facts_of
from storage import search
from storage.models import Event
from storage.search import BlindIndex

# -- what gets indexed, and how a query word is looked up (pure) ---------------------------------

_WORD = re.compile(r"[^\W_]+")
_TRAILING_DIGITS = re.compile(r"([0-9]+)$")
NUMBER = "number"
WORD = "word"


def number_values(text: str) -> set[str]:
    """`#INV-0042` -> {"inv-0042", "42"}: the number as typed and its trailing digits without zeros."""
    cleaned = "".join(text.split()).lstrip("#").casefold()
    if not cleaned:
        return set()
    values = {cleaned}
    digits = _TRAILING_DIGITS.search(cleaned)
    if digits:
        values.add(str(int(digits.group(1))))
    return values


def name_words(text: str) -> list[str]:
    return [w.casefold() for w in _WORD.findall(text)]


def index_pairs(event_name: str, obj: FreshBooksObject | None) -> list[tuple[str, str]]:
    """The (field, value) pairs an event is found by: its document number and its counterparty's words."""
    if obj is None:
        return []
    number: str | None = None
    if isinstance(obj, Invoice | Bill):
        number = obj.number
    elif isinstance(obj, Payment) and obj.invoice is not None:
        number = obj.invoice.number
    pairs = [(NUMBER, value) for value in number_values(number or "")]
    counterparty = facts_of(event_name, obj).counterparty if event_name in ALL_EVENT_NAMES else None
    pairs += [(WORD, word) for word in name_words(counterparty or "")]
    return pairs


def word_alternatives(word: str) -> list[list[tuple[str, str]]]:
    """One typed word -> groups of alternatives (each group must match).

    A word with a digit may be a document number (`INV-0042`), looked up whole. Otherwise it is
    split like names are indexed (`O'Brien` -> `o`, `brien`), and each part must match.
    """
    numbers = number_values(word)
    parts = name_words(word)
    if any(ch.isdigit() for ch in word) or len(parts) <= 1:
        return [[*((NUMBER, n) for n in sorted(numbers)), *((WORD, p) for p in parts[:1] if len(parts) == 1)]]
    return [[(WORD, p)] for p in parts]


def index_terms(blind_index: BlindIndex, event_name: str, obj: FreshBooksObject | None) -> list[str]:
    return blind_index.terms(index_pairs(event_name, obj))


class AuditIndex:
    """The route stage's hook that writes the audit search index (storage.search) for each event."""

    def __init__(self, blind_index: BlindIndex) -> None:
        self._index = blind_index

    def prepare(self) -> None:
        self._index.ensure_key()

    def on_event(
        self, session: Session, *, event: Event, obj: FreshBooksObject | None, workspace_id: int
    ) -> None:
        terms = index_terms(self._index, event.name, obj)
        search.add_terms(session, workspace_id=workspace_id, event_id=event.id, terms=terms)
