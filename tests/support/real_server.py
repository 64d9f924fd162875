"""Real `fbslack serve` processes for the crash, scale-out and chaos checks.

Used by tests/e2e/test_processes.py and bench/chaos.py: start the production server as a subprocess in
its own session (gunicorn master, web workers and the `fbslack worker` background process form one
process group), wait for /healthz, SIGKILL the whole group, and check what reached the fake Slack
against the webhooks the server acknowledged. Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import create_engine, select, update
from sqlalchemy.pool import NullPool

from connector.domain.settings import Settings, load_settings
from connector.pipeline.ingest.signature import SIGNATURE_HEADER, compute_signature
from storage import connections, outbox
from storage.db import Database
from storage.models import ChannelPacing, Delivery, DeliveryState, Event, InboxState, WebhookInbox
from tests.support.fakes.freshbooks import FakeFreshBooks
from tests.support.fakes.slack import FakeSlack
from tests.support.paths import REPO

SIGNING_SECRET = "process-test-signing-secret"
BOT_TOKEN = "xoxb-process-test"
ADMIN = "UPROCADMIN"
TEAM_ID = "T0001"  # the fake Slack's team
FB_TOKEN, FB_REFRESH = "fb-process-access", "fb-process-refresh"
HEALTH_TIMEOUT_S = 40.0  # a cold start imports the app in every process; the machine is shared


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_environment(
    *,
    database_url: str,
    port: int,
    public_url: str,
    data_dir: Path,
    encryption_key: str,
    freshbooks: FakeFreshBooks,
    slack: FakeSlack,
    **extra: str,
) -> dict[str, str]:
    """The environment of one server: every external URL points at the fakes. Nothing from the
    caller's shell that the app reads as configuration leaks in."""
    known = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in known}
    env.update(
        DATABASE_URL=database_url,
        ENCRYPTION_KEYS=encryption_key,
        HOST="127.0.0.1",
        PORT=str(port),
        PUBLIC_URL=public_url,
        DATA_DIR=str(data_dir),
        LOG_LEVEL="WARNING",
        FRESHBOOKS_API_URL=freshbooks.base_url,
        FRESHBOOKS_AUTH_URL=freshbooks.base_url,
        FRESHBOOKS_CLIENT_ID=freshbooks.client_id,
        FRESHBOOKS_CLIENT_SECRET=freshbooks.client_secret,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_API_URL=slack.base_url,
        # A process that takes over rows a dead one leased finds them on its next sweep.
        INBOX_SWEEP_SECONDS="2",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def settings_of(env: Mapping[str, str]) -> Settings:
    """The settings the server reads from `env`, for in-process setup against the same database."""
    return load_settings(env)


def _process_group_members(pgid: int) -> set[int]:
    """Live (not zombie) processes whose process group is `pgid`, read from /proc."""
    members: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.add(int(entry))
    return members


class ServerProcess:
    """One `fbslack serve` in its own session: SIGKILL to its group kills all of it at once."""

    def __init__(self, name: str, env: Mapping[str, str], log_path: Path) -> None:
        self.name = name
        self.env = dict(env)
        self.port = int(self.env["PORT"])
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        assert not self.running, f"server {self.name} is already running"
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start #{self.starts} of server {self.name} =====\n".encode())
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "connector.ops.cli", "serve"],
                cwd=REPO,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_healthy(self, timeout: float = HEALTH_TIMEOUT_S) -> float:
        """Poll until GET /healthz answers 200 and the background process listens for wake-ups
        (it starts a few seconds after the web workers answer); seconds waited. Raises with the
        log's tail."""
        began = time.monotonic()
        last = "no answer"
        while time.monotonic() - began < timeout:
            if not self.running:
                raise RuntimeError(f"server {self.name} exited before it was healthy:\n{self.log_tail()}")
            try:
                answer = httpx.get(f"{self.url}/healthz", timeout=2)
                last = f"HTTP {answer.status_code}"
                if answer.status_code == 200:
                    last = "the background process is not listening yet"
                    if self._background_listening():
                        return time.monotonic() - began
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(0.1)
        raise RuntimeError(
            f"server {self.name} not healthy after {timeout:.0f} s ({last}):\n{self.log_tail()}"
        )

    def pids(self) -> set[int]:
        """Every live process of this server: master, web workers, background process (also those
        left behind by a master that died)."""
        return _process_group_members(self.proc.pid) if self.proc else set()

    def background_pid(self) -> int | None:
        """The `fbslack worker` process (it holds the delivery and inbox leases)."""
        for pid in self.pids():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"worker" in cmdline and b"--wake-path" in cmdline:
                return pid
        return None

    def _background_listening(self) -> bool:
        """Whether the background process has bound its wake socket (`--wake-path`), which it does
        just before starting its loops."""
        pid = self.background_pid()
        if pid is None:
            return False
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            return False
        return os.path.exists(argv[argv.index("--wake-path") + 1])

    def kill(self, timeout: float = 10.0) -> set[int]:
        """SIGKILL the whole process group, as a power cut would; the pids that were killed."""
        assert self.proc is not None
        pids = self.pids() | {self.proc.pid}
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout)
        deadline = time.monotonic() + timeout
        while _process_group_members(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.02)  # orphaned workers die a moment after the master
        return pids

    def terminate(self, timeout: float = 45.0) -> int:
        """SIGTERM the master (graceful: in-flight posts finish); SIGKILL the group if it hangs."""
        assert self.proc is not None
        if self.running:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        deadline = time.monotonic() + 10
        while _process_group_members(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        return int(self.proc.returncode)

    def close(self) -> None:
        if self.proc is not None and (self.running or self.pids()):
            self.kill()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def expire_leases_of(database_url: str, pids: Iterable[int], *, no_one_else: bool = False) -> dict[str, int]:
    """End now the leases that processes known to be dead (SIGKILLed by us) still hold.

    A stand-in for waiting out the lease (60 s for a delivery): it is exactly what the clock would
    do, only sooner, and only for rows whose owner is dead. Owners are `host:pid:nonce`
    (connector.domain.process.worker_id). The channels such a delivery held are freed too, their next post
    no sooner than a pacing gap from now (the dead process may have just posted there).

    A channel's busy mark names no owner: one the dead process held after finishing its delivery
    (it releases the channel in a later transaction) is freed only with `no_one_else`, when no
    process of the deployment is alive, so every mark is a dead one's.
    """
    now = dt.datetime.now(dt.UTC)
    past = now - dt.timedelta(seconds=1)
    host = socket.gethostname()
    counts: Counter[str] = Counter()
    db = Database(database_url, pool_size=1)
    try:
        with db.session() as session:
            for pid in pids:
                owner = f"{host}:{pid}:%"
                held = session.execute(
                    select(Delivery.workspace_id, Delivery.channel_id).where(
                        Delivery.lease_owner.like(owner), Delivery.lease_expires_at > now
                    )
                ).all()
                for workspace_id, channel_id in held:
                    session.execute(
                        update(ChannelPacing)
                        .where(
                            ChannelPacing.workspace_id == workspace_id, ChannelPacing.channel_id == channel_id
                        )
                        .values(busy_until=None, next_post_at=now + outbox.CHANNEL_GAP)
                    )
                counts["deliveries"] += len(held)
                session.execute(
                    update(Delivery)
                    .where(Delivery.lease_owner.like(owner), Delivery.lease_expires_at > now)
                    .values(lease_expires_at=past)
                )
                result = session.execute(
                    update(WebhookInbox)
                    .where(WebhookInbox.lease_owner.like(owner), WebhookInbox.lease_expires_at > now)
                    .values(lease_expires_at=past)
                )
                counts["inbox"] += int(result.rowcount)  # type: ignore[attr-defined]
            if no_one_else:
                result = session.execute(
                    update(ChannelPacing)
                    .where(ChannelPacing.busy_until > now)
                    .values(busy_until=None, next_post_at=now + outbox.CHANNEL_GAP)
                )
                counts["channels"] += int(result.rowcount)  # type: ignore[attr-defined]
    finally:
        db.dispose()
    return dict(counts)


def held_delivery_key(slack: FakeSlack) -> str:
    """The delivery key of the last post whose answer the fake held (`FakeSlack.hold_answer`)."""
    _method, params, _headers = slack.answers_held[-1]
    metadata = params["metadata"]
    payload = (json.loads(metadata) if isinstance(metadata, str) else metadata)["event_payload"]
    return str(payload["delivery_key"])


def server_holding(servers: Iterable[ServerProcess], owner: str | None) -> ServerProcess | None:
    """The server whose process holds a lease owned by `owner` (`host:pid:nonce`), if it is ours."""
    if owner is None or owner.split(":")[0] != socket.gethostname():
        return None
    pid = int(owner.split(":")[1])
    return next((s for s in servers if pid in s.pids()), None)


def lease_holder(database_url: str, delivery_key: str) -> str | None:
    """Who holds the lease of the delivery with this metadata key (`host:pid:nonce`), if anyone."""
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            owner = conn.execute(
                select(Delivery.lease_owner).where(Delivery.delivery_key == delivery_key)
            ).scalar_one_or_none()
    finally:
        engine.dispose()
    return str(owner) if owner else None


# -- setting up a connection and rules ----------------------------------------------------------


@dataclass(frozen=True)
class Hook:
    """Where and how FreshBooks posts this connection's webhooks: the path (any server serves it)
    and the verifier FreshBooks signs with (from the fake, after the verification handshake)."""

    path: str
    verifier: str
    account_id: str
    fields: Callable[[str, str, str], list[tuple[str, str]]]

    def send(
        self, base_url: str, object_id: int, *, event: str = "invoice.create", timeout: float = 5.0
    ) -> int | str:
        """POST one signed webhook on a new connection: the HTTP status, or the error's class name
        when no answer came (refused, reset mid-request, timed out). Never retried here."""
        fields = self.fields(self.account_id, event, str(object_id))
        try:
            answer = httpx.post(
                f"{base_url}{self.path}",
                content=urllib.parse.urlencode(fields),
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    SIGNATURE_HEADER: compute_signature(fields, self.verifier),
                },
                timeout=timeout,
            )
        except httpx.HTTPError as exc:
            return type(exc).__name__
        return answer.status_code


