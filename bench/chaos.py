"""Chaos: a burst of webhooks while server processes are SIGKILLed and restarted and Slack misbehaves.

Starts the real `fbslack serve` (one server on SQLite; one or more on PostgreSQL, all on one
database) against the fake FreshBooks and a fake Slack that enforces 1 message/second/channel and,
from a seeded generator, answers 10% of chat.postMessage calls with a 5xx, 5% with 429 and drops
5% of connections after storing the message. It sends `--events` signed invoice.create webhooks
(each invoice routed by amount to one or two of `--channels` channels), SIGKILLs a server's whole
process group `--kills` times spread over the run (restarting it each time), sends again every
webhook that got no 2xx (as FreshBooks retries), and waits until nothing is left to post.

Then it checks, from what the fake Slack stored joined to the deliveries table: every accepted
webhook has exactly one message in every channel its rules name, nothing else was posted, and
nothing is left pending. It prints a summary and exits 1 otherwise.

    .venv/bin/python -m bench.chaos --events 1000 --kills 5                  # SQLite, one server
    .venv/bin/python -m bench.chaos --db postgresql --servers 2 --events 1000 --kills 5
    .venv/bin/python -m bench.chaos --events 60 --kills 2 --max-faults-per-message 1   # what CI runs

Everything stays on 127.0.0.1 and stops by itself (`--settle-seconds` bounds the wait). The leases a
killed process held are ended at once, as the clock would end them 60 s later; `--real-lease-expiry`
waits them out instead (each kill then costs up to a minute).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cryptography.fernet import Fernet  # noqa: E402

from storage import migrate, outbox  # noqa: E402
from storage.db import Database  # noqa: E402
from tests.support.fakes.freshbooks import FakeFreshBooks  # noqa: E402
from tests.support.fakes.slack import Channel, FakeSlack, Faults  # noqa: E402
from tests.support.real_server import (  # noqa: E402
    ADMIN,
    BOT_TOKEN,
    Hook,
    Ledger,
    Outcome,
    ServerProcess,
    connect_and_register,
    expire_leases_of,
    free_port,
    held_delivery_key,
    invoice_json,
    lease_holder,
    resend_until_accepted,
    server_environment,
    server_holding,
    settings_of,
    slash,
    wait_settled,
)

EVENT = "invoice.create"
PG_DSN = os.environ.get("TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
BAND = 1000  # channel c takes invoices from c*BAND to c*BAND + OVERLAP (inclusive)
OVERLAP = 1200  # so about one invoice in five goes to two channels
RETRY_AFTER_S = 1.0  # a webhook that got no 2xx is sent again this much later
HOLD_WAIT_S = 3.0  # how long a kill waits for a post to catch in flight


@dataclass(frozen=True)
class ChaosConfig:
    events: int = 1000
    kills: int = 5
    db: str = "sqlite"
    servers: int = 1
    channels: int = 8
    seed: int = 1
    server_error: float = 0.10
    rate_limited: float = 0.05
    store_then_drop: float = 0.05
    # Bounds the retry tail: three 5xx in a row on one message mean a 2-minute backoff, four 10 min.
    max_faults_per_message: int | None = 2
    rate: float = 100.0  # webhooks per second
    settle_seconds: float = 900.0
    real_lease_expiry: bool = False


@dataclass
class ChaosReport:
    config: ChaosConfig
    outcome: Outcome
    ledger: Ledger
    kills: list[dict[str, Any]] = field(default_factory=list)
    faults: dict[str, int] = field(default_factory=dict)
    post_calls: int = 0
    history_calls: int = 0
    pacing_429: int = 0  # real ones: posts the fake refused for coming < 1 s after the last
    seconds: float = 0.0
    log_tracebacks: int = 0
    log_samples: list[str] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)  # seconds after the start

    @property
    def ok(self) -> bool:
        return self.outcome.ok

    def summary(self) -> str:
        o, c = self.outcome, self.config
        stored = sum(o.expected.values())
        lines = [
            f"chaos: {c.events} events, {c.channels} channels, {c.kills} SIGKILLs, {c.servers} server(s) "
            f"on {c.db}, seed {c.seed}, faults 5xx {c.server_error:.0%} / 429 {c.rate_limited:.0%} / "
            f"drop-after-store {c.store_then_drop:.0%} (at most {c.max_faults_per_message} per message)",
            f"  webhooks: {len(self.ledger.accepted)} accepted of {len(self.ledger.answers)}; "
            f"failed sends (then resent) {dict(self.ledger.failures)}",
            "  kills: "
            + ", ".join(f"{k['server']} at {k['at_s']} s{' mid-post' * k['mid_post']}" for k in self.kills),
            f"  slack: {self.post_calls} chat.postMessage calls, injected {self.faults}, "
            f"{self.pacing_429} refused by the 1/s/channel limit, {self.history_calls} history lookups",
            f"  messages: {stored} stored for {len(o.expected)} expected (invoice, channel) pairs; "
            f"missing {len(o.missing)}, duplicated {len(o.duplicated)}, unexpected {len(o.unexpected)}",
            f"  deliveries by state {dict(o.states)}; inbox by state {dict(o.inbox)}",
            f"  server logs: {self.log_tracebacks} traceback(s); timeline (s) {self.phases}",
            *(f"    {sample}" for sample in self.log_samples[:3]),
            f"  {self.seconds:.1f} s: {'OK, exactly once' if self.ok else 'FAILED: ' + o.describe()}",
        ]
        return "\n".join(lines)

    def markdown(self) -> str:
        """One table row, under its header, for bench/run_all.sh's report."""
        o, c = self.outcome, self.config
        caught = sum(1 for k in self.kills if k["mid_post"])
        cells = [
            c.db,
            str(c.servers),
            str(c.events),
            f"{len(self.kills)} ({caught} mid-post)",
            str(len(self.ledger.accepted)),
            f"{sum(o.expected.values())} / {len(o.expected)}",
            str(len(o.missing)),
            str(len(o.duplicated)),
            str(len(o.unexpected)),
            str(sum(self.faults.values())),
            str(self.pacing_429),
            f"{self.seconds:.0f} s",
            "exactly once" if self.ok else "FAILED",
        ]
        header = (
            "| DB | servers | events | kills | accepted | messages / expected | missing | duplicated "
            "| unexpected | faults injected | pacing 429s | time | result |"
        )
        return "\n".join([header, "|---" * len(cells) + "|", "| " + " | ".join(cells) + " |"])

    def as_json(self) -> dict[str, Any]:
        o = self.outcome
        return {
            "config": asdict(self.config),
            "ok": self.ok,
            "seconds": round(self.seconds, 1),
            "accepted": len(self.ledger.accepted),
            "send_failures": dict(self.ledger.failures),
            "kills": self.kills,
            "faults_injected": self.faults,
            "post_calls": self.post_calls,
            "history_calls": self.history_calls,
            "pacing_429": self.pacing_429,
            "expected_pairs": len(o.expected),
            "missing": [list(p) for p in o.missing],
            "duplicated": [list(p) for p in o.duplicated],
            "unexpected": o.unexpected,
            "deliveries_by_state": dict(o.states),
            "inbox_by_state": dict(o.inbox),
            "log_tracebacks": self.log_tracebacks,
            "phases_s": self.phases,
        }


