"""Slack delivery benchmark through the production server (`fbslack serve`: gunicorn + background process).

For each database (a fresh SQLite file and/or a fresh PostgreSQL schema) it starts the real server
against a local fake FreshBooks (which serves the invoices) and a local fake Slack that ENFORCES
Slack's chat.postMessage limit of 1 message per second per channel: a post that arrives less than
1 s after the last accepted post in its channel (real time, measured on the fake's side) gets
HTTP 429 `ratelimited` with `Retry-After: 1`. Then it measures two phases:

* latency: `--latency-events` (100) invoice.create webhooks at a steady `--latency-rate` (2.5/s),
  each routed to its own channel, so no channel limit applies. Reported: the time from the
  webhook's acknowledgement (the 2xx reaching the sender) to the fake Slack storing the post;
* throttled: `--events` (60) invoice.create webhooks sent back to back, spread evenly over
  `--channels` (6) channels. Reported: the time from the first webhook sent to the last message
  stored, divided by the ideal ceil(N/K) seconds; the share of chat.postMessage calls answered
  429; and whether every event was posted exactly once to its channel (counted by the
  `delivery_key` in each stored message's metadata, joined to the `deliveries` table).

The latency phase runs first so that it meets a full workspace budget; the throttled phase, which
empties that budget, comes second. Webhooks are sent by a separate load-generator process; the
fakes run in threads of this orchestrator, which otherwise only waits. Both sides time with
CLOCK_MONOTONIC (`time.monotonic()`), which is shared by all processes on a Linux machine.

    .venv/bin/python bench/deliver.py [--db sqlite|postgresql|both] [--events 60] [--channels 6]
                                      [--latency-events 100] [--latency-rate 2.5] [--json OUT]

A benchmark, not a test: it reports numbers. It exits non-zero only when a leg could not run or an
event was not posted exactly once (missing or duplicated) to its channel.

Shared plumbing (the server subprocess, fresh databases, the webhook client and signature, CPU
accounting) is imported from bench/ingest.py.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import itertools
import math
import multiprocessing
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
for _path in (str(REPO), str(BENCH)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import ingest as common  # noqa: E402  (bench/ingest.py: server, databases, webhook client, CPU meter)

SLACK_SIGNING_SECRET = "bench-slack-signing-secret"
SLACK_BOT_TOKEN = "xoxb-bench-bot-token"
FB_ACCESS_TOKEN = "bench-fb-access-token"
FB_REFRESH_TOKEN = "bench-fb-refresh-token"
FB_CLIENT_ID, FB_CLIENT_SECRET = "fb-client", "fb-secret"  # what tests/support/fakes/freshbooks.py expects
EVENT = "invoice.create"
SLACK_MIN_GAP_S = 1.0  # the fake's rule: 1 message per second per channel
TARGET_RATIO = 1.10
TARGET_429_PCT = 1.0
TARGET_P50_MS = 150.0
GRACE_S = 2.0  # after the last expected post: time for a late duplicate to show up
THROTTLED_IDS = 100_000  # invoice ids of the throttled phase start here; latency phase at 500_000
LATENCY_IDS = 500_000


# ---------------------------------------------------------------------------------------------
# Load generator: a child process that sends signed webhooks and times each acknowledgement
# ---------------------------------------------------------------------------------------------


def loadgen_main(spec: dict[str, Any], pipe: Any) -> None:
    """Send spec["ids"] one after the other on one keep-alive connection: back to back when
    spec["rate"] is 0, else webhook i planned at t0 + i/rate. Reports (id, sent, acked, status)."""
    try:
        client = common.Client(spec["port"], spec["path"], EVENT)
        client.connect(prime=True)
        records: list[tuple[int, float, float, int | str]] = []
        start = time.monotonic() + 0.05
        lag = 0.0
        for i, object_id in enumerate(spec["ids"]):
            if spec["rate"]:
                delay = start + i / spec["rate"] - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                else:
                    lag = max(lag, -delay)
            sent = time.monotonic()
            status = client.post(object_id)
            records.append((object_id, sent, time.monotonic(), status))
        client.close()
        pipe.send({"records": records, "max_send_lag_ms": lag * 1000, "client_cpu_s": time.process_time()})
    except BaseException as exc:  # report it rather than leave the parent waiting
        pipe.send({"error": f"{type(exc).__name__}: {exc}"})
    finally:
        pipe.close()


def run_loadgen(spec: dict[str, Any]) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=loadgen_main, args=(spec, child), name="deliver-loadgen")
    proc.start()
    child.close()
    timeout = (len(spec["ids"]) / spec["rate"] if spec["rate"] else 0.0) + 60
    if not parent.poll(timeout):
        proc.kill()
        proc.join()
        raise RuntimeError(f"the load generator did not report within {timeout:.0f} s")
    result: dict[str, Any] = parent.recv()
    proc.join(10)
    if "error" in result:
        raise RuntimeError(f"the load generator failed: {result['error']}")
    return result


# ---------------------------------------------------------------------------------------------
# Fakes: FreshBooks serves the invoices; Slack enforces 1 message/second/channel
# ---------------------------------------------------------------------------------------------


def _no_nagle(handler: type[BaseHTTPRequestHandler]) -> type[BaseHTTPRequestHandler]:
    # Headers and body go out in two writes: with Nagle + delayed ACK that can add 40 ms a call,
    # a cost of the fake, not of the app. (bench/ingest.py's stub does the same.)
    handler.disable_nagle_algorithm = True
    return handler


def _fakes() -> tuple[type, type]:
    """The fake classes, imported late: tests/support/fakes import the app's modules."""
    from tests.support.fakes.freshbooks import FakeFreshBooks
    from tests.support.fakes.slack import Channel, FakeSlack

    class BenchFreshBooks(FakeFreshBooks):
        def _handler_class(self) -> type[BaseHTTPRequestHandler]:
            return _no_nagle(super()._handler_class())

    class PacedSlack(FakeSlack):
        """FakeSlack with Slack's per-channel limit on chat.postMessage, and a timed record of posts.

        A post arriving less than SLACK_MIN_GAP_S after the last accepted post in its channel is
        answered 429 `ratelimited`, `Retry-After: 1`, and not stored. The check and the store
        happen under the fake's lock, so concurrent posts to one channel are judged in order.
        """

        def __init__(self) -> None:
            super().__init__()
            self.valid_tokens = {SLACK_BOT_TOKEN}
            self.enforce = True
            self.posts: list[dict[str, Any]] = []  # accepted: t (stored, monotonic), channel, key, ts
            self.rejections: list[dict[str, Any]] = []  # 429s: t, channel, since_last_s
            self.post_calls: Counter[str] = Counter()  # chat.postMessage calls per channel
            self._last_accepted: dict[str, float] = {}

        def _handler_class(self) -> type[BaseHTTPRequestHandler]:
            return _no_nagle(super()._handler_class())

        def add_channels(self, ids: list[str]) -> None:
            for channel_id in ids:
                self.add_channel(Channel(channel_id, name=channel_id.lower()))

        def _handle(self, method: str, params: dict[str, Any], headers: dict[str, str]) -> Any:
            if method != "chat.postMessage":
                return super()._handle(method, params, headers)
            with self._cond:  # re-entrant: FakeSlack._handle takes it again
                arrived = time.monotonic()
                channel = str(params.get("channel", ""))
                self.post_calls[channel] += 1
                last = self._last_accepted.get(channel)
                if self.enforce and last is not None and arrived - last < SLACK_MIN_GAP_S:
                    self.rejections.append(
                        {"t": arrived, "channel": channel, "since_last_s": round(arrived - last, 4)}
                    )
                    return 429, {"Retry-After": "1"}, {"ok": False, "error": "ratelimited"}
                answer: Any = super()._handle(method, params, headers)
                status, extra, body = answer
                if status == 200 and isinstance(body, dict) and body.get("ok"):
                    self._last_accepted[channel] = arrived
                    metadata = body["message"].get("metadata") or {}
                    key = (metadata.get("event_payload") or {}).get("delivery_key")
                    self.posts.append(
                        # wall: to compare with the app's sent_at (written just before the post)
                        {
                            "t": time.monotonic(),
                            "wall": time.time(),
                            "channel": channel,
                            "key": key,
                            "ts": body["ts"],
                        }
                    )
                    self._cond.notify_all()
                return status, extra, body

        def posts_in(self, channels: set[str]) -> list[dict[str, Any]]:
            with self._cond:
                return [p for p in self.posts if p["channel"] in channels]

        def rejections_in(self, channels: set[str]) -> list[dict[str, Any]]:
            with self._cond:
                return [r for r in self.rejections if r["channel"] in channels]

        def calls_in(self, channels: set[str]) -> int:
            with self._cond:
                return sum(n for c, n in self.post_calls.items() if c in channels)

        def wait_posts(self, channels: set[str], count: int, deadline: float) -> bool:
            """Until `count` posts are stored in `channels` or time.monotonic() passes `deadline`."""
            with self._cond:
                return self._cond.wait_for(
                    lambda: sum(1 for p in self.posts if p["channel"] in channels) >= count,
                    timeout=max(0.0, deadline - time.monotonic()),
                )

    return BenchFreshBooks, PacedSlack


