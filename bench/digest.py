"""Digest benchmark: fetch, figures, message and chart for a big business, in time and peak memory.

The fake FreshBooks of tests/support/fakes (in this process) serves a business with `--invoices`
(10,000), `--payments` (5,000), `--bills` (2,000) and `--expenses` (3,000) in three currencies,
in pages of 100. Every payment and expense is dated in the days the digest reads (weekly: the
week just ended and the one before; `--cadence daily`: the chart's 8 weeks), and every bill is
open, so all of them are listed and parsed: the worst case. The digest runs in a child process
(spawned: a fresh interpreter, which imports only what the digest needs), twice:

1. timed: wall time of fetch + figures + message + chart (the PNG and its alt text; the fake
   FreshBooks, single-threaded Python in the parent, is most of it), the child's CPU time, and
   its peak resident size (ru_maxrss, the whole interpreter included), with its size before the
   run for reference and what importing the chart's Pillow added to it;
2. traced: tracemalloc's peak of Python allocations during the same work (tracing slows it, so
   its time is not reported).

Targets (issue 15 section 4): under 30 s and under 200 MB.

    .venv/bin/python bench/digest.py [--invoices 10000] [--payments 5000] [--bills 2000]
                                     [--expenses 3000] [--cadence weekly|daily] [--json OUT]

A benchmark, not a test: it reports numbers, and exits non-zero only if the run failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import resource
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
for _path in (str(REPO), str(BENCH)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

ACCOUNT = "p7rQW5"
TOKEN = "fb-access-token"
ZONE = ZoneInfo("America/New_York")
# A Monday morning: the weekly digest reads Mon Nov 23 - Sun Nov 29 and the week before it; the
# daily one Sun Nov 29 and the day before, and its chart the 8 weeks Oct 5 - Nov 29.
NOW = dt.datetime(2026, 11, 30, 8, 0, tzinfo=ZONE)
TARGET_SECONDS = 30.0
TARGET_MB = 200.0


def _rss_mb() -> float:
    # Linux reports ru_maxrss in kilobytes.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run_digest(base_url: str, traced: bool, cadence: str) -> dict[str, Any]:
    """In the child: one digest, start to finish. Imports happen here, before the measurement."""
    from connector.features.digest.fetch import fetch_inputs
    from connector.features.digest.figures import compute
    from connector.features.digest.message import render_digest
    from connector.features.digest.period import Cadence, period_just_ended
    from connector.freshbooks.client import FreshBooksClient
    from connector.pipeline.render.formatting import RenderContext

    rss_without_chart = _current_rss_mb()
    from connector.features.digest.chart import alt_text, chart_for, chart_png

    class OneToken:
        def call(self, connection_id: int, fn: Any) -> Any:
            return fn(TOKEN)

        def forget(self, connection_id: int) -> None:
            pass

    client = FreshBooksClient(base_url=base_url, timeout=60)
    period = period_just_ended(NOW, cadence=Cadence(cadence), zone=ZONE)
    rss_before = _current_rss_mb()
    if traced:
        tracemalloc.start()
    cpu_started = time.process_time()
    started = time.perf_counter()
    inputs = fetch_inputs(
        client=client, tokens=OneToken(), connection_id=1, account_id=ACCOUNT, period=period
    )
    fetched = time.perf_counter()
    digest = compute(inputs, period, NOW)
    computed = time.perf_counter()
    message = render_digest(digest, RenderContext(account_id=ACCOUNT, delivery_key="bench"))
    rendered = time.perf_counter()
    drawn = chart_for(digest, inputs)
    png = chart_png(drawn)
    alt = alt_text(drawn)
    finished = time.perf_counter()
    cpu = time.process_time() - cpu_started
    peak_traced = tracemalloc.get_traced_memory()[1] / 2**20 if traced else None
    if traced:
        tracemalloc.stop()
    client.close()
    return {
        "seconds": finished - started,
        "cpu_seconds": cpu,
        "fetch_seconds": fetched - started,
        "figures_seconds": computed - fetched,
        "message_seconds": rendered - computed,
        "chart_seconds": finished - rendered,
        "chart_png_bytes": len(png),
        "chart_alt_chars": len(alt),
        "chart_movements": len(inputs.movements),
        "chart_import_mb": rss_before - rss_without_chart,
        "rss_before_mb": rss_before,
        "peak_rss_mb": _rss_mb(),
        "peak_traced_mb": peak_traced,
        "kept": {
            "payments": len(inputs.payments),
            "invoices": len(inputs.invoices),
            "bills": len(inputs.bills),
            "expenses": len(inputs.expenses),
        },
        "blocks": len(message.blocks),
        "payments_counted": int(digest.cash.flow.count.current + digest.cash.flow.count.previous),
    }


def _child(base_url: str, traced: bool, cadence: str, out: Any) -> None:
    out.send(run_digest(base_url, traced, cadence))
    out.close()


def _in_child(base_url: str, traced: bool, cadence: str) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(base_url, traced, cadence, send))
    process.start()
    send.close()
    result: dict[str, Any] = receive.recv()
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"the digest child exited with {process.exitcode}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--invoices", type=int, default=10_000)
    parser.add_argument("--payments", type=int, default=5_000)
    parser.add_argument("--bills", type=int, default=2_000)
    parser.add_argument("--expenses", type=int, default=3_000)
    parser.add_argument("--cadence", choices=("weekly", "daily"), default="weekly")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    from tests.support.books import bill_json, random_books
    from tests.support.fakes.freshbooks import FakeFreshBooks

    last_day = NOW.date() - dt.timedelta(days=1)
    books = random_books(
        2026,
        today=last_day,
        invoices=args.invoices,
        payments=args.payments,
        bills=args.bills,
        expenses=args.expenses,
        # The two weeks a weekly digest reads, or the 8 weeks of a daily digest's chart, no more.
        days_back=13 if args.cadence == "weekly" else 55,
        days_ahead=0,
    )
    for n, bill in enumerate(books.bills):
        if bill["status"] == "paid" or bill["vis_state"]:  # every bill open and live: all are listed
            due = dt.date.fromisoformat(bill["due_date"])
            books.bills[n] = bill_json(
                bill["id"], outstanding="120.00", currency=bill["currency_code"], due_date=due
            )
    for item in (*books.payments, *books.expenses):
        item["vis_state"] = 0
    with FakeFreshBooks() as fake:
        fake.valid_tokens.add(TOKEN)
        books.load_into(fake, ACCOUNT)
        timed = _in_child(fake.base_url, traced=False, cadence=args.cadence)
        pages = len(fake.calls)
        traced = _in_child(fake.base_url, traced=True, cadence=args.cadence)
    result = {
        "benchmark": "digest",
        "books": {
            "invoices": args.invoices,
            "payments": args.payments,
            "bills": args.bills,
            "expenses": args.expenses,
        },
        "cadence": args.cadence,
        "requests": pages,
        "seconds": round(timed["seconds"], 2),
        "cpu_seconds": round(timed["cpu_seconds"], 2),
        "fetch_seconds": round(timed["fetch_seconds"], 2),
        "figures_seconds": round(timed["figures_seconds"], 3),
        "message_seconds": round(timed["message_seconds"], 3),
        "chart_seconds": round(timed["chart_seconds"], 3),
        "chart_png_bytes": timed["chart_png_bytes"],
        "chart_alt_chars": timed["chart_alt_chars"],
        "chart_movements": timed["chart_movements"],
        "chart_import_mb": round(timed["chart_import_mb"], 1),
        "rss_before_mb": round(timed["rss_before_mb"], 1),
        "peak_rss_mb": round(timed["peak_rss_mb"], 1),
        "peak_traced_mb": round(traced["peak_traced_mb"], 1),
        "kept": timed["kept"],
        "blocks": timed["blocks"],
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
    }
    print("| measure | value | target |")
    print("|---|---|---|")
    print(f"| requests (pages of 100) | {pages} | |")
    print(
        f"| time ({args.cadence}): fetch + figures + message + chart | {result['seconds']} s "
        f"(fetch {result['fetch_seconds']} s, figures {result['figures_seconds']} s, "
        f"message {result['message_seconds']} s, chart {result['chart_seconds']} s) "
        f"| < {TARGET_SECONDS:.0f} s |"
    )
    print(f"| CPU time of the digest process (all its threads) | {result['cpu_seconds']} s | |")
    print(
        f"| peak resident size of the process | {result['peak_rss_mb']} MB "
        f"({result['rss_before_mb']} MB before the run) | < {TARGET_MB:.0f} MB |"
    )
    print(f"| peak Python allocations (tracemalloc) | {result['peak_traced_mb']} MB | |")
    print(
        f"| chart | {result['chart_png_bytes']:,} bytes of PNG, {result['chart_alt_chars']} characters "
        f"of alt text, from {result['chart_movements']:,} movements; importing it (Pillow) added "
        f"{result['chart_import_mb']} MB | |"
    )
    print(f"| objects kept | {result['kept']} | |")
    print(f"| load average while measured | {result['load_average']} | |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