def amount_of(object_id: int, channels: int) -> int:
    """A spread of amounts over every channel's band, reproducible from the invoice id."""
    return 1 + (object_id * 389) % (channels * BAND - 1)


def channel_ids(channels: int) -> list[str]:
    return [f"C0CHAOS{c:02d}" for c in range(channels)]


def wanted_channels(amount: int, channels: int) -> set[str]:
    """The rules made in `setup`: channel c takes c*BAND <= amount <= c*BAND + OVERLAP."""
    ids = channel_ids(channels)
    return {ids[c] for c in range(channels) if c * BAND <= amount <= c * BAND + OVERLAP}


@contextlib.contextmanager
def fresh_database(kind: str, workdir: Path) -> Iterator[str]:
    """An empty, migrated database: a SQLite file, or a new PostgreSQL schema dropped afterwards."""
    if kind == "sqlite":
        url = f"sqlite:///{workdir / 'chaos.db'}"
        _migrate(url)
        yield url
        return
    import psycopg

    schema = f"chaos_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        base = PG_DSN.replace("postgresql://", "postgresql+psycopg://", 1)
        url = f"{base}?options=-csearch_path%3D{schema}"
        _migrate(url)
        yield url
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute("SET lock_timeout = '10s'")
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _migrate(url: str) -> None:
    db = Database(url, pool_size=1)
    try:
        migrate.upgrade(db.engine)
    finally:
        db.dispose()