def invoice_json(object_id: int, client_name: str) -> dict[str, Any]:
    amount = f"{1000 + object_id % 9000}.50"
    return {
        "id": object_id,
        "invoiceid": object_id,
        "invoice_number": f"BENCH{object_id}",
        "customerid": 7000 + object_id % 1000,
        "organization": client_name,
        "amount": {"amount": amount, "code": "USD"},
        "outstanding": {"amount": amount, "code": "USD"},
        "paid": {"amount": "0.00", "code": "USD"},
        "currency_code": "USD",
        "status": 2,
        "v3_status": "sent",
        "create_date": "2026-11-24",
        "due_date": "2026-12-24",
        "updated": "2026-11-24 07:00:00",
        "vis_state": 0,
    }


# ---------------------------------------------------------------------------------------------
# The plan: which invoices, channels and routing rules
# ---------------------------------------------------------------------------------------------


def plan(args: argparse.Namespace) -> dict[str, Any]:
    """Event i of the throttled phase goes to channel i mod K (one rule per channel, on the client
    name); each latency event has a channel of its own. Channel ids look like Slack's."""
    throttled_channels = [f"CTHR{k:04d}" for k in range(args.channels)]
    latency_channels = [f"CLAT{k:04d}" for k in range(args.latency_events)]
    throttled = {THROTTLED_IDS + i: throttled_channels[i % args.channels] for i in range(args.events)}
    latency = {LATENCY_IDS + i: latency_channels[i] for i in range(args.latency_events)}
    return {
        "throttled_channels": throttled_channels,
        "latency_channels": latency_channels,
        "throttled": throttled,  # object id -> channel
        "latency": latency,
        # channel -> the client name its rule matches
        "rules": {channel: f"Client {channel}" for channel in [*latency_channels, *throttled_channels]},
    }


