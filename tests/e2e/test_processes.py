"""Real server processes, killed and restarted: nothing accepted is lost, nothing is posted twice.

Each test starts the production server (`fbslack serve`: gunicorn web workers plus the `fbslack
worker` background process) as subprocesses against the fake FreshBooks and the fake Slack of this
process, sends correctly signed webhooks over HTTP, and kills or stops the servers mid-burst. What
the fake Slack stored is then joined to the deliveries table: every webhook answered 2xx must give
exactly one message in every channel its rules name. Webhooks that got no answer while a server
was down are sent again, as FreshBooks retries them, and count once they are accepted.

Leases held by a process we SIGKILLed are ended at once (tests/real_server.expire_leases_of)
instead of waiting out their 60 s: the clock would do the same, later.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from bench.chaos import ChaosConfig, run_chaos
from storage.db import Database
from tests.support.fakes.freshbooks import FakeFreshBooks
from tests.support.fakes.slack import Channel, FakeSlack, Faults
from tests.support.live import PG_UNAVAILABLE
from tests.support.real_server import (
    ADMIN,
    Hook,
    Ledger,
    ServerProcess,
    channel_gaps,
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
ALPHA, BETA = "C0PALPHA", "C0PBETA"
AMOUNTS = ("1000.00", "5000.00", "9000.00")  # alpha only, both, beta only (see the rules below)
SETTLE_S = 60.0


def wanted_channels(amount: str) -> set[str]:
    """The rules below: alpha takes invoices up to 6,000, beta from 4,000 (both inclusive)."""
    value = float(amount)
    return {c for c, hit in ((ALPHA, value <= 6000), (BETA, value >= 4000)) if hit}


@pytest.fixture
def fakes() -> Iterator[tuple[FakeFreshBooks, FakeSlack]]:
    with FakeFreshBooks() as freshbooks, FakeSlack(enforce_channel_rate=True) as slack:
        slack.valid_tokens.add("xoxb-process-test")
        slack.add_user(ADMIN, admin=True)
        slack.add_channel(Channel(ALPHA, name="alpha"))
        slack.add_channel(Channel(BETA, name="beta"))
        yield freshbooks, slack


class Deployment:
    """Servers on one database, a verified connection and the two rules; invoices the fake knows."""

    def __init__(
        self, database_url: str, tmp_path: Path, freshbooks: FakeFreshBooks, slack: FakeSlack, servers: int
    ) -> None:
        self.database_url = database_url
        self.freshbooks, self.slack = freshbooks, slack
        key = Fernet.generate_key().decode()
        ports = [free_port() for _ in range(servers)]
        public_url = f"http://127.0.0.1:{ports[0]}"  # the load balancer's address, in production
        self.servers = [
            ServerProcess(
                name,
                server_environment(
                    database_url=database_url,
                    port=port,
                    public_url=public_url,
                    data_dir=tmp_path / f"data-{name}",
                    encryption_key=key,
                    freshbooks=freshbooks,
                    slack=slack,
                    # Two servers: one web process each, the background processes are what must
                    # coordinate. One server: the default (two web processes sharing the database,
                    # on SQLite through the cross-process writer lock, killed while holding it).
                    **({"WEB_WORKERS": "1"} if servers > 1 else {}),
                ),
                tmp_path / f"server-{name}.log",
            )
            for name, port in zip("ab", ports, strict=False)
        ]
        self.amounts: dict[int, str] = {}

    def start(self) -> None:
        for server in self.servers:
            server.start()
        for server in self.servers:
            server.wait_healthy()

    def setup(self) -> Hook:
        hook = connect_and_register(settings_of(self.servers[0].env), self.freshbooks, EVENT)
        rules_at = self.servers[-1].url  # any server answers Slack commands
        for text in (f"route {EVENT} <#{ALPHA}|alpha> max 6,000", f"route {EVENT} <#{BETA}|beta> min 4,000"):
            answer = slash(rules_at, text)
            assert answer.startswith("Rule saved"), answer
        return hook

    def invoices(self, first: int, count: int) -> list[int]:
        ids = list(range(first, first + count))
        for object_id in ids:
            amount = AMOUNTS[object_id % len(AMOUNTS)]
            self.amounts[object_id] = amount
            self.freshbooks.add_object(self.freshbooks.identity.businesses[0].account_id, "invoices",
                                       invoice_json(object_id, amount))  # fmt: skip
        return ids

    def wanted(self, ids: set[int]) -> dict[int, set[str]]:
        return {i: wanted_channels(self.amounts[i]) for i in ids}

    def live_urls(self) -> list[str]:
        return [s.url for s in self.servers if s.running]

    def close(self) -> None:
        for server in self.servers:
            server.close()

    def logs(self) -> str:
        return "\n".join(f"--- server {s.name} ---\n{s.log_tail(25)}" for s in self.servers)


def send_in_background(hook: Hook, ledger: Ledger, ids: list[int], urls: list[str]) -> threading.Thread:
    """The rest of the burst, back to back from another thread (alternating over `urls`)."""

    def run() -> None:
        for n, object_id in enumerate(ids):
            ledger.record(object_id, hook.send(urls[n % len(urls)], object_id, timeout=3))

    thread = threading.Thread(target=run, name="burst", daemon=True)
    thread.start()
    return thread


def wait_for(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def stored(slack: FakeSlack) -> int:
    return sum(len(slack.channels[c].messages) for c in (ALPHA, BETA))


def posts_made(server: ServerProcess) -> int:
    """Messages this server's processes posted or found posted since it started (its /metrics)."""
    body = httpx.get(f"{server.url}/metrics", timeout=5).text
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in body.splitlines()
        if line.startswith("fbslack_deliveries_total{")
        and ('outcome="delivered"' in line or 'outcome="reconciled"' in line)
    )


