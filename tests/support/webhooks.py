"""Signed FreshBooks webhooks and what the intake made of them."""

from __future__ import annotations

import urllib.parse

from prometheus_client import REGISTRY
from sqlalchemy import select

from connector.pipeline.ingest.signature import compute_signature
from storage.models import WebhookInbox
from tests.support.live import FB_ACCOUNT, Live


def inbox_rows(live: Live) -> list[WebhookInbox]:
    with live.services.db.session() as session:
        return list(session.scalars(select(WebhookInbox).order_by(WebhookInbox.id)))


def signed(live: Live, event: str, object_id: str, account_id: str = FB_ACCOUNT) -> tuple[str, str]:
    """A body signed with the verifier FreshBooks holds for this event's callback."""
    callback = next(c for c in live.fake.callbacks.values() if c.event == event)
    fields = live.fake.webhook_fields(account_id, event, object_id)
    return urllib.parse.urlencode(fields), compute_signature(fields, callback.verifier)


def rejected(reason: str) -> float:
    return REGISTRY.get_sample_value("fbslack_webhooks_rejected_total", {"reason": reason}) or 0.0