def migrate_and_seed(url: str, rules_by_channel: dict[str, str], collapse_at: int | None = None) -> str:
    """Migrate; add a workspace, a connection (tokens the fake FreshBooks accepts), one verified
    callback with a known verifier and one routing rule per channel; return the webhook URL token.
    `collapse_at`: the rules' burst size; None (`collapse off`) here, so that this benchmark goes on
    measuring one post per event against Slack's channel limit (bench/burst.py measures summaries)."""
    from connector.domain.rules import RouteSpec
    from storage import connections, migrate, rules
    from storage.crypto import Cipher
    from storage.db import Database
    from tests.support.fakes.slack import TEAM_ID

    db = Database(url, pool_size=2)
    try:
        migrate.upgrade(db.engine)
        cipher = Cipher([common.ENCRYPTION_KEY])
        now = dt.datetime.now(dt.UTC)
        with db.session() as session:
            workspace = connections.ensure_workspace(session, team_id=TEAM_ID, now=dt.datetime.now(dt.UTC))
            new = connections.create_connection(
                session,
                cipher,
                workspace_id=workspace.id,
                account_id=common.ACCOUNT_ID,
                business_id=3,
                business_name="Benchmark Business",
                access_token=FB_ACCESS_TOKEN,
                refresh_token=FB_REFRESH_TOKEN,
                token_expires_at=now + dt.timedelta(days=1),
                now=dt.datetime.now(dt.UTC),
            )
            callback = connections.record_callback(
                session,
                connection_id=new.connection.id,
                callback_id=common.CALLBACK_ID,
                event=EVENT,
                now=dt.datetime.now(dt.UTC),
            )
            connections.adopt_verifier(
                session, callback_row_id=callback.id, verifier_enc=cipher.encrypt(common.VERIFIER), now=now
            )
            for channel_id, client_name in rules_by_channel.items():
                rules.create_rule(
                    session,
                    cipher,
                    workspace_id=workspace.id,
                    connection_id=new.connection.id,
                    spec=RouteSpec(
                        patterns=(EVENT,),
                        channel_id=channel_id,
                        channel_name=channel_id.lower(),
                        min_amount=None,
                        max_amount=None,
                        currency=None,
                        billable_only=False,
                        counterparty=client_name,
                        collapse_at=collapse_at,
                    ),
                    created_by="UBENCHADMIN",
                    now=now,
                )
        return new.webhook_token
    finally:
        db.dispose()


def _epoch(value: Any) -> float | None:
    """A UTC timestamp column as seconds since the epoch (SQLite hands back text, PostgreSQL datetimes)."""
    if value is None:
        return None
    moment = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()


class Outbox:
    """Read-only queries. Not storage.db.Database: its SQLite sessions take the write lock."""

    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        self._engine = create_engine(url, poolclass=NullPool)

    def _all(self, sql: str) -> list[Any]:
        from sqlalchemy import text

        with self._engine.connect() as conn:
            return list(conn.execute(text(sql)).all())

    def deliveries(self) -> list[dict[str, Any]]:
        rows = self._all(
            "SELECT e.object_id, d.channel_id, d.delivery_key, d.state, d.attempts, d.last_error_code, "
            "d.sent_at FROM deliveries d JOIN events e ON e.id = d.event_id"
        )
        return [
            {
                "object_id": int(r[0]),
                "channel": r[1],
                "key": r[2],
                "state": r[3],
                "attempts": int(r[4]),
                "error": r[5],
                "sent_at": _epoch(r[6]),
            }
            for r in rows
        ]

    def inbox_by_state(self) -> dict[str, int]:
        return {
            str(s): int(n) for s, n in self._all("SELECT state, count(*) FROM webhook_inbox GROUP BY state")
        }

    def dispose(self) -> None:
        self._engine.dispose()


def server_environment(
    url: str, port: int, tmp: Path, fb_url: str, slack_url: str, args: argparse.Namespace
) -> dict[str, str]:
    env = common.server_environment(url, port, tmp / "data", fb_url, args.workers, args.threads)
    env.update(
        PUBLIC_URL=f"http://127.0.0.1:{port}",
        FRESHBOOKS_AUTH_URL=fb_url,
        FRESHBOOKS_CLIENT_ID=FB_CLIENT_ID,
        FRESHBOOKS_CLIENT_SECRET=FB_CLIENT_SECRET,
        SLACK_SIGNING_SECRET=SLACK_SIGNING_SECRET,
        SLACK_BOT_TOKEN=SLACK_BOT_TOKEN,
        SLACK_API_URL=slack_url,
        LOG_LEVEL=args.log_level,
    )
    return env


# ---------------------------------------------------------------------------------------------
# Checks and numbers
# ---------------------------------------------------------------------------------------------


