"""Audit search: what happened to invoice 1042? Shared by `/freshbooks audit` and `fbslack audit`.

The query language is parsed by a pure function; words are matched against keyed blind indexes
(storage.search) of invoice and bill numbers and client or vendor names, so none of those is ever
stored or compared as plaintext. Matching is exact per word, case-insensitive, and numbers also
match without their leading zeros or prefix (`42` finds `0000042` and `INV-0042`).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from connector.domain.clock import Clock
from connector.domain.events import ALL_EVENT_NAMES
from connector.domain.money import Money
from connector.features.rules.syntax import RouteSyntaxError, id_problem, tokenize
from connector.freshbooks.models import Bill, FreshBooksObject, Invoice, Payment, parse_stored
from connector.pipeline.index import word_alternatives
from connector.pipeline.route.matching import KINDS, facts_of
from storage import audit, connections, search
from storage.crypto import Cipher
from storage.db import Database
from storage.search import STATUS_STATES, BlindIndex, SearchFilter, SearchRow

STATUSES: tuple[str, ...] = tuple(STATUS_STATES)
RESULT_LIMIT = 10
# A search is stopped by the database after this long: with the acknowledgement's second, the
# answer still reaches the person within Slack's 3 s, and a broad query cannot load the database.
SEARCH_SECONDS = 1.5
# Each word of a number or name is one more blind-index list in the search (storage.search reads
# the rare ones and merges or probes the common ones): the cap bounds a query's cost to MAX_WORDS
# such lists (figures in bench/audit_search.py and the README).
MAX_WORDS = 4

AUDIT_USAGE = (
    "Usage: `/freshbooks audit [WORDS] [KIND] [STATUS] [#channel] [since:DATE] [until:DATE]`\n"
    "WORDS match an invoice or bill number (`1042`, `INV-0042`) or words of a client or vendor name "
    '(`acme`, `"Acme Corp"`), exactly, ignoring case. KIND is `invoice`, `payment`, `bill`, `expense` '
    "or an event such as `invoice.paid`. STATUS is `delivered`, `failed`, `parked` or `pending`. "
    "DATE is `2026-11-01` (UTC) or `7d` (days ago). `D123` shows the history of delivery 123; "
    "`digest` shows what became of the cash-flow digests.\n"
    "Example: `/freshbooks audit acme invoice.paid since:30d`"
)


class AuditSyntaxError(ValueError):
    """The query could not be understood; the message says what and shows the usage."""


@dataclass(frozen=True, slots=True)
class AuditQuery:
    words: tuple[str, ...] = ()
    event_names: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    channel_id: str | None = None
    since: dt.date | None = None
    until: dt.date | None = None  # inclusive
    delivery_id: int | None = None
    digests: bool = False  # `digest`: the cash-flow digests' trail instead of events

    @property
    def is_empty(self) -> bool:
        return self == AuditQuery()


# -- pure parsing ---------------------------------------------------------------------------------

_CHANNEL = re.compile(r"<#([CG][A-Z0-9]+)(?:\|[^<>]*)?>")
_DELIVERY = re.compile(r"[Dd]([0-9]{1,18})")
_DAYS_AGO = re.compile(r"([0-9]{1,4})d")
_KIND_WORDS: dict[str, tuple[str, ...]] = {
    **{kind: tuple(n for n in ALL_EVENT_NAMES if n.startswith(f"{kind}.")) for kind in KINDS},
    **{f"{kind}s": tuple(n for n in ALL_EVENT_NAMES if n.startswith(f"{kind}.")) for kind in KINDS},
    **{name.lower(): (name,) for name in ALL_EVENT_NAMES},
}


def _problem(text: str) -> AuditSyntaxError:
    return AuditSyntaxError(f"{text}\n\n{AUDIT_USAGE}")


def _date(value: str, today: dt.date, option: str) -> dt.date:
    days = _DAYS_AGO.fullmatch(value)
    if days:
        return today - dt.timedelta(days=int(days.group(1)))
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        shown = value[:20]
        raise _problem(
            f"`{option}:{shown}` is not a date: write `{option}:2026-11-01` or `{option}:7d`."
        ) from None


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


@dataclass(slots=True)
class _Parsed:
    today: dt.date
    words: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    channel: str | None = None
    since: dt.date | None = None
    until: dt.date | None = None
    delivery: int | None = None
    digests: bool = False

    def kind(self, word: str, shown: str) -> None:
        if word not in _KIND_WORDS:
            raise _problem(f"`{shown}` is not an event kind or event name.")
        self.names.extend(_KIND_WORDS[word])

    def status(self, word: str, shown: str) -> None:
        if word not in STATUSES:
            choices = ", ".join(f"`{s}`" for s in STATUSES)
            raise _problem(f"`{shown}`: the status is one of {choices}.")
        self.statuses.append(word)

    def set_since(self, word: str, shown: str) -> None:
        self.since = _date(word, self.today, shown)

    def set_until(self, word: str, shown: str) -> None:
        self.until = _date(word, self.today, shown)

    def plain(self, value: str) -> None:
        lowered = value.lower()
        if found := _CHANNEL.fullmatch(value):
            if self.channel not in (None, found.group(1)):
                raise _problem("Name one channel at most.")
            self.channel = found.group(1)
        elif found := _DELIVERY.fullmatch(value):
            self.delivery = int(found.group(1))
        elif value[:1] in ("D", "d") and value[1:].isdigit():  # D², D٣, or more digits than an id has
            raise _problem(id_problem(value[1:], "a delivery id"))
        elif lowered in ("digest", "digests"):
            self.digests = True
        elif lowered in _KIND_WORDS:
            self.names.extend(_KIND_WORDS[lowered])
        elif lowered in STATUSES:
            self.statuses.append(lowered)
        elif value.startswith("#"):
            raise _problem(
                f"`{value[:40]}` is not a linked channel. Pick the channel with `#` so Slack links it."
            )
        else:
            self.words.append(_unescape(value))


_OPTIONS: dict[str, Callable[[_Parsed, str, str], None]] = {
    "kind": _Parsed.kind,
    "event": _Parsed.kind,
    "status": _Parsed.status,
    "since": _Parsed.set_since,
    "from": _Parsed.set_since,
    "until": _Parsed.set_until,
    "to": _Parsed.set_until,
}


def parse_audit_query(text: str, *, today: dt.date) -> AuditQuery:
    """Parse the words after `audit`. Pure; raises AuditSyntaxError naming the offending word."""
    try:
        tokens = tokenize(text)
    except RouteSyntaxError:
        raise _problem('A quoted name is missing its closing quote ("), like `"Acme Corp"`.') from None
    parsed = _Parsed(today)
    for token in tokens:
        if token.quoted:
            parsed.words.extend(_unescape(token.text).split())
            continue
        option, colon, argument = token.text.lower().partition(":")
        handler = _OPTIONS.get(option) if colon else None
        if handler is not None:
            handler(parsed, argument, token.text[:40])
        else:
            parsed.plain(token.text)
    if parsed.since is not None and parsed.until is not None and parsed.until < parsed.since:
        raise _problem("`until` is before `since`.")
    _check_word_count(parsed.words)
    return AuditQuery(
        words=tuple(parsed.words),
        event_names=tuple(dict.fromkeys(parsed.names)),
        statuses=tuple(dict.fromkeys(parsed.statuses)),
        channel_id=parsed.channel,
        since=parsed.since,
        until=parsed.until,
        delivery_id=parsed.delivery,
        digests=parsed.digests,
    )


def _check_word_count(words: list[str]) -> None:
    """At most MAX_WORDS lookups (a word like O'Brien is two: `o` and `brien`), else a helpful answer."""
    lookups = list(dict.fromkeys(tuple(group) for word in words for group in word_alternatives(word)))
    if len(lookups) <= MAX_WORDS:
        return
    shown = ", ".join(f"`{word[:20]}`" for word in words[:8]) + (", …" if len(words) > 8 else "")
    raise _problem(
        f"A search matches at most {MAX_WORDS} words of a number or a name, and this one has "
        f"{len(lookups)} ({shown}). Keep the most distinctive ones: an invoice or bill number alone is "
        "enough, and one rare word of a name usually is. Narrow it further with a kind "
        "(`invoice.paid`), a status (`failed`), a #channel or `since:30d`."
    )


# -- the service --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditHit:
    event_id: int
    event_name: str
    received_at: dt.datetime
    number: str | None
    counterparty: str | None
    amount: Money | None
    notable: bool
    delivery_id: int | None
    channel_id: str | None
    state: str | None
    attempts: int
    problem: str | None  # parked reason or last error code
    permalink: str | None


@dataclass(frozen=True, slots=True)
class AuditResult:
    hits: list[AuditHit]
    more: bool  # there are older matches than the ones shown
    too_slow: bool = False  # stopped at SEARCH_SECONDS: the query must be narrowed


@dataclass(frozen=True, slots=True)
class HistoryLine:
    at: dt.datetime
    kind: str
    outcome: str
    actor: str | None
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DeliveryHistory:
    hit: AuditHit
    lines: list[HistoryLine]


def _parse(row: SearchRow, cipher: Cipher) -> FreshBooksObject | None:
    return parse_stored(row.object_kind, cipher.decrypt_json(row.object_enc) if row.object_enc else None)


def _hit(row: SearchRow, cipher: Cipher) -> AuditHit:
    obj = _parse(row, cipher)
    facts = facts_of(row.event_name, obj) if row.event_name in ALL_EVENT_NAMES else None
    number: str | None = None
    if isinstance(obj, Invoice | Bill):
        number = obj.number
    elif isinstance(obj, Payment) and obj.invoice is not None:
        number = obj.invoice.number
    return AuditHit(
        event_id=row.event_id,
        event_name=row.event_name,
        received_at=row.received_at,
        number=number,
        counterparty=facts.counterparty if facts else None,
        amount=facts.amount if facts else None,
        notable=row.notable,
        delivery_id=row.delivery_id,
        channel_id=row.channel_id,
        state=row.state,
        attempts=row.attempts,
        problem=row.parked_reason or row.last_error_code,
        permalink=row.permalink,
    )


class AuditService:
    def __init__(self, *, db: Database, cipher: Cipher, blind_index: BlindIndex, clock: Clock) -> None:
        self._db = db
        self._cipher = cipher
        self._index = blind_index
        self._clock = clock

    def parse(self, text: str) -> AuditQuery:
        return parse_audit_query(text, today=self._clock().date())

    def _filter(self, workspace_id: int, query: AuditQuery, groups: list[tuple[str, ...]]) -> SearchFilter:
        states = tuple(state for status in query.statuses for state in STATUS_STATES[status])
        return SearchFilter(
            workspace_id=workspace_id,
            term_groups=tuple(groups),
            event_names=query.event_names,
            states=states,
            channel_id=query.channel_id,
            since=_start_of(query.since),
            until=_start_of(query.until + dt.timedelta(days=1)) if query.until else None,
        )

    def search(
        self,
        *,
        team_id: str,
        query: AuditQuery,
        limit: int = RESULT_LIMIT,
        time_limit: float | None = SEARCH_SECONDS,
    ) -> AuditResult:
        """Newest matches first; None as `time_limit` waits as long as the database takes (the CLI)."""
        # Terms first: the key may have to be created, which must not happen inside a read.
        groups = list(
            dict.fromkeys(
                tuple(self._index.terms(group)) for word in query.words for group in word_alternatives(word)
            )
        )
        with self._db.read() as session:
            workspace_id = connections.workspace_of_team(session, team_id)
            if workspace_id is None:
                return AuditResult([], more=False)
            spec = self._filter(workspace_id, query, groups)
            try:
                rows = search.search(session, spec, limit=limit + 1, time_limit=time_limit)
            except search.SearchTooSlow:
                return AuditResult([], more=False, too_slow=True)
        hits = [_hit(row, self._cipher) for row in rows[:limit]]
        return AuditResult(hits, more=len(rows) > limit)

    def history(self, *, team_id: str, delivery_id: int) -> DeliveryHistory | None:
        """One delivery of this workspace with every attempt and replay recorded for it."""
        with self._db.read() as session:
            workspace_id = connections.workspace_of_team(session, team_id)
            if workspace_id is None:
                return None
            row = search.delivery_row(session, workspace_id=workspace_id, delivery_id=delivery_id)
            if row is None:
                return None
            entries = audit.entries_for(session, workspace_id=workspace_id, subject_id=str(delivery_id))
            lines = [
                HistoryLine(
                    at=entry.at,
                    kind=entry.kind,
                    outcome=entry.outcome,
                    actor=entry.actor,
                    detail=self._cipher.decrypt_json(entry.detail_enc) if entry.detail_enc else {},
                )
                for entry in entries
            ]
        return DeliveryHistory(_hit(row, self._cipher), lines)

    def digest_trail(
        self, *, team_id: str, query: AuditQuery, limit: int = RESULT_LIMIT
    ) -> list[HistoryLine]:
        """`audit digest`: the digests' audit entries (scheduled, delivered, delayed...), newest first."""
        with self._db.read() as session:
            workspace_id = connections.workspace_of_team(session, team_id)
            if workspace_id is None:
                return []
            entries = audit.entries_of_kind(
                session,
                workspace_id=workspace_id,
                kind="digest",
                since=_start_of(query.since),
                until=_start_of(query.until + dt.timedelta(days=1)) if query.until else None,
                limit=limit,
            )
            return [
                HistoryLine(
                    at=entry.at,
                    kind=entry.subject_id or entry.kind,
                    outcome=entry.outcome,
                    actor=entry.actor,
                    detail=self._cipher.decrypt_json(entry.detail_enc) if entry.detail_enc else {},
                )
                for entry in entries
            ]


def _start_of(day: dt.date | None) -> dt.datetime | None:
    return None if day is None else dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def describe_state(hit: AuditHit) -> str:
    """Plain words for a delivery's state, shared by Slack and the CLI."""
    if hit.delivery_id is None:
        return "not posted (no material change)" if not hit.notable else "not posted (no rule matched)"
    state = hit.state or "?"
    if state == "in_doubt":
        state = "pending (checking whether Slack got it)"
    if hit.problem and hit.state in ("parked", "failed", "pending", "in_doubt"):
        state += f": {hit.problem}"
    return state
