"""What the App Home shows, gathered in one read (the view itself is built in slack_ui.home)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from connector.domain.clock import Clock
from connector.domain.quiet import QuietHours
from connector.domain.rules import Rule
from connector.features.status import ConnectionReport, workspace_status
from storage import alerts, allowlist, connections, outbox, quiet, rules
from storage.crypto import Cipher
from storage.db import Database
from storage.models import Delivery, DeliveryState, Event

PAGE = 10  # items per page of each App Home list; keeps the whole view far below Slack's 100 blocks
T = TypeVar("T")
_PAGES = re.compile(r"r(\d{1,6})\.a(\d{1,6})\.d(\d{1,6})\.u(\d{1,6})")


@dataclass(frozen=True, slots=True)
class Pages:
    """Which page of each App Home list is shown; carried in the view and in Next/Previous buttons."""

    rules: int = 0
    attention: int = 0
    recent: int = 0
    allowed: int = 0

    def encode(self) -> str:
        return f"r{self.rules}.a{self.attention}.d{self.recent}.u{self.allowed}"

    @classmethod
    def decode(cls, text: str | None) -> Pages:
        """Anything unreadable (an old view, a forged value) is the first page of everything."""
        found = _PAGES.fullmatch(text or "")
        if found is None:
            return cls()
        rules_, attention, recent, allowed = (int(g) for g in found.groups())
        return cls(rules=rules_, attention=attention, recent=recent, allowed=allowed)

    def turned(self, list_name: str, page: int) -> Pages:
        """These pages with `list_name` (a field name) on `page`."""
        return replace(self, **{list_name: max(0, page)})


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list: its items, which page it is (0-based, clamped) and the list's length."""

    items: list[T]
    number: int
    total: int
    size: int = PAGE

    @property
    def count(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def has_previous(self) -> bool:
        return self.number > 0

    @property
    def has_next(self) -> bool:
        return self.number + 1 < self.count

    @property
    def first(self) -> int:
        """1-based position of the first item shown (0 when the list is empty)."""
        return self.number * self.size + 1 if self.items else 0


def clamp(requested: int, total: int, size: int = PAGE) -> int:
    """The requested page, or the last one when the list got shorter (rules deleted meanwhile)."""
    return max(0, min(requested, -(-total // size) - 1))


def page_of(items: list[T], requested: int, size: int = PAGE) -> Page[T]:
    number = clamp(requested, len(items), size)
    return Page(items[number * size : (number + 1) * size], number, len(items), size)


@dataclass(frozen=True, slots=True)
class DeliveryLine:
    delivery_id: int
    event_name: str
    channel_id: str
    state: str
    at: dt.datetime
    reason: str | None


@dataclass(frozen=True, slots=True)
class HomeData:
    connections: list[ConnectionReport]
    rules: Page[Rule]
    recent: Page[DeliveryLine]
    attention: Page[DeliveryLine]  # parked and failed: a person can replay them
    allowed: Page[str]  # Slack user ids on the allowlist
    alerts: list[str]
    quiet: tuple[QuietHours, ...] = ()  # channels' quiet hours (/freshbooks quiet)

    @property
    def pages(self) -> Pages:
        """The pages actually shown (requests past the end are clamped)."""
        return Pages(self.rules.number, self.attention.number, self.recent.number, self.allowed.number)


def _empty() -> Page[Any]:
    return Page([], 0, 0)


def _lines(rows: Iterable[Any]) -> list[DeliveryLine]:
    """(Delivery, event name) rows as lines for the view."""
    return [
        DeliveryLine(
            delivery_id=d.id,
            event_name=name,
            channel_id=d.channel_id,
            state=d.state,
            at=d.delivered_at or d.created_at,
            reason=d.parked_reason or d.last_error_code,
        )
        for d, name in rows
    ]


def _delivery_page(session: Session, query: Select[Delivery, str], requested: int) -> Page[DeliveryLine]:
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    number = clamp(requested, total)
    rows = session.execute(query.order_by(Delivery.id.desc()).offset(number * PAGE).limit(PAGE)).all()
    return Page(_lines(rows), number, total)


def _alert_channel(cause: str) -> str | None:
    """`is_archived:C0123` -> `C0123`; None for a cause about the whole workspace."""
    return cause.partition(":")[2] or None


def channels_shown(db: Database, team_id: str) -> set[str]:
    """Every channel the App Home could name: of rules, deliveries and alerts."""
    with db.read() as session:
        workspace = connections.workspace_of_team(session, team_id)
        if workspace is None:
            return set()
        found = rules.channels_of_rules(session, workspace_id=workspace)
        found |= outbox.channels_of_workspace(session, workspace_id=workspace)
        causes = (_alert_channel(a.cause) for a in alerts.open_alerts(session, workspace))
        return found | {c for c in causes if c}


def gather(
    db: Database,
    cipher: Cipher,
    team_id: str,
    pages: Pages | None = None,
    hidden: frozenset[str] = frozenset(),
) -> HomeData:
    """What the Home shows; nothing of a channel in `hidden` (private channels the member is not in)."""
    pages = pages or Pages()
    reports = workspace_status(db, cipher, team_id)
    with db.read() as session:
        workspace = connections.workspace_of_team(session, team_id)
        if workspace is None:
            return HomeData(reports, _empty(), _empty(), _empty(), _empty(), [])
        base = (
            select(Delivery, Event.name)
            .join(Event, Event.id == Delivery.event_id)
            .where(Delivery.workspace_id == workspace)
        )
        if hidden:
            base = base.where(Delivery.channel_id.not_in(hidden))
        shown_rules = [
            r for r in rules.rules_of_workspace(session, cipher, workspace) if r.channel_id not in hidden
        ]
        attention = base.where(Delivery.state.in_((DeliveryState.PARKED, DeliveryState.FAILED)))
        allowed_total = allowlist.count_allowed(session, workspace_id=workspace)
        allowed_page = clamp(pages.allowed, allowed_total)
        return HomeData(
            connections=reports,
            rules=page_of(shown_rules, pages.rules),
            recent=_delivery_page(session, base, pages.recent),
            attention=_delivery_page(session, attention, pages.attention),
            allowed=Page(
                allowlist.allowed_users(
                    session, workspace_id=workspace, offset=allowed_page * PAGE, limit=PAGE
                ),
                allowed_page,
                allowed_total,
            ),
            quiet=tuple(
                h
                for h in quiet.quiet_of_workspace(session, workspace_id=workspace)
                if h.channel_id not in hidden
            ),
            alerts=[
                a.cause
                for a in alerts.open_alerts(session, workspace)
                if _alert_channel(a.cause) not in hidden
            ],
        )


class HomeService:
    """What the App Home buttons do. Every method is scoped to the workspace that asked."""

    def __init__(self, *, db: Database, cipher: Cipher, clock: Clock) -> None:
        self._db = db
        self._cipher = cipher
        self._clock = clock

    def gather(
        self, team_id: str, pages: Pages | None = None, hidden: frozenset[str] = frozenset()
    ) -> HomeData:
        return gather(self._db, self._cipher, team_id, pages, hidden)

    def channels_shown(self, team_id: str) -> set[str]:
        return channels_shown(self._db, team_id)

    def allow(self, *, team_id: str, user_ids: list[str], by: str) -> int:
        """Put people on this workspace's allowlist; returns how many were not on it already."""
        now = self._clock()
        with self._db.session() as session:
            workspace = connections.ensure_workspace(session, team_id=team_id, now=now)
            return allowlist.allow(
                session, workspace_id=workspace.id, user_ids=user_ids, added_by=by, now=now
            )

    def disallow(self, *, team_id: str, user_id: str) -> bool:
        with self._db.session() as session:
            workspace = connections.workspace_of_team(session, team_id)
            return workspace is not None and allowlist.disallow(
                session, workspace_id=workspace, user_id=user_id
            )

    def set_paused(self, *, team_id: str, rule_id: int, paused: bool) -> bool:
        with self._db.session() as session:
            workspace = connections.workspace_of_team(session, team_id)
            return workspace is not None and rules.set_paused(
                session, workspace_id=workspace, rule_id=rule_id, paused=paused
            )

    def delete_rule(self, *, team_id: str, rule_id: int) -> bool:
        with self._db.session() as session:
            workspace = connections.workspace_of_team(session, team_id)
            return workspace is not None and rules.delete_rule(
                session, workspace_id=workspace, rule_id=rule_id
            )