def connect_and_register(
    settings: Settings,
    freshbooks: FakeFreshBooks,
    *events: str,
    token_lifetime: dt.timedelta | None = None,
) -> Hook:
    """A FreshBooks connection with verified callbacks, through the app's own services in this
    process: the fake FreshBooks sends `callback.verify` to the running server, as FreshBooks does.

    With `token_lifetime`, the access token is stored as expiring that long from now and the
    fake issues tokens of that lifetime from now on (default: FreshBooks' 12 hours). Its issue
    time is not stored, as after a connect: a token living less than the default refresh margin
    is refreshed on first use, and from then on its lifetime is known."""
    from app import build_services

    lifetime = token_lifetime or dt.timedelta(hours=12)
    if token_lifetime is not None:
        freshbooks.expires_in = int(token_lifetime.total_seconds())
    freshbooks.grant(FB_TOKEN, FB_REFRESH)
    account_id = freshbooks.identity.businesses[0].account_id
    services = build_services(settings)
    try:
        with services.db.session() as session:
            workspace = connections.ensure_workspace(session, team_id=TEAM_ID, now=dt.datetime.now(dt.UTC))
            new = connections.create_connection(
                session,
                services.cipher,
                workspace_id=workspace.id,
                account_id=account_id,
                business_id=freshbooks.identity.businesses[0].business_id,
                business_name="Process Test Business",
                access_token=FB_TOKEN,
                refresh_token=FB_REFRESH,
                token_expires_at=dt.datetime.now(dt.UTC) + lifetime,
                now=dt.datetime.now(dt.UTC),
            )
        assert services.registrar is not None, "PUBLIC_URL must be set to register callbacks"
        for event in events:
            services.registrar.register(new.connection.id, event)
    finally:
        services.stop()
    mine = [c for c in freshbooks.callbacks.values() if c.account_id == account_id and c.event in events]
    unverified = sorted(c.event for c in mine if not c.verified)
    assert len(mine) == len(events) and not unverified, f"callbacks not verified: {unverified}"
    callback = mine[0]
    return Hook(
        path=urllib.parse.urlsplit(callback.uri).path,
        verifier=callback.verifier,
        account_id=account_id,
        fields=freshbooks.webhook_fields,
    )


