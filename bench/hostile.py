"""Hostile clients against the production server (`fbslack serve`), no proxy in front.

Two measurements, on SQLite (the database plays no part in either):

* slow clients: N connections each trickle one byte per second (half of them in the request
  headers, half in a body whose headers said 16 KiB), while a prober sends, one after the other on
  fresh connections, `GET /healthz` and a correctly signed FreshBooks webhook. Reported: the
  probes' p50/p99/max latency and how many got no answer within 5 s, for each N in `--levels`,
  and how many trickling connections the server still held at the end (they must really be held
  for the figure to mean anything);
* big bodies: an unsigned 200 MiB POST to `/slack/events`, once with Content-Length and once
  chunked without it. Reported: the answer, how much of the body the client got to send, and how
  much the web workers' peak resident size (VmHWM) grew.

    .venv/bin/python bench/hostile.py [--levels 0,40,200] [--seconds 6] [--json OUT]

A benchmark, not a test (tests/test_hostile_clients.py asserts the same things): every loop is
bounded in count and in time, and everything stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.ingest import (  # noqa: E402 - after the sys.path fix above
    SIGNATURE_HEADER,
    FreshBooksStub,
    Server,
    free_port,
    fresh_database,
    migrate_and_seed,
    percentile,
    server_environment,
    webhook,
)

PROBE_TIMEOUT_S = 5.0
BIG_BODY = 200 * 1024 * 1024


def http_once(port: int, request: bytes, timeout: float) -> int | str:
    """Send one request on a fresh connection; the status code, or why there was none."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(request)
            answer = b""
            while b"\r\n" not in answer and len(answer) < 4096:
                chunk = s.recv(4096)
                if not chunk:
                    return "closed"
                answer += chunk
            return int(answer.split(b" ", 2)[1])
    except TimeoutError:
        return "timeout"
    except OSError as exc:
        return type(exc).__name__


def probe_requests(token: str) -> list[bytes]:
    body, signature = webhook(1)
    hook = (
        f"POST /freshbooks/webhooks/{token} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\n{SIGNATURE_HEADER}: {signature}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    health = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    return [health, hook]


class Tricklers:
    """`count` connections, each sent one more byte every second from one thread, until stopped."""

    def __init__(self, port: int, count: int) -> None:
        head = b"POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 16384\r\n\r\n"
        self.socks: list[tuple[socket.socket, bytes, int]] = []
        for n in range(count):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.setblocking(False)
            if n % 2:  # the body trickles: the headers go at once
                s.sendall(head)
                self.socks.append((s, b"x" * 16384, 0))
            else:  # the headers trickle
                self.socks.append((s, head, 0))
        self.dropped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trickle", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            alive = []
            for s, data, sent in self.socks:
                try:
                    s.send(data[sent : sent + 1])
                    alive.append((s, data, sent + 1))
                except OSError:
                    self.dropped += 1
                    s.close()
            self.socks = alive

    def held(self) -> int:
        """Connections still open: the server neither answered nor closed them."""
        held = 0
        for s, _data, _sent in self.socks:
            try:
                if s.recv(1) == b"":
                    continue
            except BlockingIOError:
                held += 1
            except OSError:
                continue
        return held

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for s, _data, _sent in self.socks:
            s.close()


def slow_clients(port: int, token: str, count: int, seconds: float) -> dict[str, Any]:
    tricklers = Tricklers(port, count)
    try:
        time.sleep(2.0)  # let every trickling request start inside the server
        requests = probe_requests(token)
        latencies: list[float] = []
        failures: dict[str, int] = {}
        deadline = time.monotonic() + seconds
        n = 0
        while time.monotonic() < deadline and n < 10_000:
            began = time.monotonic()
            status = http_once(port, requests[n % 2], PROBE_TIMEOUT_S)
            n += 1
            if status in (200, 202):
                latencies.append((time.monotonic() - began) * 1000)
            else:
                failures[str(status)] = failures.get(str(status), 0) + 1
            time.sleep(0.02)
        latencies.sort()
        held = tricklers.held()
    finally:
        tricklers.stop()
    return {
        "connections": count,
        "probes": n,
        "answered": len(latencies),
        "failures": failures,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": latencies[-1] if latencies else None,
        "trickling_held_at_end": held,
    }


def web_worker_peaks(server: Server) -> dict[int, int]:
    """VmHWM (KiB) of every child of the master that is not the background process."""
    peaks: dict[int, int] = {}
    for task in Path(f"/proc/{server.proc.pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
                status = Path(f"/proc/{child}/status").read_text()
            except OSError:
                continue
            if b"--wake-path" in cmdline:
                continue
            line = next(x for x in status.splitlines() if x.startswith("VmHWM:"))
            peaks[int(child)] = int(line.split()[1])
    return peaks


def big_body(port: int, chunked: bool) -> tuple[int | str, int]:
    """POST 200 MiB to /slack/events; (the answer, bytes the client got to send)."""
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {BIG_BODY}"
    head = (
        "POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"{framing}\r\n\r\n"
    ).encode()
    block = b"a" * 65536
    piece = (f"{len(block):x}\r\n".encode() + block + b"\r\n") if chunked else block
    sent = 0
    deadline = time.monotonic() + 60
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head)
        try:
            while sent < BIG_BODY and time.monotonic() < deadline:
                s.sendall(piece)
                sent += len(block)
            if chunked:
                s.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # refused mid-body: the answer should be waiting
        try:
            answer = s.recv(4096)
        except OSError as exc:
            return type(exc).__name__, sent
    return (int(answer.split(b" ", 2)[1]) if answer else "closed"), sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Slow clients and big bodies against `fbslack serve`.")
    parser.add_argument("--levels", default="0,40,200", help="trickling connections, comma-separated")
    parser.add_argument("--seconds", type=float, default=6.0, help="probing time per level (6)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"benchmark": "hostile", "slow_clients": [], "big_bodies": []}
    with (
        tempfile.TemporaryDirectory(prefix="fbslack-hostile-") as tmp,
        FreshBooksStub() as stub,
        fresh_database("sqlite", Path(tmp)) as url,
    ):
        if True:
            token = migrate_and_seed(url)
            port = free_port()
            env = server_environment(url, port, Path(tmp) / "data", stub.url, None, None)
            env["LOG_LEVEL"] = "WARNING"
            # Slack configured (single workspace), so /slack/events reaches Bolt as in production.
            env.update(
                SLACK_SIGNING_SECRET="bench-signing-secret",
                SLACK_BOT_TOKEN="xoxb-bench",
                SLACK_API_URL=f"{stub.url}/api/",
            )
            server = Server(env, Path(tmp) / "server.log", port)
            try:
                server.wait_healthy()
                for level in (int(x) for x in args.levels.split(",") if x):
                    row = slow_clients(port, token, level, args.seconds)
                    results["slow_clients"].append(row)
                    print(json.dumps(row), flush=True)
                for chunked in (False, True):
                    before = web_worker_peaks(server)
                    answer, sent = big_body(port, chunked)
                    after = web_worker_peaks(server)
                    growth = max((after[p] - before.get(p, after[p])) for p in after) // 1024
                    row = {
                        "framing": "chunked" if chunked else "content-length",
                        "answer": answer,
                        "client_sent_mib": round(sent / 2**20, 1),
                        "worker_peak_growth_mib": growth,
                    }
                    results["big_bodies"].append(row)
                    print(json.dumps(row), flush=True)
            finally:
                print(json.dumps({"stop": server.stop()}), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
