"""Memory benchmark: resident size of every server process after N events, and after N more.

For each database (a fresh SQLite file and/or a fresh PostgreSQL schema) it starts the production
server (`fbslack serve`: the gunicorn master, its web workers and the `fbslack worker` background
process) against the local fake FreshBooks and fake Slack of tests/support/fakes, and pushes `--events`
(10,000) invoice.create webhooks through the whole pipeline: signed webhook, inbox, fetch from the
fake FreshBooks, routing, rendering, the post to the fake Slack. When every event of a round has
been posted it reads VmRSS from /proc/<pid>/status of each process. It does that `--rounds` (2)
times and reports, per process, the size after each round and the growth from the first round to
the last. Targets: under 200 MB per process, no growth after the first round.

Slack paces posts (one per second per channel, and the engine's budget of 4 per second per
workspace), so at a single channel 20,000 posts would take hours. The events are spread over
`--workspaces` (20) workspaces, each with its own FreshBooks connection, webhook URL and
`--channels` (3) channels with one rule each, which lets the pipeline run at `--rate` (40/s).

    .venv/bin/python bench/memory.py [--db sqlite|postgresql|both] [--events 10000] [--rounds 2]
                                     [--rate 40] [--workspaces 20] [--channels 3] [--json OUT]

A benchmark, not a test: it reports numbers. It exits non-zero only when a leg could not run or
the events were not all posted before the deadline.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as dt
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
for _path in (str(REPO), str(BENCH)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import deliver  # noqa: E402  (bench/deliver.py: the server environment and its log scan)
import ingest as common  # noqa: E402  (bench/ingest.py: server, databases, webhook client, CPU meter)

EVENT = "invoice.create"
TARGET_RSS_MB = 200.0
# "No growth": allocator noise moves a process's RSS by a few MB; more than this counts as growth.
GROWTH_TOLERANCE_MB = 5.0
SETTLE_S = 3.0  # after the last post of a round: let in-flight work finish before measuring
SAMPLE_EVERY_S = 5.0
KEEP_MESSAGES = 200  # per channel, in the fake Slack (enough for in-doubt lookups)


# ---------------------------------------------------------------------------------------------
# The plan: event i goes to workspace i mod W, and within it to channel (i div W) mod C
# ---------------------------------------------------------------------------------------------


def channel_of(object_id: int, workspaces: int, channels: int) -> tuple[int, int]:
    return object_id % workspaces, (object_id // workspaces) % channels


def channel_id(workspace: int, channel: int) -> str:
    return f"CM{workspace:03d}X{channel:02d}"


def client_name(workspace: int, channel: int) -> str:
    """The client on the invoices routed to this channel (each channel's rule filters on it)."""
    return f"Client {workspace}-{channel}"


# ---------------------------------------------------------------------------------------------
# Fakes that stay small over 20,000 events
# ---------------------------------------------------------------------------------------------


def _fakes(workspaces: int, channels: int) -> tuple[type, type]:
    """The fake classes, imported late (tests/support/fakes import the app's modules)."""
    from tests.support.fakes.freshbooks import FakeFreshBooks
    from tests.support.fakes.slack import FakeSlack

    class Invoices(dict[tuple[str, str, str], dict[str, Any]]):
        """Every invoice id the load generator sends exists, made on request (not 20,000 dicts).
        Empty as a mapping: the reconciliation poll's listing finds nothing new."""

        def get(self, key: Any, default: Any = None) -> Any:
            account, kind, object_id = key
            if account != common.ACCOUNT_ID or kind != "invoices" or not object_id.isdigit():
                return default
            number = int(object_id)
            return deliver.invoice_json(number, client_name(*channel_of(number, workspaces, channels)))

    class BenchFreshBooks(FakeFreshBooks):
        def __init__(self) -> None:
            super().__init__()
            self.objects = Invoices()
            self.calls = collections.deque(maxlen=1000)  # type: ignore[assignment]
            self.requests = 0

        def _handle(self, method: str, raw_path: str, headers: dict[str, str], body: Any) -> Any:
            self.requests += 1
            return super()._handle(method, raw_path, headers, body)

        def _handler_class(self) -> type[BaseHTTPRequestHandler]:
            handler = super()._handler_class()
            handler.disable_nagle_algorithm = True  # as in bench/deliver.py: no 40 ms Nagle stalls
            return handler

    class BenchSlack(FakeSlack):
        def __init__(self) -> None:
            super().__init__()
            self.valid_tokens = {deliver.SLACK_BOT_TOKEN}
            self.calls = collections.deque(maxlen=1000)  # type: ignore[assignment]
            self.posts = 0

        def _chat_post_message(self, params: dict[str, Any]) -> dict[str, Any]:
            answer: dict[str, Any] = super()._chat_post_message(params)
            self.posts += 1
            kept = self.channels[str(params.get("channel", ""))].messages
            if len(kept) > 2 * KEEP_MESSAGES:
                del kept[:-KEEP_MESSAGES]
            return answer

        def _handler_class(self) -> type[BaseHTTPRequestHandler]:
            handler = super()._handler_class()
            handler.disable_nagle_algorithm = True
            return handler

    return BenchFreshBooks, BenchSlack


# ---------------------------------------------------------------------------------------------
# Seeding: W workspaces, each with a connection, a verified callback and C rules
# ---------------------------------------------------------------------------------------------


def migrate_and_seed(url: str, workspaces: int, channels: int) -> list[str]:
    """Migrate; return each workspace's webhook URL token (index = workspace number)."""
    from connector.domain.rules import RouteSpec
    from storage import connections, migrate, rules
    from storage.crypto import Cipher
    from storage.db import Database

    db = Database(url, pool_size=2)
    tokens: list[str] = []
    try:
        migrate.upgrade(db.engine)
        cipher = Cipher([common.ENCRYPTION_KEY])
        now = dt.datetime.now(dt.UTC)
        with db.session() as session:
            for w in range(workspaces):
                workspace = connections.ensure_workspace(
                    session, team_id=f"TMEM{w:05d}", now=dt.datetime.now(dt.UTC)
                )
                new = connections.create_connection(
                    session,
                    cipher,
                    workspace_id=workspace.id,
                    account_id=common.ACCOUNT_ID,
                    business_id=3,
                    business_name=f"Memory Business {w}",
                    access_token=deliver.FB_ACCESS_TOKEN,
                    refresh_token=deliver.FB_REFRESH_TOKEN,
                    token_expires_at=now + dt.timedelta(days=1),
                    now=dt.datetime.now(dt.UTC),
                )
                callback = connections.record_callback(
                    session,
                    connection_id=new.connection.id,
                    callback_id=common.CALLBACK_ID + w,
                    event=EVENT,
                    now=dt.datetime.now(dt.UTC),
                )
                connections.adopt_verifier(
                    session,
                    callback_row_id=callback.id,
                    verifier_enc=cipher.encrypt(common.VERIFIER),
                    now=now,
                )
                for c in range(channels):
                    rules.create_rule(
                        session,
                        cipher,
                        workspace_id=workspace.id,
                        connection_id=new.connection.id,
                        spec=RouteSpec(
                            patterns=(EVENT,),
                            channel_id=channel_id(w, c),
                            channel_name=channel_id(w, c).lower(),
                            min_amount=None,
                            max_amount=None,
                            currency=None,
                            billable_only=False,
                            counterparty=client_name(w, c),
                        ),
                        created_by="UBENCHADMIN",
                        now=now,
                    )
                tokens.append(new.webhook_token)
        return tokens
    finally:
        db.dispose()


class Deliveries:
    """Read-only counts. Not storage.db.Database: its SQLite sessions take the write lock."""

    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        self._engine = create_engine(url, poolclass=NullPool)

    def by_state(self) -> dict[str, int]:
        from sqlalchemy import text

        with self._engine.connect() as conn:
            rows = conn.execute(text("SELECT state, count(*) FROM deliveries GROUP BY state")).all()
        return {str(state): int(n) for state, n in rows}

    def inbox_by_state(self) -> dict[str, int]:
        from sqlalchemy import text

        with self._engine.connect() as conn:
            rows = conn.execute(text("SELECT state, count(*) FROM webhook_inbox GROUP BY state")).all()
        return {str(state): int(n) for state, n in rows}

    def dispose(self) -> None:
        self._engine.dispose()


# ---------------------------------------------------------------------------------------------
# Load generator: a child process, one keep-alive connection per workspace's webhook URL
# ---------------------------------------------------------------------------------------------


def loadgen_main(spec: dict[str, Any], pipe: Any) -> None:
    """Send webhooks for ids [first, first + count) at spec["rate"]/s, id i to paths[i mod W]."""
    try:
        clients = [common.Client(spec["port"], path, EVENT) for path in spec["paths"]]
        for client in clients:
            client.connect(prime=True)
        statuses: Counter[str] = Counter()
        start = time.monotonic() + 0.05
        lag = 0.0
        for i in range(spec["count"]):
            object_id = spec["first"] + i
            delay = start + i / spec["rate"] - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                lag = max(lag, -delay)
            statuses[str(clients[object_id % len(clients)].post(object_id))] += 1
        for client in clients:
            client.close()
        pipe.send(
            {
                "statuses": dict(statuses),
                "elapsed_s": time.monotonic() - start,
                "max_send_lag_s": lag,
                "client_cpu_s": time.process_time(),
            }
        )
    except BaseException as exc:  # report it rather than leave the parent waiting
        pipe.send({"error": f"{type(exc).__name__}: {exc}"})
    finally:
        pipe.close()


# ---------------------------------------------------------------------------------------------
# The processes of `fbslack serve`, and their resident size from /proc
# ---------------------------------------------------------------------------------------------


def _status_kb(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (peak) and RssAnon of a process, in kB; empty once it is gone."""
    found: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon"):
                found[key] = int(value.split()[0])
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def server_processes(master_pid: int) -> dict[str, int]:
    """role -> pid: the gunicorn master, each web worker, the `fbslack worker` background process."""
    roles = {"gunicorn master": master_pid}
    children = sorted(pid for pid, (_, ppid, _) in common.process_cpu().items() if ppid == master_pid)
    workers = 0
    for pid in children:
        command = _cmdline(pid)
        if " worker --wake-path " in command:
            roles["fbslack worker"] = pid
        else:
            workers += 1
            roles[f"web worker {workers}"] = pid
    return roles


def measure(master_pid: int) -> dict[str, dict[str, int]]:
    return {role: {"pid": pid, **_status_kb(pid)} for role, pid in server_processes(master_pid).items()}


# ---------------------------------------------------------------------------------------------
# One leg: one database, every round
# ---------------------------------------------------------------------------------------------


def run_round(
    number: int,
    args: argparse.Namespace,
    *,
    port: int,
    paths: list[str],
    deliveries: Deliveries,
    master_pid: int,
    slack: Any,
    kind: str,
) -> dict[str, Any]:
    """Send one round's webhooks and wait until every one of them is posted; sample RSS meanwhile."""
    first = 1 + (number - 1) * args.events
    expected_total = number * args.events
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(
        target=loadgen_main,
        args=({"port": port, "paths": paths, "first": first, "count": args.events, "rate": args.rate}, child),
        name=f"memory-loadgen-{number}",
    )
    meter = common.CpuMeter(master_pid)
    began = time.monotonic()
    proc.start()
    child.close()
    deadline = began + args.events / args.rate + args.deadline
    samples: list[dict[str, Any]] = []
    sent: dict[str, Any] | None = None
    delivered = 0
    next_sample = began
    next_note = began + 30
    finished = 0.0
    while True:
        now = time.monotonic()
        if sent is None and parent.poll(0):
            sent = parent.recv()
            if "error" in sent:
                raise RuntimeError(f"the load generator failed: {sent['error']}")
        delivered = deliveries.by_state().get("delivered", 0)
        finished = now - began
        if sent is not None and delivered >= expected_total:
            break
        if now >= deadline:
            break
        if now >= next_sample:  # RSS while the round runs: shows a peak or a climb
            snapshot = measure(master_pid)
            samples.append(
                {"t": round(finished, 1), "delivered": delivered}
                | {role: v.get("VmRSS") for role, v in snapshot.items()}
            )
            next_sample += SAMPLE_EVERY_S
        if now >= next_note:
            print(
                f"  [{kind}] round {number}: {delivered - (number - 1) * args.events}/{args.events} posted "
                f"after {finished:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            next_note += 30
        time.sleep(0.5)
    proc.join(10)
    if proc.is_alive():  # only after the deadline: it is still sending
        proc.kill()
        proc.join()
    complete = sent is not None and delivered >= expected_total
    time.sleep(SETTLE_S)
    result: dict[str, Any] = {
        "round": number,
        "events": args.events,
        "complete": complete,
        "seconds": round(finished, 1),
        "delivered_total": deliveries.by_state().get("delivered", 0),
        "sent": sent,
        "processes": measure(master_pid),
        "cpu": meter.stop((sent or {}).get("client_cpu_s", 0.0)),
        "slack_posts": slack.posts,
        "samples": samples,
    }
    return result


def run_leg(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    leg: dict[str, Any] = {"db": kind, "rounds": []}
    BenchFreshBooks, BenchSlack = _fakes(args.workspaces, args.channels)
    tmp = Path(tempfile.mkdtemp(prefix=f"fbslack-bench-memory-{kind}-"))
    began = time.monotonic()
    try:
        with BenchFreshBooks() as fb, BenchSlack() as slack, common.fresh_database(kind, tmp) as url:
            from tests.support.fakes.slack import Channel

            fb.grant(deliver.FB_ACCESS_TOKEN, deliver.FB_REFRESH_TOKEN)
            for w in range(args.workspaces):
                for c in range(args.channels):
                    slack.add_channel(Channel(channel_id(w, c), name=channel_id(w, c).lower()))
            tokens = migrate_and_seed(url, args.workspaces, args.channels)
            deliveries = Deliveries(url)
            port = common.free_port()
            env = deliver.server_environment(url, port, tmp, fb.base_url, slack.base_url, args)
            server = common.Server(env, tmp / "server.log", port)
            try:
                leg["startup_s"] = round(server.wait_healthy(), 2)
                time.sleep(2.0)  # the background process starts after the workers: let it settle
                leg["after_startup"] = measure(server.proc.pid)
                paths = [f"/freshbooks/webhooks/{token}" for token in tokens]
                for number in range(1, args.rounds + 1):
                    result = run_round(
                        number,
                        args,
                        port=port,
                        paths=paths,
                        deliveries=deliveries,
                        master_pid=server.proc.pid,
                        slack=slack,
                        kind=kind,
                    )
                    leg["rounds"].append(result)
                    print(f"  [{kind}] {round_line(result)}", file=sys.stderr, flush=True)
                    if not result["complete"]:
                        break
            finally:
                leg["stop"] = server.stop()
                if not leg["stop"]["clean"]:
                    leg["server_log_tail"] = server.log_tail()
            leg["deliveries_by_state"] = deliveries.by_state()
            leg["inbox_by_state"] = deliveries.inbox_by_state()
            leg["freshbooks_requests"] = fb.requests
            leg["slack_posts"] = slack.posts
            deliveries.dispose()
            leg["server_log"] = deliver.scan_server_log(tmp / "server.log")
    finally:
        if args.keep:
            leg["kept_dir"] = str(tmp)
            print(f"  [{kind}] kept {tmp} (server.log, SQLite file)", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    leg["leg_seconds"] = round(time.monotonic() - began, 1)
    leg["report"] = per_process(leg)
    return leg


# ---------------------------------------------------------------------------------------------
# Numbers and report
# ---------------------------------------------------------------------------------------------


def mb(kb: int | None) -> float | None:
    return None if kb is None else round(kb / 1024, 1)


def per_process(leg: dict[str, Any]) -> list[dict[str, Any]]:
    """Per process role: MB after startup and after each round, growth from the first round to the last."""
    rounds = leg["rounds"]
    roles = list(leg.get("after_startup", {}))
    for r in rounds:
        roles += [role for role in r["processes"] if role not in roles]
    rows = []
    for role in roles:
        after = [mb(r["processes"].get(role, {}).get("VmRSS")) for r in rounds]
        pids = {r["processes"].get(role, {}).get("pid") for r in rounds}
        first, last = (after[0], after[-1]) if after else (None, None)
        growth = round(last - first, 1) if first is not None and last is not None and len(after) > 1 else None
        peak = max((mb(r["processes"].get(role, {}).get("VmHWM")) or 0.0 for r in rounds), default=None)
        rows.append(
            {
                "process": role,
                "pid_changed": len(pids) > 1,  # a restarted process would hide growth
                "startup_mb": mb(leg.get("after_startup", {}).get(role, {}).get("VmRSS")),
                "after_mb": after,
                "growth_mb": growth,
                "peak_mb": peak,
                "under_target": all(a is not None and a < TARGET_RSS_MB for a in after) if after else None,
                "no_growth": None if growth is None else growth <= GROWTH_TOLERANCE_MB and len(pids) == 1,
            }
        )
    return rows


def round_line(r: dict[str, Any]) -> str:
    sizes = ", ".join(f"{role} {mb(v.get('VmRSS'))} MB" for role, v in r["processes"].items())
    sent = r["sent"] or {}
    return (
        f"round {r['round']}: {r['events']} events {'posted' if r['complete'] else 'NOT all posted'} in "
        f"{r['seconds']} s (webhook answers {sent.get('statuses')}); {sizes}; machine CPU "
        f"{r['cpu']['machine_busy_pct']}% busy ({r['cpu']['other_pct']}% by others)"
    )


def fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:g}" if isinstance(value, float) else str(value)


def markdown(results: dict[str, Any]) -> str:
    cfg, mach = results["config"], results["machine"]
    n = cfg["events"]
    heads = " | ".join(f"after {n * k:,} (MB)" for k in range(1, cfg["rounds"] + 1))
    lines = [
        f"### Memory: `fbslack serve` (default workers and threads, plus the background process) on "
        f"{mach['cpus']} CPUs ({mach['cpu_model']})",
        "",
        f"{n:,} invoice.create webhooks per round at {fmt(cfg['rate'])}/s over {cfg['workspaces']} "
        f"workspaces x {cfg['channels']} channels, each posted to the fake Slack before VmRSS is read.",
        "",
        f"| DB | process | after startup (MB) | {heads} | growth (MB) | peak (MB) "
        f"| < {TARGET_RSS_MB:g} MB | no growth (<= {GROWTH_TOLERANCE_MB:g} MB) |",
        "|---|---|---:|" + "---:|" * cfg["rounds"] + "---:|---:|---|---|",
    ]
    notes = []
    for leg in results["legs"]:
        if "skipped" in leg or "failed" in leg:
            what = f"skipped: {leg['skipped']}" if "skipped" in leg else f"FAILED: {leg['failed']}"
            lines.append(f"| {leg['db']} | {what} |" + " |" * (cfg["rounds"] + 5))
            continue
        for row in leg["report"]:
            after = " | ".join(fmt(a) for a in row["after_mb"]) + " |" * (
                cfg["rounds"] - len(row["after_mb"])
            )
            lines.append(
                f"| {leg['db']} | {row['process']}{' (restarted!)' if row['pid_changed'] else ''} | "
                f"{fmt(row['startup_mb'])} | {after} | {fmt(row['growth_mb'])} | {fmt(row['peak_mb'])} | "
                f"{fmt(row['under_target'])} | {fmt(row['no_growth'])} |"
            )
        rounds = ", ".join(f"{r['seconds']} s" for r in leg["rounds"])
        log = leg.get("server_log", {})
        notes.append(
            f"- {leg['db']}: rounds took {rounds}; deliveries {leg.get('deliveries_by_state')}; "
            f"{leg.get('freshbooks_requests')} FreshBooks requests, {leg.get('slack_posts')} Slack posts; "
            f"server log: {log.get('tracebacks')} tracebacks, {log.get('errors')} errors, "
            f"{log.get('warnings')} warnings; server stop "
            f"{'clean' if leg.get('stop', {}).get('clean') else 'NOT clean'}; "
            f"leg {fmt(leg['leg_seconds'])} s."
        )
    return "\n".join([*lines, "", *notes])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Memory benchmark through `fbslack serve`.")
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--events", type=int, default=10_000, help="webhooks per round (10000)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds; RSS is read after each (2)")
    parser.add_argument("--rate", type=float, default=40.0, help="webhooks/s (40)")
    parser.add_argument("--workspaces", type=int, default=20, help="workspaces the events spread over (20)")
    parser.add_argument("--channels", type=int, default=3, help="channels (one rule each) per workspace (3)")
    parser.add_argument(
        "--deadline",
        type=float,
        default=600.0,
        help="s allowed past the sending time for the last post (600)",
    )
    parser.add_argument("--workers", type=int, help="WEB_WORKERS for the server (default: the server's)")
    parser.add_argument("--threads", type=int, help="WEB_THREADS for the server (default: the server's)")
    parser.add_argument("--log-level", default="WARNING", help="the server's LOG_LEVEL (WARNING)")
    parser.add_argument("--json", type=Path, help="also write the full results to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (server.log, SQLite file)")
    parser.add_argument(
        "--ignore-unknown",
        action="store_true",
        help="ignore options this benchmark does not know (bench/run_all.sh passes the same extra "
        "arguments to every benchmark)",
    )
    args, unknown = parser.parse_known_args(argv)
    if unknown and not args.ignore_unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if unknown:
        print(f"memory.py: ignoring options meant for other benchmarks: {' '.join(unknown)}", file=sys.stderr)
    if args.events < 1 or args.rounds < 1 or args.rate <= 0 or args.workspaces < 1 or args.channels < 1:
        parser.error("--events, --rounds, --workspaces and --channels must be >= 1, --rate > 0")

    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    results: dict[str, Any] = {
        "benchmark": "memory",
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": common.machine(),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "target": {"rss_mb": TARGET_RSS_MB, "growth_tolerance_mb": GROWTH_TOLERANCE_MB},
        "legs": [],
    }

    def incomplete(leg: dict[str, Any]) -> bool:
        return not all(r["complete"] for r in leg["rounds"]) or len(leg["rounds"]) < args.rounds

    status = common.run_legs(kinds, lambda kind: run_leg(kind, args), results, incomplete)
    common.write_results(results, markdown(results), args.json)
    return status


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