def slash(base_url: str, text: str, *, user_id: str = ADMIN) -> str:
    """A signed `/freshbooks` command sent to a server over HTTP; the text of its (ephemeral) answer."""
    body = urllib.parse.urlencode(
        {
            "token": "unused",
            "team_id": TEAM_ID,
            "team_domain": "proc",
            "channel_id": "C0GENERAL",
            "user_id": user_id,
            "command": "/freshbooks",
            "text": text,
            "response_url": f"{base_url}/unused",
            "trigger_id": "13345224609.738474920.8088930838d88f008e0",
        }
    )
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(SIGNING_SECRET).generate_signature(timestamp=timestamp, body=body)
    assert signature is not None
    answer = httpx.post(
        f"{base_url}/slack/events",
        content=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": signature,
        },
        timeout=15,
    )
    answer.raise_for_status()
    return str(answer.json().get("text", ""))


def invoice_json(object_id: int, amount: str, client: str = "Process Test Client") -> dict[str, Any]:
    """An invoice as FreshBooks' API returns it: `PX<id>` is its number."""
    money = {"amount": amount, "code": "USD"}
    return {
        "id": object_id,
        "invoiceid": object_id,
        "invoice_number": f"PX{object_id}",
        "customerid": 7000 + object_id % 1000,
        "organization": client,
        "amount": money,
        "outstanding": money,
        "paid": {"amount": "0.00", "code": "USD"},
        "currency_code": "USD",
        "status": 2,
        "v3_status": "sent",
        "create_date": "2026-11-24",
        "due_date": "2026-12-24",
        "updated": "2026-11-24 07:00:00",
        "vis_state": 0,
    }