def kill_times(config: ChaosConfig) -> list[float]:
    """When to kill (seconds after the first webhook): the first in the middle of the burst of
    webhooks, the others spread over the expected length of the run, which the workspace's posting
    budget sets (about 1.2 posts per event)."""
    sending = config.events / config.rate
    posts = config.events * (1 + (OVERLAP - BAND) / BAND)
    end = max(sending, 0.7 * posts / outbox.WORKSPACE_RATE_PER_SECOND)
    if config.kills <= 1:
        return [sending / 2] * config.kills
    step = (end - sending / 2) / (config.kills - 1)
    return [sending / 2 + k * step for k in range(config.kills)]


def scan_logs(servers: list[ServerProcess]) -> tuple[int, list[str]]:
    """Tracebacks in the servers' logs (a SIGKILL leaves none: each one is worth reading)."""
    count, samples = 0, []
    for server in servers:
        lines = server.log_path.read_text(errors="replace").splitlines() if server.log_path.exists() else []
        for i, line in enumerate(lines):
            if line.startswith("Traceback"):
                count += 1
                tail = next((x for x in lines[i + 1 : i + 40] if x and not x.startswith(" ")), "")
                samples.append(f"{server.name}: {tail[:200]}")
    return count, samples


def run_chaos(config: ChaosConfig, workdir: Path) -> ChaosReport:
    """One chaos run in `workdir` (logs, SQLite file); the report says whether it was exactly once."""
    if config.events < 1 or config.kills < 0 or config.servers < 1 or config.channels < 1:
        raise ValueError("events, servers and channels must be at least 1, kills at least 0")
    if config.db == "sqlite" and config.servers != 1:
        raise ValueError("several servers need PostgreSQL: SQLite serves one host")
    began = time.monotonic()
    ids = list(range(1, config.events + 1))
    channels = channel_ids(config.channels)
    amounts = {i: amount_of(i, config.channels) for i in ids}
    with (
        fresh_database(config.db, workdir) as database_url,
        FakeFreshBooks() as freshbooks,
        FakeSlack(enforce_channel_rate=True) as slack,
    ):
        slack.valid_tokens.add(BOT_TOKEN)
        slack.add_user(ADMIN, admin=True)
        for channel_id in channels:
            slack.add_channel(Channel(channel_id, name=channel_id.lower()))
        account_id = freshbooks.identity.businesses[0].account_id
        for object_id, amount in amounts.items():
            freshbooks.add_object(account_id, "invoices", invoice_json(object_id, f"{amount}.00"))
        key = Fernet.generate_key().decode()
        ports = [free_port() for _ in range(config.servers)]
        servers = [
            ServerProcess(
                f"s{n}",
                server_environment(
                    database_url=database_url,
                    port=port,
                    public_url=f"http://127.0.0.1:{ports[0]}",
                    data_dir=workdir / f"data-{n}",
                    encryption_key=key,
                    freshbooks=freshbooks,
                    slack=slack,
                ),
                workdir / f"server-{n}.log",
            )
            for n, port in enumerate(ports)
        ]
        ledger = Ledger()
        kills: list[dict[str, Any]] = []
        try:
            for server in servers:
                server.start()
            for server in servers:
                server.wait_healthy()
            hook = setup(servers, freshbooks, channels)
            faults = slack.inject_faults(
                Faults(
                    seed=config.seed,
                    server_error=config.server_error,
                    rate_limited=config.rate_limited,
                    store_then_drop=config.store_then_drop,
                    max_per_message=config.max_faults_per_message,
                )
            )
            phases = {"servers_up_s": round(time.monotonic() - began, 1)}
            burst(config, servers, slack, hook, ledger, ids, database_url, kills)
            phases["burst_and_kills_done_s"] = round(time.monotonic() - began, 1)

            def live() -> list[str]:
                return [s.url for s in servers if s.running]

            deadline = time.monotonic() + config.settle_seconds
            resend_until_accepted(ledger, live, deadline=deadline, event=EVENT, hook=hook)
            accepted = ledger.accepted
            phases["all_accepted_s"] = round(time.monotonic() - began, 1)
            result = wait_settled(
                database_url,
                slack,
                {i: wanted_channels(amounts[i], config.channels) for i in accepted},
                timeout=max(1.0, deadline - time.monotonic()),
                sent_not_accepted={
                    i: wanted_channels(amounts[i], config.channels) for i in set(ids) - accepted
                },
            )
        finally:
            for server in servers:
                if server.running:
                    server.terminate()
        phases["settled_s"] = round(time.monotonic() - began, 1)
        stamps = sorted(float(m["ts"]) for c in channels for m in slack.channels[c].messages)
        if stamps:
            phases["last_message_s"] = round(stamps[-1] - (time.time() - (time.monotonic() - began)), 1)
        tracebacks, samples = scan_logs(servers)
        return ChaosReport(
            config=config,
            outcome=result,
            ledger=ledger,
            kills=kills,
            faults=dict(faults.injected),
            post_calls=len(slack.calls_to("chat.postMessage")),
            history_calls=len(slack.calls_to("conversations.history")),
            pacing_429=len(slack.rate_limited),
            seconds=time.monotonic() - began,
            log_tracebacks=tracebacks,
            log_samples=samples,
            phases=phases,
        )


