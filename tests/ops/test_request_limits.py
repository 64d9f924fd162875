"""Hostile clients, no proxy in front (issue 12 section 3): body limits, slow clients, balance.

The first tests drive connector.ops.front in this process with a tiny WSGI app and short limits; the
rest start the production server (`fbslack serve`, SQLite) once and talk to it over 127.0.0.1 as
an attacker would: raw sockets, 200 MiB bodies, 200 connections trickling a byte a second.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from connector.ops.front import Front, Limits
from connector.ops.web import BODY_LIMITS
from connector.pipeline.ingest.signature import SIGNATURE_HEADER, compute_signature
from storage.db import Database
from tests.support.fakes.freshbooks import FakeFreshBooks
from tests.support.fakes.slack import FakeSlack
from tests.support.front import on_loop_thread
from tests.support.live import SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, make_settings
from tests.support.real_server import Hook, ServerProcess, connect_and_register, free_port, server_environment

MiB = 1024 * 1024

# -- the front, in this process ------------------------------------------------------------------


def _echo(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']} {len(body)}".encode()]


@contextlib.contextmanager
def front(limits: Limits, body_limit: int = 100) -> Iterator[int]:
    """connector.ops.front on a loop thread, serving `_echo`; the port."""
    served = Front(_echo, body_limit=lambda _m, _p: body_limit, threads=2, limits=limits)
    with on_loop_thread(served) as port:
        yield port


def exchange(port: int, data: bytes, *, timeout: float = 5.0) -> bytes:
    """Send `data` and read until the server closes the connection (or `timeout`)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        received = b""
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := s.recv(65536):
                received += chunk
        return received


def test_front_answers_whole_requests_and_keeps_the_connection() -> None:
    with front(Limits()) as port, httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        assert client.post("/a", content=b"x" * 100).text == "POST /a 100"
        assert client.get("/b").text == "GET /b 0"
        chunked = client.post("/c", content=iter([b"x" * 60, b"y" * 40]))  # no Content-Length
        assert chunked.text == "POST /c 100"


def test_front_refuses_a_body_over_the_limit_by_header_or_by_chunks() -> None:
    with front(Limits()) as port:
        declared = exchange(port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n")
        assert declared.startswith(b"HTTP/1.1 413 "), declared
        chunks = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + b"40\r\n" + b"x" * 64
        chunks += b"\r\n40\r\n" + b"x" * 64 + b"\r\n"  # 128 bytes, never terminated
        assert exchange(port, chunks).startswith(b"HTTP/1.1 413 ")
        # Expect: 100-continue and a body too large: refused without the 100.
        expect = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\nExpect: 100-continue\r\n\r\n"
        assert exchange(port, expect).startswith(b"HTTP/1.1 413 ")


def test_front_drops_slow_and_malformed_requests() -> None:
    with front(Limits(read_seconds=0.5, keepalive_seconds=0.5, max_connections=3)) as port:
        began = time.monotonic()
        slow = exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n")  # the headers never end
        assert slow.startswith(b"HTTP/1.1 408 ") and time.monotonic() - began < 3
        assert exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").endswith(b"GET / 0")
        assert exchange(port, b"NOT HTTP\r\n\r\n").startswith(b"HTTP/1.1 400 ")
        # h11 counts what it holds unparsed, after each read (64 KiB): 100 kB is over either way.
        big_header = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"
        assert exchange(port, big_header).startswith(b"HTTP/1.1 431 ")
        smuggle = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"
        assert exchange(port, smuggle).startswith(b"HTTP/1.1 400 ")
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        try:
            assert exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 503 ")
        finally:
            for s in held:
                s.close()


# -- every route has a limit -------------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_registered_endpoint_has_a_body_limit(db: Database, database_url: str, tmp_path: Path) -> None:
    from app import create_app

    settings = make_settings(
        tmp_path,
        DATABASE_URL=database_url,
        PUBLIC_URL="https://fbslack.example.com",
        SLACK_SIGNING_SECRET=SLACK_SIGNING_SECRET,
        SLACK_BOT_TOKEN=SLACK_BOT_TOKEN,
        FRESHBOOKS_CLIENT_ID="fb-client",
        FRESHBOOKS_CLIENT_SECRET="fb-secret",
    )
    app = create_app(settings, start_background=False)
    try:
        registered = {rule.endpoint for rule in app.url_map.iter_rules()}
        # The bench route exists only under FBSLACK_BENCH_BARE_ROUTE=1.
        assert registered - {"static"} == set(BODY_LIMITS) - {"connector.bench_bare"}
    finally:
        app.extensions["fbslack"].stop()


# -- the production server -----------------------------------------------------------------------


class Running:
    def __init__(self, server: ServerProcess, hook: Hook) -> None:
        self.server, self.hook = server, hook
        self.port = server.port

    def web_workers(self) -> list[int]:
        assert self.server.proc is not None
        background = self.server.background_pid()
        return sorted(p for p in self.server.pids() if p not in (self.server.proc.pid, background))


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("limits")
    with FakeFreshBooks() as freshbooks, FakeSlack() as slack:
        port = free_port()
        env = server_environment(
            database_url=f"sqlite:///{tmp / 'server.db'}",
            port=port,
            public_url=f"http://127.0.0.1:{port}",
            data_dir=tmp / "data",
            encryption_key=Fernet.generate_key().decode(),
            freshbooks=freshbooks,
            slack=slack,
        )
        server = ServerProcess("limits", env, tmp / "server.log")
        server.start()
        try:
            server.wait_healthy()
            from tests.support.real_server import settings_of

            hook = connect_and_register(settings_of(env), freshbooks, "invoice.create")
            yield Running(server, hook)
        finally:
            server.close()


def peak_kib(pid: int) -> int:
    """The process's peak resident size (VmHWM), KiB."""
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1])


