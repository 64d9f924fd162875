"""What the App Home shows, gathered in one read (the view itself is built in slack_ui.home)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from connector.clock import Clock
from connector.route import Rule
from connector.status import ConnectionReport, workspace_status
from storage import alerts, connections, outbox, rules
from storage.crypto import Cipher
from storage.db import Database
from storage.models import Delivery, DeliveryState, Event

PAGE = 10


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
    rules: list[Rule]
    recent: list[DeliveryLine]
    attention: list[DeliveryLine]  # parked and failed: a person can replay them
    alerts: list[str]


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


def gather(db: Database, cipher: Cipher, team_id: str) -> HomeData:
    reports = workspace_status(db, cipher, team_id)
    with db.read() as session:
        workspace = connections.workspace_of_team(session, team_id)
        if workspace is None:
            return HomeData(reports, [], [], [], [])
        base = (
            select(Delivery, Event.name)
            .join(Event, Event.id == Delivery.event_id)
            .where(Delivery.workspace_id == workspace)
        )
        recent = session.execute(base.order_by(Delivery.id.desc()).limit(PAGE)).all()
        attention = session.execute(
            base.where(Delivery.state.in_((DeliveryState.PARKED, DeliveryState.FAILED)))
            .order_by(Delivery.id.desc())
            .limit(PAGE)
        ).all()
        return HomeData(
            connections=reports,
            rules=rules.rules_of_workspace(session, cipher, workspace),
            recent=_lines(recent),
            attention=_lines(attention),
            alerts=[a.cause for a in alerts.open_alerts(session, workspace)],
        )


class HomeService:
    """What the App Home buttons do. Every method is scoped to the workspace that asked."""

    def __init__(
        self, *, db: Database, cipher: Cipher, clock: Clock, on_requeued: Callable[[], None]
    ) -> None:
        self._db = db
        self._cipher = cipher
        self._clock = clock
        self._on_requeued = on_requeued

    def gather(self, team_id: str) -> HomeData:
        return gather(self._db, self._cipher, team_id)

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

    def replay(self, *, team_id: str, delivery_id: int) -> bool:
        with self._db.session() as session:
            workspace = connections.workspace_of_team(session, team_id)
            done = workspace is not None and outbox.requeue_delivery(
                session, workspace_id=workspace, delivery_id=delivery_id, now=self._clock()
            )
        if done:
            self._on_requeued()
        return done