def exactly_once(
    expected: dict[int, str], deliveries: list[dict[str, Any]], posts: list[dict[str, Any]]
) -> dict[str, Any]:
    """Join what should have been posted (object -> channel) with the outbox rows (object, channel
    -> delivery_key) and with what the fake stored (delivery_key in each message's metadata)."""
    rows = [d for d in deliveries if d["object_id"] in expected]
    by_pair: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_pair[(row["object_id"], row["channel"])].append(row)
    stored: Counter[tuple[str | None, str]] = Counter((p["key"], p["channel"]) for p in posts)
    keys_stored = Counter(p["key"] for p in posts)
    missing, duplicated, misrouted_rows = [], [], []
    for object_id, channel in expected.items():
        pair_rows = by_pair.get((object_id, channel), [])
        if not pair_rows:
            missing.append({"object_id": object_id, "channel": channel, "why": "no delivery row"})
            continue
        n = stored[(pair_rows[0]["key"], channel)]
        if n == 0:
            missing.append(
                {
                    "object_id": object_id,
                    "channel": channel,
                    "why": f"not stored (row {pair_rows[0]['state']})",
                }
            )
        elif n > 1:
            duplicated.append({"object_id": object_id, "channel": channel, "times": n})
    expected_pairs = set(expected.items())
    for row in rows:
        if (row["object_id"], row["channel"]) not in expected_pairs:
            misrouted_rows.append(row)
    known_keys = {r["key"] for r in rows}
    unexpected_posts = [p for p in posts if p["key"] not in known_keys]
    return {
        "expected": len(expected),
        "delivery_rows": len(rows),
        "stored_messages": len(posts),
        "distinct_keys_stored": len(keys_stored),
        "missing": len(missing),
        "duplicated": len(duplicated),
        "misrouted_rows": len(misrouted_rows),
        "unexpected_posts": len(unexpected_posts),
        "ok": not (missing or duplicated or misrouted_rows or unexpected_posts),
        "examples": {
            "missing": missing[:5],
            "duplicated": duplicated[:5],
            "unexpected": unexpected_posts[:5],
        },
        "rows_by_state": dict(Counter(r["state"] for r in rows)),
        "rows_retried": sum(1 for r in rows if r["attempts"] > 1),
        "row_errors": dict(Counter(r["error"] for r in rows if r["error"])),
    }


def ack_summary(records: list[tuple[int, float, float, int | str]]) -> dict[str, Any]:
    acked = [r for r in records if isinstance(r[3], int) and 200 <= r[3] < 300]
    service = sorted((r[2] - r[1]) * 1000 for r in acked)
    return {
        "sent": len(records),
        "acked": len(acked),
        "errors": dict(Counter(str(r[3]) for r in records if r not in acked)),
        "ack_p50_ms": _round(common.percentile(service, 50)),
        "ack_max_ms": _round(service[-1] if service else None),
    }


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def channel_gaps(posts: list[dict[str, Any]]) -> dict[str, Any]:
    """Intervals between consecutive stored posts of each channel (the fake's clock)."""
    by_channel: dict[str, list[float]] = defaultdict(list)
    for post in posts:
        by_channel[post["channel"]].append(post["t"])
    gaps: list[float] = []
    for times in by_channel.values():
        times.sort()
        gaps.extend(b - a for a, b in itertools.pairwise(times))
    gaps.sort()
    if not gaps:
        return {}
    return {
        "min_s": round(gaps[0], 3),
        "p50_s": round(common.percentile(gaps, 50) or 0.0, 3),
        "p90_s": round(common.percentile(gaps, 90) or 0.0, 3),
        "max_s": round(gaps[-1], 3),
        "mean_s": round(statistics.fmean(gaps), 3),
    }


def rate_profile(posts: list[dict[str, Any]], t0: float) -> list[int]:
    """Posts stored in each whole second after t0 (shows the workspace budget at work)."""
    if not posts:
        return []
    seconds = [int(p["t"] - t0) for p in posts]
    counts = Counter(seconds)
    return [counts.get(s, 0) for s in range(max(seconds) + 1)]


def engine_floor(events: int, channels: int) -> dict[str, Any]:
    """The best completion the engine's own pacing allows, with zero processing time: posts to a
    channel CHANNEL_GAP apart, all within the workspace token bucket (WORKSPACE_BURST tokens,
    refilled at WORKSPACE_RATE_PER_SECOND). Event i goes to channel i mod K, as in the benchmark.
    The constants are read from storage.outbox, so this follows the engine if they change."""
    from storage import outbox

    gap = outbox.CHANNEL_GAP.total_seconds()
    rate, burst = outbox.WORKSPACE_RATE_PER_SECOND, outbox.WORKSPACE_BURST
    remaining = [len(range(k, events, channels)) for k in range(channels)]
    free_at = [0.0] * channels
    tokens, refilled, last = burst, 0.0, 0.0
    for _ in range(events):
        channel = min((k for k in range(channels) if remaining[k]), key=lambda k: (free_at[k], k))
        tokens_at = refilled + max(0.0, 1.0 - tokens) / rate
        now = max(free_at[channel], tokens_at)
        tokens = min(burst, tokens + (now - refilled) * rate) - 1.0
        refilled = now
        free_at[channel] = now + gap
        remaining[channel] -= 1
        last = now
    ideal = math.ceil(events / channels) if events else 0
    return {
        "completion_s": round(last, 3),
        "ratio": round(last / ideal, 3) if ideal else None,
        "channel_gap_s": gap,
        "workspace_rate_per_s": rate,
        "workspace_burst": burst,
    }