# -- sending a burst, with resends ----------------------------------------------------------------


@dataclass
class Ledger:
    """What the senders saw: every answer per invoice, and which were accepted (2xx) in the end."""

    answers: dict[int, list[int | str]] = field(default_factory=dict)

    def record(self, object_id: int, status: int | str) -> None:
        self.answers.setdefault(object_id, []).append(status)

    @staticmethod
    def is_accepted(status: int | str) -> bool:
        return isinstance(status, int) and 200 <= status < 300

    @property
    def accepted(self) -> set[int]:
        return {i for i, seen in self.answers.items() if any(self.is_accepted(s) for s in seen)}

    @property
    def unaccepted(self) -> list[int]:
        return sorted(set(self.answers) - self.accepted)

    @property
    def failures(self) -> Counter[str]:
        return Counter(str(s) for seen in self.answers.values() for s in seen if not self.is_accepted(s))


def resend_until_accepted(
    ledger: Ledger, servers: Callable[[], list[str]], *, deadline: float, event: str, hook: Hook
) -> None:
    """Send again every webhook that got no 2xx, as FreshBooks retries, until each is accepted
    (round robin over the live servers) or time.monotonic() passes `deadline`."""
    turn = 0
    while (pending := ledger.unaccepted) and time.monotonic() < deadline:
        for object_id in pending:
            urls = servers()
            if not urls:
                break
            ledger.record(object_id, hook.send(urls[turn % len(urls)], object_id, event=event))
            turn += 1
        if ledger.unaccepted:
            time.sleep(0.2)  # a server is restarting: FreshBooks would back off too


# -- what reached Slack ---------------------------------------------------------------------------


@dataclass
class Outcome:
    """Exactly-once, judged from what the fake Slack stored (a message per delivery key in each
    channel's history) joined to the deliveries table (key -> invoice and channel)."""

    expected: dict[tuple[int, str], int]  # (invoice, channel) -> messages stored (want 1)
    unexpected: list[str]  # stored messages that match no expected (invoice, channel)
    may_post: set[tuple[int, str]]  # sent but never accepted: at most once, not required
    states: Counter[str]  # deliveries by state
    inbox: Counter[str]  # inbox rows by state

    @property
    def missing(self) -> list[tuple[int, str]]:
        return sorted(pair for pair, n in self.expected.items() if n == 0)

    @property
    def duplicated(self) -> list[tuple[int, str, int]]:
        return sorted((i, c, n) for (i, c), n in self.expected.items() if n > 1)

    @property
    def settled(self) -> bool:
        """Nothing left that could still post: every delivery and inbox row reached its end."""
        return (
            not self.missing
            and self.states[DeliveryState.PENDING] == 0
            and self.states[DeliveryState.IN_DOUBT] == 0
            and self.inbox[InboxState.PENDING] == 0
        )

    @property
    def ok(self) -> bool:
        return self.settled and not self.duplicated and not self.unexpected

    def describe(self) -> str:
        return (
            f"expected {len(self.expected)} (invoice, channel) messages: missing {self.missing[:10]}, "
            f"duplicated {self.duplicated[:10]}, unexpected {self.unexpected[:10]}; deliveries by state "
            f"{dict(self.states)}; inbox by state {dict(self.inbox)}"
        )