def setup(servers: list[ServerProcess], freshbooks: FakeFreshBooks, channels: list[str]) -> Hook:
    """A verified connection and one rule per channel, by amount band, saved with /freshbooks route."""
    hook = connect_and_register(settings_of(servers[0].env), freshbooks, EVENT)
    for c, channel_id in enumerate(channels):
        bounds = f"min {c * BAND} max {c * BAND + OVERLAP}" if c else f"max {OVERLAP}"
        answer = slash(
            servers[c % len(servers)].url, f"route {EVENT} <#{channel_id}|{channel_id.lower()}> {bounds}"
        )
        if not answer.startswith("Rule saved"):
            raise RuntimeError(f"the rule for {channel_id} was not saved: {answer}")
    return hook


def burst(
    config: ChaosConfig,
    servers: list[ServerProcess],
    slack: FakeSlack,
    hook: Hook,
    ledger: Ledger,
    ids: list[int],
    database_url: str,
    kills: list[dict[str, Any]],
) -> None:
    """Send every webhook at `config.rate` (round robin over the running servers) and SIGKILL a
    server at each of `kill_times`, the one caught in the middle of a post when there is one. A
    killed server restarts in the background while webhooks keep coming: those sent to it meanwhile
    fail and are sent again a second later, as FreshBooks retries. Returns after the last send, the
    last kill and the last restart (webhooks still unaccepted are left to `resend_until_accepted`)."""
    t0 = time.monotonic()
    schedule = kill_times(config)
    restarts: dict[str, threading.Thread] = {}
    retry_at: dict[int, float] = {}  # webhooks that got no 2xx: when to send them again
    sent = 0
    while sent < len(ids) or len(kills) < len(schedule):
        now = time.monotonic() - t0
        if len(kills) < len(schedule) and now >= schedule[len(kills)]:
            for thread in restarts.values():
                thread.join()  # kill again only once everyone is back
            restarts.clear()
            # Catch a server in the middle of a post: Slack stores it and holds the answer back.
            hold = slack.hold_answer("chat.postMessage")
            mid_post = hold.arrived.wait(HOLD_WAIT_S)
            if not mid_post:
                slack.cancel_hold_answer("chat.postMessage")
            holder = lease_holder(database_url, held_delivery_key(slack)) if mid_post else None
            victim = server_holding(servers, holder) or servers[len(kills) % len(servers)]
            killed = victim.kill()
            hold.release()
            record: dict[str, Any] = {
                "server": victim.name,
                "at_s": round(time.monotonic() - t0, 1),
                "mid_post": mid_post,
                "webhooks_sent_before": sent,
                "leases_ended": {}
                if config.real_lease_expiry
                else expire_leases_of(database_url, killed, no_one_else=not any(s.running for s in servers)),
            }
            kills.append(record)
            restarts[victim.name] = threading.Thread(target=_restart, args=(victim, record), daemon=True)
            restarts[victim.name].start()
            continue
        due = next((i for i, at in retry_at.items() if at <= now), None)
        if sent < len(ids) and now >= sent / config.rate:
            object_id = ids[sent]
            sent += 1
        elif due is not None:
            object_id = due  # FreshBooks retries a webhook that got no 2xx
        else:
            next_send = sent / config.rate if sent < len(ids) else math.inf
            next_kill = schedule[len(kills)] if len(kills) < len(schedule) else math.inf
            next_retry = min(retry_at.values(), default=math.inf)
            time.sleep(max(0.001, min(next_send, next_kill, next_retry) - (time.monotonic() - t0)))
            continue
        urls = [s.url for s in servers if s.running]
        status = hook.send(urls[object_id % len(urls)], object_id, timeout=3) if urls else "NoServerUp"
        ledger.record(object_id, status)
        if ledger.is_accepted(status):
            retry_at.pop(object_id, None)
        else:
            retry_at[object_id] = now + RETRY_AFTER_S
    for thread in restarts.values():
        thread.join()
    failed = [k for k in kills if "restart_error" in k]
    if failed:
        raise RuntimeError(f"a server did not come back after a kill: {failed[0]['restart_error']}")


