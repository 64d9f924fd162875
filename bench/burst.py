"""Burst benchmark (issue 15 §2) through the production server (`fbslack serve`).

The same server, fakes and load generator as bench/deliver.py (the fake Slack refuses a second
post to a channel within 1 s with 429 + Retry-After), with the rules' default burst size (5):

* burst: `--events` (100) invoice.create webhooks sent back to back, all routed to ONE channel.
  Reported: the time from the first webhook sent until every invoice is visible in Slack (listed in
  a stored message: its own, a summary, or a reply in a summary's thread), the number of top-level
  messages, the 429 answers, and whether each invoice is listed exactly once (by the metadata key
  of the message that lists it, joined to the deliveries, and by the invoice numbers in its blocks);
* latency: `--latency-events` (100) lone webhooks at `--latency-rate` (2.5/s), each to a channel
  of its own: webhook acknowledged to message stored (bench/deliver.py's latency phase), to show
  that a lone event is not held back by the burst logic.

Targets: the burst visible within 10 s in at most 3 top-level messages with no 429; the lone
event's p50 under 50 ms.

    .venv/bin/python bench/burst.py [--db sqlite|postgresql|both] [--events 100] [--json OUT]
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
for _path in (str(REPO), str(BENCH)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import deliver  # noqa: E402  (bench/deliver.py: fakes, seeding, load generator, latency phase)
import ingest as common  # noqa: E402

BURST_IDS = 300_000
BURST_CHANNEL = "CBURST0001"
TARGET_S = 10.0
TARGET_TOP_LEVEL = 3
TARGET_P50_MS = 50.0
_LISTED = re.compile(r"\|Invoice (BENCH\d+)>")


def plan(args: argparse.Namespace) -> dict[str, Any]:
    latency_channels = [f"CLAT{k:04d}" for k in range(args.latency_events)]
    return {
        "burst": {BURST_IDS + i: BURST_CHANNEL for i in range(args.events)},
        "latency": {deliver.LATENCY_IDS + i: latency_channels[i] for i in range(args.latency_events)},
        "latency_channels": latency_channels,
        "rules": {channel: f"Client {channel}" for channel in [*latency_channels, BURST_CHANNEL]},
    }


def deliveries(url: str) -> list[dict[str, Any]]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT e.object_id, d.channel_id, d.delivery_key, d.batch_key, d.state "
                    "FROM deliveries d JOIN events e ON e.id = d.event_id"
                )
            ).all()
    finally:
        engine.dispose()
    return [
        {"object_id": int(r[0]), "channel": r[1], "key": r[2], "batch": r[3], "state": r[4]} for r in rows
    ]


def burst_phase(
    args: argparse.Namespace, the_plan: dict[str, Any], port: int, path: str, slack: Any, url: str
) -> dict[str, Any]:
    expected: dict[int, str] = the_plan["burst"]
    raw = deliver.run_loadgen({"port": port, "path": path, "ids": list(expected), "rate": 0})
    t0 = raw["records"][0][1]
    deadline = t0 + args.deadline
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = [r for r in deliveries(url) if r["object_id"] in expected]
        if len(rows) == len(expected) and all(r["state"] == "delivered" for r in rows):
            break
        time.sleep(0.2)
    time.sleep(deliver.GRACE_S)  # time for a late duplicate to show up
    posts = slack.posts_in({BURST_CHANNEL})
    stored_at: dict[str | None, list[float]] = {}
    for post in posts:
        stored_at.setdefault(post["key"], []).append(post["t"])
    visible = [min(stored_at[r["batch"] or r["key"]]) for r in rows if (r["batch"] or r["key"]) in stored_at]
    messages = list(slack.channels[BURST_CHANNEL].messages)
    top = [m for m in messages if m.get("thread_ts") in (None, m["ts"])]
    listed: Counter[str] = Counter()
    for message in messages:
        found = _LISTED.findall(str(message.get("blocks") or ""))
        listed.update(found or re.findall(r"^Invoice (BENCH\d+) created", message["text"]))
    wanted = {f"BENCH{i}" for i in expected}
    return {
        "events": len(expected),
        "burst_send_s": round(raw["records"][-1][2] - t0, 3),
        "all_visible": len(visible) == len(expected),
        "visible_s": round(max(visible) - t0, 3) if len(visible) == len(expected) else None,
        "first_post_s": round(min(p["t"] for p in posts) - t0, 3) if posts else None,
        "top_level_messages": len(top),
        "thread_replies": len(messages) - len(top),
        "post_calls": slack.calls_in({BURST_CHANNEL}),
        "rejected_429": len(slack.rejections_in({BURST_CHANNEL})),
        "posts_per_key_max": max(Counter(p["key"] for p in posts).values(), default=0),
        "listed_once": set(listed) == wanted and set(listed.values()) == {1},
        "texts": [m["text"][:80] for m in top],
    }


def run_leg(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    leg: dict[str, Any] = {"db": kind}
    the_plan = plan(args)
    BenchFreshBooks, PacedSlack = deliver._fakes()
    tmp = Path(tempfile.mkdtemp(prefix=f"fbslack-bench-burst-{kind}-"))
    try:
        with BenchFreshBooks() as fb, PacedSlack() as slack, common.fresh_database(kind, tmp) as url:
            fb.grant(deliver.FB_ACCESS_TOKEN, deliver.FB_REFRESH_TOKEN)
            for object_id, channel in [*the_plan["latency"].items(), *the_plan["burst"].items()]:
                fb.add_object(
                    common.ACCOUNT_ID, "invoices", deliver.invoice_json(object_id, the_plan["rules"][channel])
                )
            slack.add_channels([*the_plan["latency_channels"], BURST_CHANNEL])
            token = deliver.migrate_and_seed(url, the_plan["rules"], collapse_at=5)
            port = common.free_port()
            env = deliver.server_environment(url, port, tmp, fb.base_url, slack.base_url, args)
            server = common.Server(env, tmp / "server.log", port)
            path = f"/freshbooks/webhooks/{token}"
            try:
                leg["startup_s"] = round(server.wait_healthy(), 2)
                time.sleep(1.0)
                if args.latency_events:
                    outbox = deliver.Outbox(url)
                    leg["latency"] = deliver.latency_phase(
                        args, the_plan, port, path, slack, outbox, server.proc.pid
                    )
                    outbox.dispose()
                    lat = leg["latency"]
                    print(
                        f"  [{kind}] lone events: p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms",
                        file=sys.stderr,
                    )
                time.sleep(5.0)  # the workspace budget refills
                leg["burst"] = burst_phase(args, the_plan, port, path, slack, url)
                print(f"  [{kind}] burst: {leg['burst']}", file=sys.stderr, flush=True)
            finally:
                leg["stop"] = server.stop()
            leg["server_log"] = deliver.scan_server_log(tmp / "server.log")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return leg


def met(leg: dict[str, Any]) -> dict[str, bool]:
    burst = leg.get("burst") or {}
    latency = leg.get("latency") or {}
    return {
        "visible_10s": bool(burst.get("visible_s") is not None and burst["visible_s"] <= TARGET_S),
        "top_level_3": bool(burst.get("top_level_messages", 99) <= TARGET_TOP_LEVEL),
        "no_429": burst.get("rejected_429") == 0,
        "exactly_once": bool(burst.get("listed_once") and burst.get("posts_per_key_max") == 1),
        "lone_p50_50ms": bool(latency.get("p50_ms") is not None and latency["p50_ms"] < TARGET_P50_MS),
    }


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "| DB | 100 invoices visible (s) | top-level messages | thread replies | 429 | listed exactly once "
        "| lone event p50 / p99 (ms) |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for leg in results["legs"]:
        if "burst" not in leg:
            lines.append(f"| {leg['db']} | {leg.get('skipped') or leg.get('failed')} | | | | | |")
            continue
        b, lat, ok = leg["burst"], leg.get("latency") or {}, met(leg)
        lines.append(
            f"| {leg['db']} | {b['visible_s']} | {b['top_level_messages']} | {b['thread_replies']} | "
            f"{b['rejected_429']} | {'yes' if ok['exactly_once'] else 'NO'} | "
            f"{lat.get('p50_ms')} / {lat.get('p99_ms')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Burst summary benchmark through `fbslack serve`.")
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--events", type=int, default=100, help="webhooks in the burst, one channel (100)")
    parser.add_argument("--latency-events", type=int, default=100, help="lone webhooks, a channel each (100)")
    parser.add_argument("--latency-rate", type=float, default=2.5, help="lone webhooks per second (2.5)")
    parser.add_argument("--deadline", type=float, default=60.0, help="max s for the burst to be visible (60)")
    parser.add_argument(
        "--tail", type=float, default=15.0, help="latency phase: s to wait after the last ack"
    )
    parser.add_argument("--workers", type=int)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--ignore-unknown", action="store_true")
    args, unknown = parser.parse_known_args(argv)
    if unknown and not args.ignore_unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    results: dict[str, Any] = {
        "benchmark": "burst",
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": common.machine(),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "legs": [],
    }
    status = common.run_legs(
        kinds, lambda kind: run_leg(kind, args), results, lambda leg: not all(met(leg).values())
    )
    common.write_results(results, markdown(results), args.json)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