def post_big(port: int, *, chunked: bool, size: int = 200 * MiB) -> bytes:
    """An unsigned POST of `size` bytes to /slack/events; the answer's first bytes. Sends until the
    server stops reading (or all of it, bounded by 60 s), then reads."""
    framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % size
    head = b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + framing
    block = b"a" * 65536
    piece = b"%x\r\n%s\r\n" % (len(block), block) if chunked else block
    deadline = time.monotonic() + 60
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head + b"\r\n\r\n")
        sent = 0
        with contextlib.suppress(OSError):
            while sent < size and time.monotonic() < deadline:
                s.sendall(piece)
                sent += len(block)
        try:
            return s.recv(200)
        except OSError as exc:
            return repr(exc).encode()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_200_mib_post_is_refused_without_growing_a_worker(running: Running, chunked: bool) -> None:
    workers = running.web_workers()
    before = {pid: peak_kib(pid) for pid in workers}
    answer = post_big(running.port, chunked=chunked)
    assert answer.startswith(b"HTTP/1.1 413 "), answer
    growth_mib = max(peak_kib(pid) - before[pid] for pid in workers) / 1024
    assert growth_mib < 8, f"a web worker's peak grew by {growth_mib:.0f} MiB"
    assert httpx.get(f"{running.server.url}/healthz", timeout=5).status_code == 200