def _restart(server: ServerProcess, record: dict[str, Any]) -> None:
    began = time.monotonic()
    try:
        server.start()
        server.wait_healthy()
    except RuntimeError as exc:
        record["restart_error"] = str(exc)[-2000:]
    record["restart_s"] = round(time.monotonic() - began, 1)


def parse_args(argv: list[str] | None) -> tuple[ChaosConfig, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--servers", type=int, help="servers on the one database (1; PostgreSQL only for more)"
    )
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--server-error", type=float, default=0.10, help="share of posts answered 5xx")
    parser.add_argument("--rate-limited", type=float, default=0.05, help="share of posts answered 429")
    parser.add_argument("--store-then-drop", type=float, default=0.05, help="share stored, then dropped")
    parser.add_argument(
        "--max-faults-per-message", type=int, default=2, help="cap per message, 0 for none (2)"
    )
    parser.add_argument("--rate", type=float, default=100.0, help="webhooks per second (100)")
    parser.add_argument("--settle-seconds", type=float, default=900.0, help="give up after this long (900)")
    parser.add_argument("--real-lease-expiry", action="store_true", help="wait out a killed process's leases")
    parser.add_argument("--json", type=Path, help="also write the report to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (server logs, SQLite file)")
    args = parser.parse_args(argv)
    config = ChaosConfig(
        events=args.events,
        kills=args.kills,
        db=args.db,
        servers=args.servers or 1,
        channels=args.channels,
        seed=args.seed,
        server_error=args.server_error,
        rate_limited=args.rate_limited,
        store_then_drop=args.store_then_drop,
        max_faults_per_message=args.max_faults_per_message or None,
        rate=args.rate,
        settle_seconds=args.settle_seconds,
        real_lease_expiry=args.real_lease_expiry,
    )
    return config, args


def main(argv: list[str] | None = None) -> int:
    config, args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="fbslack-chaos-"))
    print(f"chaos: work dir {workdir} (server logs)", file=sys.stderr, flush=True)
    report = run_chaos(config, workdir)
    print(report.summary())
    print()
    print(report.markdown())
    if args.json:
        args.json.write_text(json.dumps(report.as_json(), indent=2) + "\n")
    if not args.keep and report.ok:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    print(f"chaos: {'passed' if report.ok else 'FAILED'} at {stamp}", file=sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