# ---------------------------------------------------------------------------------------------
# Phases
# ---------------------------------------------------------------------------------------------


def latency_phase(
    args: argparse.Namespace,
    the_plan: dict[str, Any],
    port: int,
    path: str,
    slack: Any,
    outbox: Outbox,
    server_pid: int,
) -> dict[str, Any]:
    expected: dict[int, str] = the_plan["latency"]
    channels = set(expected.values())
    meter = common.CpuMeter(server_pid)
    raw = run_loadgen({"port": port, "path": path, "ids": list(expected), "rate": args.latency_rate})
    acked_at = {r[0]: r[2] for r in raw["records"] if isinstance(r[3], int) and 200 <= r[3] < 300}
    complete = slack.wait_posts(channels, len(acked_at), time.monotonic() + args.tail)
    time.sleep(GRACE_S)
    cpu = meter.stop(raw["client_cpu_s"])
    posts = slack.posts_in(channels)
    first_post: dict[str, float] = {}
    for post in posts:
        first_post.setdefault(post["channel"], post["t"])
    latencies = sorted(
        (first_post[channel] - acked_at[object_id]) * 1000
        for object_id, channel in expected.items()
        if object_id in acked_at and channel in first_post
    )
    check = exactly_once(expected, outbox.deliveries(), posts)
    calls = slack.calls_in(channels)
    rejected = len(slack.rejections_in(channels))
    summary: dict[str, Any] = {
        "events": len(expected),
        "rate_per_s": args.latency_rate,
        "webhooks": ack_summary(raw["records"]),
        "max_send_lag_ms": round(raw["max_send_lag_ms"], 1),
        "all_posted_in_time": complete,
        "measured": len(latencies),
        "post_calls": calls,
        "rejected_429": rejected,
        "exactly_once": check,
        "cpu": cpu,
    }
    for name, pct in (("p50", 50), ("p90", 90), ("p99", 99)):
        summary[f"{name}_ms"] = _round(common.percentile(latencies, pct))
    summary["min_ms"] = _round(latencies[0] if latencies else None)
    summary["max_ms"] = _round(latencies[-1] if latencies else None)
    summary["mean_ms"] = _round(statistics.fmean(latencies) if latencies else None)
    return summary


def throttled_phase(
    args: argparse.Namespace,
    the_plan: dict[str, Any],
    port: int,
    path: str,
    slack: Any,
    outbox: Outbox,
    server_pid: int,
) -> dict[str, Any]:
    expected: dict[int, str] = the_plan["throttled"]
    channels = set(expected.values())
    ideal_s = math.ceil(args.events / args.channels)
    meter = common.CpuMeter(server_pid)
    raw = run_loadgen({"port": port, "path": path, "ids": list(expected), "rate": 0})
    records = raw["records"]
    t0 = records[0][1]  # the first webhook sent
    acked = sum(1 for r in records if isinstance(r[3], int) and 200 <= r[3] < 300)
    complete = slack.wait_posts(channels, acked, t0 + args.deadline)
    time.sleep(GRACE_S)
    cpu = meter.stop(raw["client_cpu_s"])
    posts = slack.posts_in(channels)
    rejections = slack.rejections_in(channels)
    calls = slack.calls_in(channels)
    deliveries = outbox.deliveries()
    check = exactly_once(expected, deliveries, posts)
    # From sent_at (written by the engine just before chat.postMessage) to the fake storing the post.
    sent_at = {d["key"]: d["sent_at"] for d in deliveries}
    after_sent = {
        id(p): (p["wall"] - sent_at[p["key"]]) * 1000 for p in posts if sent_at.get(p["key"]) is not None
    }
    # Completion: the last post that completes the set (a late duplicate would not count here,
    # it shows up in the exactly-once check instead).
    first_of_key: dict[str | None, float] = {}
    for post in posts:
        first_of_key.setdefault(post["key"], post["t"])
    done_at = max(first_of_key.values()) if first_of_key else None
    completion = (done_at - t0) if (done_at is not None and complete) else None
    per_channel = Counter(p["channel"] for p in posts)
    return {
        "events": args.events,
        "channels": args.channels,
        "webhooks": ack_summary(records),
        "burst_send_s": round(records[-1][2] - t0, 3),
        "all_posted_in_time": complete,
        "ideal_s": ideal_s,
        "completion_s": _round(completion, 3),
        "ratio": _round(completion / ideal_s, 3) if completion is not None else None,
        "first_post_after_s": _round(min(first_of_key.values()) - t0, 3) if first_of_key else None,
        "post_calls": calls,
        "rejected_429": len(rejections),
        "rejected_pct": round(100 * len(rejections) / calls, 2) if calls else None,
        "rejections": [{**r, "t": round(r["t"] - t0, 3)} for r in rejections[:20]],
        "posts_per_channel": dict(sorted(per_channel.items())),
        "channel_gaps": channel_gaps(posts),
        "posts_per_second": rate_profile(posts, t0),
        "engine_floor": engine_floor(args.events, args.channels),
        "exactly_once": check,
        # Every stored post: s after the first webhook was sent, channel, ms after its sent_at.
        "timeline": [[round(p["t"] - t0, 3), p["channel"], _round(after_sent.get(id(p)))] for p in posts],
        "stored_after_sent_at_ms": {
            name: _round(common.percentile(sorted(after_sent.values()), pct))
            for name, pct in (("p50", 50), ("p90", 90), ("max", 100))
        },
        "cpu": cpu,
    }