ROUTES = [
    ("POST", "/slack/events"),
    ("POST", "/freshbooks/webhooks/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    ("POST", "/freshbooks/oauth/choose"),
    ("GET", "/freshbooks/oauth/callback?state=x&code=y"),
    ("GET", "/slack/install"),
    ("GET", "/slack/oauth_redirect?code=x&state=y"),
    ("GET", "/metrics"),
    ("GET", "/healthz"),
    ("GET", "/"),
    ("POST", "/no/such/route"),
]
LIMITS = {
    "/slack/events": BODY_LIMITS["slack_events"],
    "/freshbooks/webhooks/": BODY_LIMITS["connector.freshbooks_webhook"],
    "/freshbooks/oauth/choose": BODY_LIMITS["connector.freshbooks_oauth_choose"],
}


@pytest.mark.parametrize(("method", "target"), ROUTES, ids=[t.split("?")[0] for _m, t in ROUTES])
def test_every_route_refuses_a_body_over_its_limit(running: Running, method: str, target: str) -> None:
    limit = next((v for k, v in LIMITS.items() if target.startswith(k)), 0)
    head = f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {limit + 1}\r\n\r\n".encode()
    assert exchange(running.port, head).startswith(b"HTTP/1.1 413 ")
    # Chunked, no Content-Length: cut off once it passes the limit.
    body = b"x" * (limit + 1)
    chunked = head.replace(b"Content-Length: %d" % (limit + 1), b"Transfer-Encoding: chunked")
    chunked += b"%x\r\n%s\r\n" % (len(body), body)
    assert exchange(running.port, chunked).startswith(b"HTTP/1.1 413 ")


class Tricklers:
    """`count` connections to /slack/events sending one more byte a second (half of them still in
    the headers, half in a 16 KiB body), from one thread, for at most `seconds`."""

    def __init__(self, port: int, count: int, seconds: float) -> None:
        head = b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Length: 16384\r\n\r\n"
        self.conns: list[tuple[socket.socket, bytes]] = []
        for n in range(count):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            if n % 2:
                s.sendall(head)
            s.setblocking(False)
            self.conns.append((s, b"x" * 16384 if n % 2 else head))
        self._stop = threading.Event()
        self._seconds = seconds
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + self._seconds
        sent = 0
        while not self._stop.wait(1.0) and time.monotonic() < deadline:
            for s, data in self.conns:
                with contextlib.suppress(OSError):
                    s.send(data[sent : sent + 1])
            sent += 1

    def still_held(self) -> int:
        """Connections the server has neither answered nor closed."""
        held = 0
        for s, _data in self.conns:
            try:
                s.recv(1)
            except BlockingIOError:
                held += 1
            except OSError:
                pass
        return held

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for s, _data in self.conns:
            s.close()


def probe(port: int, request: bytes) -> tuple[float, int | str]:
    """One request on a fresh connection, as FreshBooks and a health checker send them: (seconds
    to the status line, status). Raw sockets: the client's own cost must not be what is measured."""
    began = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(request)
            answer = s.recv(4096)
    except OSError as exc:
        return time.monotonic() - began, type(exc).__name__
    elapsed = time.monotonic() - began
    return elapsed, int(answer.split(b" ", 2)[1]) if answer else "closed"


def signed_webhook(hook: Hook, object_id: int) -> bytes:
    fields = hook.fields(hook.account_id, "invoice.create", str(object_id))
    body = urllib.parse.urlencode(fields).encode()
    return (
        f"POST {hook.path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        f"{SIGNATURE_HEADER}: {compute_signature(fields, hook.verifier)}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def test_200_trickling_connections_do_not_delay_health_or_webhooks(running: Running) -> None:
    # Warm: both workers have answered both kinds before (a cold worker's first webhook compiles
    # its statements; that is start-up, not what slow clients do).
    for object_id in range(4000, 4030):
        assert probe(running.port, signed_webhook(running.hook, object_id))[1] == 200
        assert probe(running.port, HEALTHZ)[1] == 200
    tricklers = Tricklers(running.port, 200, seconds=30)
    try:
        timings: list[tuple[float, str]] = []
        failures: list[str] = []
        deadline = time.monotonic() + 8
        # One at a time, on fresh connections (where gthread starved: no thread to read them).
        for object_id in range(5000, 5200):
            if time.monotonic() >= deadline:
                break
            for kind, request in (("healthz", HEALTHZ), ("webhook", signed_webhook(running.hook, object_id))):
                seconds, status = probe(running.port, request)
                timings.append((seconds, kind))
                if status != 200:
                    failures.append(f"{kind}: {status}")
        held = tricklers.still_held()
    finally:
        tricklers.close()
    timings.sort()
    p99 = timings[int(len(timings) * 0.99) - 1][0] * 1000
    assert not failures, failures[:10]
    assert len(timings) >= 100
    assert held == 200, f"only {held} of the 200 trickling connections were still held"
    assert p99 < 100, f"p99 {p99:.0f} ms over {len(timings)} probes; slowest {timings[-5:]}"


def established_by_pid(port: int, pids: list[int]) -> dict[int, int]:
    """Server-side connections on `port` each process holds (/proc: socket inodes per process)."""
    inodes: set[str] = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        if local_port == port and fields[3] == "01":  # ESTABLISHED
            inodes.add(fields[9])
    counts = {}
    for pid in pids:
        fds = Path(f"/proc/{pid}/fd")
        links = [os.readlink(fds / fd) for fd in os.listdir(fds)]
        counts[pid] = sum(1 for link in links if link.startswith("socket:[") and link[8:-1] in inodes)
    return counts


def test_keepalive_connections_are_spread_over_the_workers(running: Running) -> None:
    clients = [httpx.Client(base_url=running.server.url, timeout=5) for _ in range(40)]
    try:
        for client in clients:
            assert client.get("/healthz").status_code == 200
        counts = established_by_pid(running.port, running.web_workers())
    finally:
        for client in clients:
            client.close()
    assert len(counts) == 2 and sum(counts.values()) == 40, counts
    # Binomial(40, 1/2): below 8 on either side has odds of about 1 in 20,000.
    assert min(counts.values()) >= 8, counts