def test_sigkill_mid_burst_loses_nothing_and_posts_nothing_twice(
    db: Database, database_url: str, tmp_path: Path, fakes: tuple[FakeFreshBooks, FakeSlack]
) -> None:
    freshbooks, slack = fakes
    deployment = Deployment(database_url, tmp_path, freshbooks, slack, servers=1)
    server = deployment.servers[0]
    try:
        deployment.start()
        hook = deployment.setup()
        ids = deployment.invoices(1, 12)
        ledger = Ledger()
        # The first post that lands is held unanswered: the server is killed in the middle of it.
        held = slack.hold_answer("chat.postMessage")
        for object_id in ids[:4]:
            ledger.record(object_id, hook.send(server.url, object_id))
        assert ledger.accepted == set(ids[:4]), ledger.answers
        assert held.arrived.wait(20), f"no post reached Slack\n{deployment.logs()}"
        in_flight = held_delivery_key(slack)

        burst = send_in_background(hook, ledger, ids[4:], [server.url])
        wait_for(lambda: len(ledger.answers) >= 6, 10, "two more webhooks answered")
        killed = server.kill()
        burst.join(30)
        held.release()
        assert server.background_pid() is None
        ended = expire_leases_of(database_url, killed, no_one_else=True)
        assert ended.get("deliveries", 0) >= 1  # the held post's

        server.start()
        server.wait_healthy()
        resend_until_accepted(
            ledger, deployment.live_urls, deadline=time.monotonic() + 20, event=EVENT, hook=hook
        )
        assert not ledger.unaccepted, ledger.answers
        result = wait_settled(database_url, slack, deployment.wanted(ledger.accepted), timeout=SETTLE_S)
        assert result.ok, f"{result.describe()}\n{deployment.logs()}"
        # The held post was found by its metadata, not posted again (it is stored once, above).
        assert slack.calls_to("conversations.history"), "the in-doubt post was never looked up"
        assert in_flight in {
            str(m["metadata"]["event_payload"]["delivery_key"])
            for c in (ALPHA, BETA)
            for m in slack.channels[c].messages
        }
        assert not slack.rate_limited, "a post broke Slack's 1 message/second/channel limit"
    finally:
        deployment.close()


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_servers_on_postgresql_share_the_work(
    db: Database, database_url: str, tmp_path: Path, fakes: tuple[FakeFreshBooks, FakeSlack]
) -> None:
    if PG_UNAVAILABLE:
        pytest.skip(PG_UNAVAILABLE)
    freshbooks, slack = fakes
    deployment = Deployment(database_url, tmp_path, freshbooks, slack, servers=2)
    a, b = deployment.servers
    try:
        deployment.start()
        hook = deployment.setup()
        ledger = Ledger()

        # Phase 1: webhooks alternate between the servers and both post; B is stopped gracefully
        # in the middle of it, with posts still queued and webhooks still coming.
        posted: Counter[str] = Counter()  # posts made by each server's processes (its /metrics)
        first = deployment.invoices(1, 10)
        for object_id in first[:8]:
            ledger.record(object_id, hook.send([a.url, b.url][object_id % 2], object_id))
        wait_for(lambda: stored(slack) >= 6, 20, "six messages posted")
        burst = send_in_background(hook, ledger, first[8:], [a.url, b.url])
        posted[b.name] += posts_made(b)
        assert b.terminate() == 0
        burst.join(30)
        resend_until_accepted(
            ledger, deployment.live_urls, deadline=time.monotonic() + 20, event=EVENT, hook=hook
        )
        b.start()
        b.wait_healthy()

        # Phase 2: whichever server is mid-post is SIGKILLed; the other one finishes everything.
        held = slack.hold_answer("chat.postMessage")
        second = deployment.invoices(11, 10)
        for object_id in second[:4]:
            ledger.record(object_id, hook.send([a.url, b.url][object_id % 2], object_id))
        assert held.arrived.wait(20), f"no post reached Slack\n{deployment.logs()}"
        victim = server_holding((a, b), lease_holder(database_url, held_delivery_key(slack)))
        assert victim is not None, "the held post's delivery is leased by neither server"
        survivor = b if victim is a else a
        burst = send_in_background(hook, ledger, second[4:], [a.url, b.url])
        wait_for(lambda: len(ledger.answers) >= 16, 10, "two more webhooks answered")
        posted[victim.name] += posts_made(victim)
        killed = victim.kill()
        burst.join(30)
        held.release()
        assert expire_leases_of(database_url, killed).get("deliveries", 0) >= 1
        resend_until_accepted(
            ledger, deployment.live_urls, deadline=time.monotonic() + 20, event=EVENT, hook=hook
        )
        assert not ledger.unaccepted, ledger.answers
        assert survivor.running

        result = wait_settled(database_url, slack, deployment.wanted(ledger.accepted), timeout=SETTLE_S)
        assert result.ok, f"{result.describe()}\n{deployment.logs()}"
        # Pacing held across both processes: the fake Slack refused nothing for coming too soon,
        # and no two messages of a channel are less than a second apart.
        assert not slack.rate_limited, [c[1].get("channel") for c in slack.rate_limited]
        gaps = channel_gaps(slack, (ALPHA, BETA))
        assert all(gap >= 1.0 for gap in gaps.values()), gaps
        posted[survivor.name] += posts_made(survivor)
        assert posted[a.name] and posted[b.name], f"not both servers posted: {dict(posted)}"
        assert survivor.terminate() == 0
    finally:
        deployment.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_background_process_stops_when_its_master_is_killed(
    db: Database, database_url: str, tmp_path: Path, fakes: tuple[FakeFreshBooks, FakeSlack]
) -> None:
    """SIGKILL to the gunicorn master alone (the OOM killer's choice): its web workers exit, and so
    must the background process, or it would run on unseen next to the next serve's."""
    freshbooks, slack = fakes
    deployment = Deployment(database_url, tmp_path, freshbooks, slack, servers=1)
    server = deployment.servers[0]
    try:
        deployment.start()
        background = server.background_pid()
        assert background is not None
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(10)
        wait_for(lambda: not server.pids(), 15, f"the orphaned processes to exit: {server.pids()}")
    finally:
        deployment.close()


