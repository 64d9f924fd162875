"""A connected workspace on the fake Slack and the test's clock, with helpers to queue and deliver."""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from slack_sdk import WebClient
from sqlalchemy import select

from connector.pipeline.deliver.engine import DeliveryEngine
from storage import alerts, events, outbox
from storage.models import Delivery, Event, Workspace
from tests.support.builders import invoice_json
from tests.support.fakes.slack import (
    APP_ID,
    TEAM_ID,
    FakeSlack,
)
from tests.support.live import SLACK_BOT_TOKEN, Live, signed_slack_post

ACCOUNTING, SALES, PRIVATE = "C0ACCOUNT", "C0SALES01", "G0PRIVATE"


GAP = 1.1  # seconds the clock moves between rounds: past the 1.05 s channel gap


UPDATED = "2026-11-24 09:00:00"


def web(slack: FakeSlack, token: str = SLACK_BOT_TOKEN) -> WebClient:
    return WebClient(token=token, base_url=slack.base_url, retry_handlers=[])


@dataclass
class Desk:
    """The live app with one FreshBooks connection (installed by ADMIN) and helpers to queue
    deliveries directly and run delivery rounds on the injected clock."""

    live: Live
    connection_id: int
    workspace_id: int
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1001))

    @property
    def slack(self) -> FakeSlack:
        return self.live.slack

    def queue(self, channel: str, count: int = 1, *, collapse_at: int | None = None) -> list[int]:
        """`count` invoice.create events, each queued for `channel`; returns the delivery ids.
        `collapse_at`: as a rule would set it (None: never in a burst summary)."""
        return [
            self.queue_event(
                channel, "invoice", "invoice.create", invoice(object_id), collapse_at=collapse_at
            )
            for object_id in itertools.islice(self._ids, count)
        ]

    def queue_event(
        self, channel: str, kind: str, name: str, obj: dict[str, Any], *, collapse_at: int | None = None
    ) -> int:
        with self.live.services.db.session() as session:
            event_id, _ = events.record_event(
                session,
                self.live.services.cipher,
                connection_id=self.connection_id,
                inbox_id=None,
                object_kind=kind,
                name=name,
                object_id=str(obj["id"]),
                object_updated=str(obj["updated"]),
                obj=obj,
                now=self.live.clock(),
            )
            session.get_one(Event, event_id).routed_at = self.live.clock()
            assert outbox.add_delivery(
                session,
                event_id=event_id,
                workspace_id=self.workspace_id,
                channel_id=channel,
                rule_ids=[],
                now=self.live.clock(),
                collapse_at=collapse_at,
            )
            delivery_id = session.scalar(
                select(Delivery.id).where(Delivery.event_id == event_id, Delivery.channel_id == channel)
            )
            assert delivery_id is not None
            return delivery_id

    def run(self, engine: DeliveryEngine | None = None) -> int:
        """One delivery round, then the clock moves past the channel gap."""
        claimed = (engine or self.live.services.engine).run_once()
        self.live.clock.advance(seconds=GAP)
        return claimed

    def drain(self, rounds: int = 40) -> None:
        """Rounds until nothing is due (a retry or recheck later than now is not waited for)."""
        for _ in range(rounds):
            if not self.run() and not self.due():
                return

    def due(self) -> bool:
        with self.live.services.db.read() as session:
            return outbox.has_due(session, now=self.live.clock())

    def get(self, delivery_id: int) -> Delivery:
        with self.live.services.db.read() as session:
            return session.get_one(Delivery, delivery_id)

    def states(self, ids: list[int]) -> list[str]:
        return [self.get(i).state for i in ids]

    def advance_to_next_attempt(self, delivery_id: int) -> None:
        self.live.clock.now = max(self.live.clock.now, self.get(delivery_id).next_attempt_at)

    def texts(self, channel: str) -> list[str]:
        return [m["text"].split(".")[0] for m in self.slack.channels[channel].messages]

    def posts_of(self, delivery_id: int) -> int:
        """chat.postMessage calls that carried this delivery's key, whatever Slack answered."""
        return self.slack.posts_by_metadata("delivery_key")[self.get(delivery_id).delivery_key]

    def workspace(self) -> Workspace:
        with self.live.services.db.read() as session:
            return session.get_one(Workspace, self.workspace_id)

    def open_causes(self) -> list[str]:
        with self.live.services.db.read() as session:
            return [a.cause for a in alerts.open_alerts(session, self.workspace_id)]

    def web(self) -> WebClient:
        return web(self.slack)


def invoice(object_id: int) -> dict[str, Any]:
    return {**invoice_json("7500.00", UPDATED), "id": object_id, "invoice_number": f"ACM{object_id}"}


def eventually(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll another thread's work (Bolt runs event listeners after the ack) until a deadline."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        pause.wait(0.02)


def slack_event(live: Live, event: dict[str, Any]) -> httpx.Response:
    """A signed Events API request, over real HTTP, as Slack sends it."""
    body = json.dumps(
        {
            "token": "unused",
            "team_id": TEAM_ID,
            "api_app_id": APP_ID,
            "event": {"event_ts": f"{time.time():.6f}", **event},
            "type": "event_callback",
            "event_id": f"Ev{uuid.uuid4().hex[:10].upper()}",
            "event_time": int(time.time()),
        }
    )
    return signed_slack_post(live.url, body, content_type="application/json")
