"""The event catalogue: each event declared once, every other view computed from it."""

from __future__ import annotations

from connector.domain.events import (
    ALL_EVENT_NAMES,
    CATALOGUE,
    DERIVED_EVENTS,
    EVENTS,
    IGNORED_EVENTS,
    KIND_OF_EVENT,
    SUPPORTED_EVENTS,
    EventSource,
    ObjectKind,
    is_known,
)


def test_each_event_is_declared_once() -> None:
    names = [spec.name for spec in CATALOGUE]
    assert len(names) == len(set(names)) == len(EVENTS) == 17
    assert len({spec.renderer for spec in CATALOGUE}) == 17


def test_the_views_come_from_the_catalogue() -> None:
    webhook = [s for s in CATALOGUE if s.source is EventSource.WEBHOOK]
    derived = [s for s in CATALOGUE if s.source is EventSource.DERIVED]
    assert {s.name: s.kind for s in webhook} == SUPPORTED_EVENTS
    assert DERIVED_EVENTS == {
        "invoice.paid": ObjectKind.INVOICE,
        "invoice.partially_paid": ObjectKind.INVOICE,
        "invoice.overdue": ObjectKind.INVOICE,
        "bill.paid": ObjectKind.BILL,
    }
    assert [s.name for s in derived] == list(DERIVED_EVENTS)
    assert (*SUPPORTED_EVENTS, *DERIVED_EVENTS) == ALL_EVENT_NAMES
    assert {s.name: s.kind for s in CATALOGUE} == KIND_OF_EVENT


def test_kinds_match_names_and_ignored_events_are_not_catalogued() -> None:
    assert all(spec.name.split(".")[0] == spec.kind for spec in CATALOGUE)
    assert IGNORED_EVENTS.isdisjoint(EVENTS)
    assert all(is_known(name) for name in SUPPORTED_EVENTS)
    assert not any(is_known(name) for name in DERIVED_EVENTS)  # FreshBooks never sends them