# ---------------------------------------------------------------------------------------------
# One leg: one database, both phases
# ---------------------------------------------------------------------------------------------


# Log lines seen on every run that say nothing about delivery; counted apart from the rest.
BOLT_NOTE = "As you gave `client` as well, `token` will be unused"  # Bolt, told a client: harmless
# A gunicorn worker exiting: it inherited the master's multiprocessing child (the background
# process, started in `when_ready` before the workers fork), and multiprocessing's atexit hook
# tries to join it from the wrong process. Two workers may interleave their tracebacks.
WORKER_EXIT_JOIN = "can only join a child process"


def scan_server_log(log_path: Path) -> dict[str, Any]:
    """Tracebacks, errors and warnings in the server's log, with the known noise counted apart."""
    counts = {"tracebacks": 0, "errors": 0, "warnings": 0}
    noise = {"bolt_client_and_token": 0, "worker_exit_join": 0}
    samples: list[str] = []
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return {**counts, "known_noise": noise, "samples": samples}
    for i, line in enumerate(lines):
        sample = line
        if BOLT_NOTE in line:
            noise["bolt_client_and_token"] += 1
            continue
        if WORKER_EXIT_JOIN in line:
            continue  # part of a traceback counted below
        if line.startswith("Traceback"):
            block = lines[i + 1 : i + 20]
            if any(WORKER_EXIT_JOIN in later for later in block):
                noise["worker_exit_join"] += 1
                continue
            counts["tracebacks"] += 1
            sample = " | ".join([line, *block[:12]])
        elif " ERROR " in line or "[ERROR]" in line or " CRITICAL " in line:
            counts["errors"] += 1
        elif " WARNING " in line or "[WARNING]" in line:
            counts["warnings"] += 1
        else:
            continue
        if len(samples) < 12:
            samples.append(sample[:1500])
    return {**counts, "known_noise": noise, "samples": samples}


