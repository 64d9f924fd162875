"""Prometheus metrics (prometheus-client: the standard exposition format, no hand-rolled counters)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

WEBHOOKS_RECEIVED = Counter(
    "fbslack_webhooks_received_total",
    "Authentic FreshBooks webhooks stored in the inbox, by event name.",
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
DELIVERIES = Counter(
    "fbslack_deliveries_total",
    "Slack delivery attempts, by outcome (delivered, reconciled, retry, in_doubt, needs_person, bug).",
    ["outcome"],
)
SLACK_RATE_LIMITED = Counter("fbslack_slack_429_total", "chat.postMessage answers with HTTP 429.")
