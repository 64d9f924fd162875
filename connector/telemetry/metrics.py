"""Prometheus metrics (prometheus-client: the standard exposition format, no hand-rolled counters).

Counters and histograms are recorded where things happen. Queue depths are not counted as they
change: `QueueCollector` reads them from the database when /metrics is scraped, so they are right
however many processes (or hosts) share the database, and cost nothing between scrapes.

Under `fbslack serve` every process (gunicorn web workers and the background `fbslack worker`)
writes its samples to files in PROMETHEUS_MULTIPROC_DIR (connector.ops.server creates a fresh one per
run); a scrape, answered by whichever web worker gets it, merges them all. prometheus-client picks
that mode when it is first imported, from the environment variable alone.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterable, Iterator, Mapping

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from connector.domain.clock import Clock
from storage import inbox, outbox
from storage.db import Database
from storage.models import DeliveryState

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

WEBHOOKS_RECEIVED = Counter(
    "fbslack_webhooks_received_total",
    "Authentic FreshBooks webhooks stored in the inbox, by event name.",
    ["event"],
)
WEBHOOKS_REPEATED = Counter(
    "fbslack_webhooks_repeated_total",
    "Authentic webhooks acknowledged without a new inbox row: the same body within 24 hours, by event name.",
    ["event"],
)
WEBHOOKS_REJECTED = Counter(
    "fbslack_webhooks_rejected_total",
    "Webhook requests refused, by reason.",
    ["reason"],
)
VERIFICATIONS = Counter(
    "fbslack_callback_verifications_total",
    "callback.verify handshakes, by outcome.",
    ["outcome"],
)
INBOX_PROCESSED = Counter(
    "fbslack_inbox_processed_total",
    "Inbox rows the pipeline finished, by outcome.",
    ["outcome"],
)
EVENTS = Counter(
    "fbslack_events_total",
    "Events recorded (each once), by object kind, event name and source (webhook, poll, derived, simulated).",
    ["kind", "event", "source"],
)
FRESHBOOKS_API_ERRORS = Counter(
    "fbslack_freshbooks_api_errors_total",
    "FreshBooks API calls that failed, by kind.",
    ["kind"],
)
WEBHOOK_ACK_SECONDS = Histogram(
    "fbslack_webhook_ack_seconds",
    "Time from receiving a webhook request to answering it.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
SLASH_COMMAND_ACK_SECONDS = Histogram(
    "fbslack_slash_command_ack_seconds",
    "Time from a /freshbooks command arriving on this server to its acknowledgement (Slack allows 3 s"
    " for the whole round trip).",
    buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0),
)
SLASH_COMMANDS_HANDED_OVER = Counter(
    "fbslack_slash_commands_handed_over_total",
    "/freshbooks commands acknowledged before their work finished, whose answer went to the response_url.",
)
WEBHOOK_TO_POST_SECONDS = Histogram(
    "fbslack_webhook_to_post_seconds",
    "Time from accepting a webhook to Slack accepting the post of its event, per delivery.",
    # From the unthrottled target (150 ms) up to an hour: a backlog or a Slack outage shows here.
    buckets=(0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0),
)
DELIVERIES = Counter(
    "fbslack_deliveries_total",
    "Slack delivery attempts, by outcome (delivered, reconciled, retry, in_doubt, needs_person, bug).",
    ["outcome"],
)
SLACK_RATE_LIMITED = Counter(
    "fbslack_slack_429_total", "HTTP 429 answers to the delivery engine (posts and in-doubt searches)."
)


# -- read from the database at scrape time ---------------------------------------------------------

Backlog = tuple[int, dt.datetime | None]  # how many, and the oldest one's timestamp


def _age(now: dt.datetime, oldest: dt.datetime | None) -> float:
    """Seconds the oldest item has waited; 0 for an empty queue (never negative across clocks)."""
    return max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0


def queue_families(
    *, inbox_backlog: Backlog, deliveries: Mapping[DeliveryState, Backlog], now: dt.datetime
) -> list[Metric]:
    """The queue gauges for one reading of the database. Pure."""
    depth = GaugeMetricFamily(
        "fbslack_queue_depth",
        "Items waiting: inbox = webhooks not yet processed, outbox = deliveries pending or in doubt.",
        labels=["queue"],
    )
    age = GaugeMetricFamily(
        "fbslack_queue_oldest_age_seconds",
        "How long the oldest waiting item has waited (inbox: since received; outbox: since queued).",
        labels=["queue"],
    )
    outbox_items = [deliveries[s] for s in (DeliveryState.PENDING, DeliveryState.IN_DOUBT)]
    outbox_count = sum(count for count, _ in outbox_items)
    outbox_oldest = min((t for _, t in outbox_items if t is not None), default=None)
    for queue, count, oldest in (
        ("inbox", inbox_backlog[0], inbox_backlog[1]),
        ("outbox", outbox_count, outbox_oldest),
    ):
        depth.add_metric([queue], count)
        age.add_metric([queue], _age(now, oldest))
    in_doubt = GaugeMetricFamily(
        "fbslack_deliveries_in_doubt",
        "Deliveries whose post may have landed, to be checked in the channel before posting again.",
        value=deliveries[DeliveryState.IN_DOUBT][0],
    )
    parked = GaugeMetricFamily(
        "fbslack_deliveries_parked",
        "Deliveries waiting for a person (archived channel, revoked token...): App Home > Replay.",
        value=deliveries[DeliveryState.PARKED][0],
    )
    return [depth, age, in_doubt, parked]


class QueueCollector(Collector):
    """Queue depths and ages, read with two small indexed queries when /metrics is scraped."""

    def __init__(self, *, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def describe(self) -> Iterable[Metric]:
        return ()  # nothing to check at registration: no query until a scrape

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "fbslack_metrics_database_up",
            "1 if the queue gauges of this scrape could be read from the database, else 0.",
        )
        try:
            with self._db.read() as session:
                inbox_backlog = inbox.backlog(session)
                deliveries = outbox.backlog(session)
        except SQLAlchemyError as exc:
            # The counters are still worth serving: say the gauges are missing instead of failing.
            log.warning("metrics: database unreadable (%s), queue gauges left out", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from queue_families(inbox_backlog=inbox_backlog, deliveries=deliveries, now=self._clock())


# -- the /metrics body -----------------------------------------------------------------------------


class _Chain(Collector):
    """Several collectors read as one, in order (a registry per scrape needs no registration checks)."""

    def __init__(self, *parts: Collector) -> None:
        self._parts = parts

    def collect(self) -> Iterator[Metric]:
        for part in self._parts:
            yield from part.collect()


def multiprocess_dir() -> str | None:
    """The directory every process writes its samples to, when running under `fbslack serve`."""
    return os.environ.get(MULTIPROC_ENV) or None


def exposition(*extra: Collector) -> bytes:
    """The /metrics body: this process's metrics, or every process's merged under `fbslack serve`,
    followed by `extra` (collected now, in the scraping process)."""
    path = multiprocess_dir()
    if path is None:
        return generate_latest(_Chain(REGISTRY, *extra))
    # A fresh registry per scrape, as prometheus-client prescribes for multi-process mode: the
    # default one would add only this worker's process and GC metrics.
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return generate_latest(_Chain(registry, *extra))