def run_leg(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    leg: dict[str, Any] = {"db": kind}
    idle = common.machine_cpu_times()
    time.sleep(1.0)
    leg["machine_busy_before_pct"] = common.busy_pct(idle, common.machine_cpu_times())
    if (leg["machine_busy_before_pct"] or 0) > common.BUSY_MACHINE_PCT:
        print(
            f"  [{kind}] WARNING: the machine is already {leg['machine_busy_before_pct']}% busy before the "
            "benchmark starts: expect slower, noisier numbers",
            file=sys.stderr,
        )
    the_plan = plan(args)
    BenchFreshBooks, PacedSlack = _fakes()
    tmp = Path(tempfile.mkdtemp(prefix=f"fbslack-bench-deliver-{kind}-"))
    began = time.monotonic()
    try:
        with (
            BenchFreshBooks() as fb,
            PacedSlack() as slack,
            common.fresh_database(kind, tmp) as url,
        ):
            fb.grant(FB_ACCESS_TOKEN, FB_REFRESH_TOKEN)
            for object_id, channel in [*the_plan["latency"].items(), *the_plan["throttled"].items()]:
                fb.add_object(
                    common.ACCOUNT_ID, "invoices", invoice_json(object_id, the_plan["rules"][channel])
                )
            slack.add_channels([*the_plan["latency_channels"], *the_plan["throttled_channels"]])
            token = migrate_and_seed(url, the_plan["rules"])
            outbox = Outbox(url)
            port = common.free_port()
            env = server_environment(url, port, tmp, fb.base_url, slack.base_url, args)
            server = common.Server(env, tmp / "server.log", port)
            path = f"/freshbooks/webhooks/{token}"
            try:
                leg["startup_s"] = round(server.wait_healthy(), 2)
                time.sleep(1.0)  # the background process starts after the workers: let it settle
                phases = [
                    ("latency", latency_phase, latency_line, args.latency_events),
                    ("throttled", throttled_phase, throttled_line, args.events),
                ]
                for name, run, line, count in phases:
                    if not count:
                        continue
                    leg[name] = run(args, the_plan, port, path, slack, outbox, server.proc.pid)
                    print(f"  [{kind}] {name}: {line(leg[name])}", file=sys.stderr, flush=True)
                    other = leg[name]["cpu"]["other_pct"] or 0
                    if other > common.BUSY_MACHINE_PCT:
                        print(
                            f"  [{kind}] WARNING: other processes took {other}% of the machine during "
                            f"the {name} phase: its numbers are skewed",
                            file=sys.stderr,
                        )
            finally:
                leg["stop"] = server.stop()
                if not leg["stop"]["clean"]:
                    leg["server_log_tail"] = server.log_tail()
                    print(
                        f"  [{kind}] WARNING: the server did not stop cleanly ({leg['stop']}); "
                        f"its log ends:\n{leg['server_log_tail']}",
                        file=sys.stderr,
                    )
            leg["deliveries_by_state"] = dict(Counter(d["state"] for d in outbox.deliveries()))
            leg["inbox_by_state"] = outbox.inbox_by_state()
            calls = Counter(call[0] for call in slack.calls)
            calls["chat.postMessage"] = sum(slack.post_calls.values())  # with the 429s, not in .calls
            leg["slack_calls"] = dict(calls)
            leg["freshbooks_fetches"] = len(fb.calls_to("GET", "/accounting/"))
            outbox.dispose()
            leg["server_log"] = scan_server_log(tmp / "server.log")
    finally:
        if args.keep:
            leg["kept_dir"] = str(tmp)
            print(f"  [{kind}] kept {tmp} (server.log, SQLite file)", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    leg["leg_seconds"] = round(time.monotonic() - began, 1)
    return leg


def latency_line(s: dict[str, Any]) -> str:
    return (
        f"{s['measured']}/{s['events']} posted at {fmt(s['rate_per_s'])}/s; ack -> stored "
        f"p50 {fmt(s['p50_ms'])} ms, p90 {fmt(s['p90_ms'])} ms, p99 {fmt(s['p99_ms'])} ms, "
        f"max {fmt(s['max_ms'])} ms; 429s {s['rejected_429']}/{s['post_calls']}; "
        f"exactly once: {s['exactly_once']['ok']}"
    )


def throttled_line(s: dict[str, Any]) -> str:
    return (
        f"{s['events']} events over {s['channels']} channels in {fmt(s['completion_s'])} s "
        f"(ideal {s['ideal_s']} s, ratio {fmt(s['ratio'])}, engine floor {fmt(s['engine_floor']['ratio'])}); "
        f"429s {s['rejected_429']}/{s['post_calls']}; posts/s {s['posts_per_second']}; "
        f"channel gap p50 {s['channel_gaps'].get('p50_s')} s; exactly once: {s['exactly_once']['ok']}"
    )


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def yes(flag: bool) -> str:
    return "yes" if flag else "**no**"


def targets(leg: dict[str, Any]) -> dict[str, bool]:
    met: dict[str, bool] = {}
    th, lat = leg.get("throttled"), leg.get("latency")
    if th:
        met["ratio"] = th["ratio"] is not None and th["ratio"] <= TARGET_RATIO
        met["429"] = th["rejected_pct"] is not None and th["rejected_pct"] < TARGET_429_PCT
    if lat:
        met["p50"] = lat["p50_ms"] is not None and lat["p50_ms"] < TARGET_P50_MS and lat["all_posted_in_time"]
    met["once"] = all(p["exactly_once"]["ok"] for p in (th, lat) if p)
    return met


def _row(leg: dict[str, Any]) -> str:
    th, lat = leg.get("throttled") or {}, leg.get("latency") or {}
    pct = th.get("rejected_pct")
    cells = [
        leg["db"],
        fmt(th.get("completion_s")),
        fmt(th.get("ratio")),
        fmt((th.get("engine_floor") or {}).get("ratio")),
        "n/a" if pct is None else f"{fmt(float(pct))}% ({th['rejected_429']}/{th['post_calls']})",
        yes(targets(leg)["once"]),
        fmt(lat.get("p50_ms")),
        fmt(lat.get("p90_ms")),
        fmt(lat.get("p99_ms")),
        fmt(lat.get("max_ms")),
        ", ".join(f"{name} {yes(ok)}" for name, ok in targets(leg).items() if name != "once"),
    ]
    return "| " + " | ".join(cells) + " |"


def _notes(leg: dict[str, Any]) -> str:
    parts = [f"- {leg['db']}:"]
    th, lat = leg.get("throttled"), leg.get("latency")
    if th:
        e, gaps = th["exactly_once"], th["channel_gaps"]
        parts.append(
            f"throttled: {e['stored_messages']} messages for {e['expected']} events (missing {e['missing']}, "
            f"duplicated {e['duplicated']}, unexpected {e['unexpected_posts']}); first post "
            f"{fmt(th['first_post_after_s'])} s after the first webhook; posts stored per second "
            f"{th['posts_per_second']}; gap between posts in a channel p50 {gaps.get('p50_s')} s "
            f"(min {gaps.get('min_s')}, max {gaps.get('max_s')})"
            + (
                "; 429s came "
                + ", ".join(f"{r['since_last_s']} s" for r in th["rejections"][:5])
                + " after the channel's previous post"
                if th["rejections"]
                else ""
            )
            + f"; a post is stored p50 {fmt(th['stored_after_sent_at_ms']['p50'])} ms (max "
            f"{fmt(th['stored_after_sent_at_ms']['max'])} ms) after the engine's sent_at"
            + f"; machine {fmt(th['cpu']['machine_busy_pct'])}% busy "
            f"({fmt(th['cpu']['other_pct'])}% by others)."
        )
    if lat:
        parts.append(
            f"latency: {lat['measured']}/{lat['events']} measured, min {fmt(lat['min_ms'])} ms, mean "
            f"{fmt(lat['mean_ms'])} ms; webhook ack p50 {fmt(lat['webhooks']['ack_p50_ms'])} ms; "
            f"{lat['rejected_429']} 429s; machine {fmt(lat['cpu']['machine_busy_pct'])}% busy "
            f"({fmt(lat['cpu']['other_pct'])}% by others)."
        )
    log = leg["server_log"]
    parts.append(
        f"Deliveries {leg['deliveries_by_state']}; server log: {log['tracebacks']} tracebacks, "
        f"{log['errors']} errors, {log['warnings']} warnings (known noise apart: {log['known_noise']}); stop "
        f"{'clean' if leg['stop']['clean'] else 'NOT clean'} in {fmt(leg['stop']['seconds'])} s; "
        f"leg {fmt(leg['leg_seconds'])} s."
    )
    return " ".join(parts)


def markdown(results: dict[str, Any]) -> str:
    cfg, mach = results["config"], results["machine"]
    ideal = math.ceil(cfg["events"] / cfg["channels"])
    lines = [
        f"### Slack delivery: `fbslack serve` ({cfg['workers'] or 'default'} workers x "
        f"{cfg['threads'] or 'default'} threads, plus the background process) on {mach['cpus']} CPUs "
        f"({mach['cpu_model']})",
        "",
        "The fake Slack enforces 1 chat.postMessage per second per channel (429, Retry-After: 1). "
        f"Throttled: {cfg['events']} `{EVENT}` webhooks sent back to back, spread over {cfg['channels']} "
        f"channels; first webhook sent -> last message stored, over the ideal ceil(N/K) = {ideal} s. "
        "Engine floor: the best ratio the engine's own pacing constants allow (1.05 s per channel, "
        "workspace bucket) with zero processing time. "
        f"Latency: {cfg['latency_events']} webhooks at {fmt(cfg['latency_rate'])}/s, one channel each; "
        "webhook acknowledged -> message stored.",
        "",
        f"| DB | throttled (s) | ratio (<= {TARGET_RATIO:g}) | engine floor "
        f"| 429 share (< {TARGET_429_PCT:g}%) | exactly once | latency p50 ms (< {TARGET_P50_MS:g}) "
        "| p90 ms | p99 ms | max ms | targets met |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    notes = []
    for leg in results["legs"]:
        if "skipped" in leg or "failed" in leg:
            what = f"skipped: {leg['skipped']}" if "skipped" in leg else f"FAILED: {leg['failed']}"
            lines.append(f"| {leg['db']} | {what} | | | | | | | | | |")
            continue
        lines.append(_row(leg))
        notes.append(_notes(leg))
    return "\n".join([*lines, "", *notes])


def code_versions() -> dict[str, str]:
    """Short hashes of the files that decide delivery behaviour: results name the code they measured."""
    files = (
        "connector/pipeline/deliver/engine.py",
        "storage/outbox.py",
        "connector/pipeline/loop.py",
        "app.py",
    )
    found = {}
    for name in files:
        with contextlib.suppress(OSError):
            found[name] = hashlib.sha256((REPO / name).read_bytes()).hexdigest()[:12]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Slack delivery benchmark through `fbslack serve`.")
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument(
        "--events", type=int, default=60, help="throttled phase: webhooks, sent back to back (60)"
    )
    parser.add_argument(
        "--channels", type=int, default=4, help="throttled phase: channels they spread over (4)"
    )
    parser.add_argument(
        "--latency-events", type=int, default=100, help="latency phase: webhooks, one channel each (100)"
    )
    parser.add_argument(
        "--latency-rate",
        type=float,
        default=2.5,
        help="latency phase: webhooks/s (2.5; keep it below the engine's workspace budget of 3 posts/s)",
    )
    parser.add_argument(
        "--deadline",
        type=float,
        default=45.0,
        help="throttled phase: max s from first webhook to last post (45)",
    )
    parser.add_argument(
        "--tail", type=float, default=15.0, help="latency phase: max s to wait after the last ack (15)"
    )
    parser.add_argument("--workers", type=int, help="WEB_WORKERS for the server (default: the server's)")
    parser.add_argument("--threads", type=int, help="WEB_THREADS for the server (default: the server's)")
    parser.add_argument("--log-level", default="WARNING", help="the server's LOG_LEVEL (WARNING)")
    parser.add_argument("--json", type=Path, help="also write the full results to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (server.log, SQLite file)")
    parser.add_argument(
        "--ignore-unknown",
        action="store_true",
        help="ignore options this benchmark does not know (bench/run_all.sh gives every benchmark "
        "the same extra arguments)",
    )
    args, unknown = parser.parse_known_args(argv)
    if unknown and not args.ignore_unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if unknown:
        print(
            f"deliver.py: ignoring options meant for other benchmarks: {' '.join(unknown)}", file=sys.stderr
        )
    if args.channels < 1 or args.events < 0 or args.latency_events < 0 or args.latency_rate <= 0:
        parser.error("--channels must be >= 1, --events/--latency-events >= 0, --latency-rate > 0")

    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    results: dict[str, Any] = {
        "benchmark": "deliver",
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": common.machine(),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "target": {"ratio": TARGET_RATIO, "rejected_pct": TARGET_429_PCT, "latency_p50_ms": TARGET_P50_MS},
        "code": code_versions(),
        "legs": [],
    }
    status = common.run_legs(
        kinds, lambda kind: run_leg(kind, args), results, lambda leg: bool(not targets(leg)["once"])
    )
    common.write_results(results, markdown(results), args.json)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