def test_chaos_short(tmp_path: Path) -> None:
    """bench/chaos.py, short: SIGKILLs and restarts during a burst while Slack fails at random."""
    report = run_chaos(
        ChaosConfig(events=60, kills=2, db="sqlite", seed=7, max_faults_per_message=1, settle_seconds=90),
        tmp_path,
    )
    assert report.ok, report.summary()


def test_fake_slack_faults_are_reproducible_and_capped() -> None:
    """The chaos run's faults: the same seed fails the same calls; the cap per message holds."""

    def draws(faults: Faults, calls: int) -> list[str]:
        answers = [
            faults.draw("chat.postMessage", {"channel": "C1", "text": str(n % 5)}) for n in range(calls)
        ]
        return [repr(a) for a in answers]

    first, again = (
        Faults(seed=3, server_error=0.3, rate_limited=0.2),
        Faults(seed=3, server_error=0.3, rate_limited=0.2),
    )
    assert draws(first, 200) == draws(again, 200)
    assert 25 <= first.injected["429"] <= 55 and 75 <= sum(first.injected.values()) <= 125  # ~20%, ~50%
    capped = Faults(seed=3, server_error=0.5, store_then_drop=0.5, max_per_message=2)
    draws(capped, 200)
    assert sum(capped.injected.values()) == 5 * 2  # five distinct messages, two faults each
    assert capped.draw("conversations.history", {"channel": "C1"}) is None
    with pytest.raises(ValueError, match="must not exceed 1"):
        Faults(seed=1, server_error=0.8, rate_limited=0.3)