def outcome(
    database_url: str,
    slack: FakeSlack,
    wanted: Mapping[int, set[str]],
    *,
    sent_not_accepted: Mapping[int, set[str]] | None = None,
) -> Outcome:
    """Compare the fake Slack's channels with `wanted` (invoice -> channels its rules name)."""
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(Delivery.delivery_key, Delivery.channel_id, Event.object_id, Delivery.batch_key).join(
                    Event, Event.id == Delivery.event_id
                )
            ).all()
            states = Counter(str(s) for (s,) in conn.execute(select(Delivery.state)).all())
            inbox = Counter(str(s) for (s,) in conn.execute(select(WebhookInbox.state)).all())
    finally:
        engine.dispose()
    by_key = {key: [(int(object_id), channel)] for key, channel, object_id, _ in rows}
    # A burst summary (or a reply in its thread) carries one key for every delivery it lists.
    by_batch: dict[str, list[tuple[int, str]]] = {}
    for _, channel, object_id, batch_key in rows:
        if batch_key is not None:
            by_batch.setdefault(batch_key, []).append((int(object_id), channel))
    stored: Counter[tuple[int, str]] = Counter()
    unexpected: list[str] = []
    optional = {(i, c) for i, channels in (sent_not_accepted or {}).items() for c in channels}
    # Copies: the fake's HTTP threads append meanwhile (list() of a list is atomic in CPython).
    messages = [(cid, m) for cid, channel in list(slack.channels.items()) for m in list(channel.messages)]
    for channel_id, message in messages:
        key = ((message.get("metadata") or {}).get("event_payload") or {}).get("delivery_key")
        if key is None:
            continue  # not a delivery (a DM to the installer, a test message)
        pairs = by_batch.get(str(key)) or by_key.get(str(key))
        if pairs is None or any(pair[1] != channel_id for pair in pairs):
            unexpected.append(f"{channel_id}: key {key} ({'unknown' if pairs is None else 'misrouted'})")
            continue
        for pair in pairs:
            stored[pair] += 1
    expected = {(i, c): stored[(i, c)] for i, channels in wanted.items() for c in channels}
    for pair, n in stored.items():
        if pair not in expected:
            if pair in optional and n == 1:
                continue
            unexpected.append(f"invoice {pair[0]} in {pair[1]}: {n} message(s), not expected")
    return Outcome(expected=expected, unexpected=unexpected, may_post=optional, states=states, inbox=inbox)


def wait_settled(
    database_url: str,
    slack: FakeSlack,
    wanted: Mapping[int, set[str]],
    *,
    timeout: float,
    sent_not_accepted: Mapping[int, set[str]] | None = None,
    tick: Callable[[], None] | None = None,
) -> Outcome:
    """Poll until every wanted message is stored and nothing is left to post, or the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        if tick is not None:
            tick()
        result = outcome(database_url, slack, wanted, sent_not_accepted=sent_not_accepted)
        if result.settled or time.monotonic() >= deadline:
            return result
        time.sleep(0.25)


def channel_gaps(slack: FakeSlack, channels: Iterable[str]) -> dict[str, float]:
    """The smallest gap (seconds, by message ts) between two stored messages of each channel."""
    gaps: dict[str, float] = {}
    for channel_id in channels:
        stamps = sorted(float(m["ts"]) for m in list(slack.channels[channel_id].messages))
        if len(stamps) > 1:
            gaps[channel_id] = min(b - a for a, b in itertools.pairwise(stamps))
    return gaps
