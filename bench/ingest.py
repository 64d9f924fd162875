"""Webhook intake benchmark through the production server (`fbslack serve`: gunicorn gthread).

For each database (a fresh SQLite file and/or a fresh PostgreSQL schema) it starts the real
server and measures:

* latency: an open-loop steady rate (default 200 webhooks/s). Every request has a planned send
  time and its latency runs from that planned time to the end of the answer, so a stalled server
  cannot hide the stall by slowing the sender down (no coordinated omission);
* throughput: N concurrent keep-alive clients (default 16) sending as fast as they are answered,
  reported as acknowledged (2xx) webhooks per second;
* the bare-Flask ceiling: the same clients, the same signed bodies, flat out against a route that
  only reads the body and answers 200 (`POST /bench/bare`, registered only when the benchmark sets
  FBSLACK_BENCH_BARE_ROUTE=1), served by the same gunicorn master, workers and threads in the same
  run; our throughput is reported as a ratio of it;
* loss: after every phase the new rows in `webhook_inbox` must equal the 2xx answers.

The load generator runs in its own process, so it shares no GIL with the server or with this
orchestrator. The server's background worker fetches every stored object from a local FreshBooks
stub that answers 404, so nothing leaves 127.0.0.1.

    .venv/bin/python bench/ingest.py [--db sqlite|postgresql|both] [--rate 200] [--seconds 10]
                                     [--clients 16] [--workers N] [--threads N] [--json OUT]

A benchmark, not a test: it reports numbers. It exits non-zero only when a leg could not run or
an acknowledged webhook is missing from the database.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import http.client
import json
import math
import multiprocessing
import os
import platform
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Fixed secrets: the benchmark's database is thrown away at the end.
ENCRYPTION_KEY = base64.urlsafe_b64encode(b"fbslack-bench-fixed-fernet-key!!").decode("ascii")
VERIFIER = "benchVerifier0123456789abcdefghijKLMNOP"
ACCOUNT_ID = "bEnCh7"
CALLBACK_ID = 424242
PG_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
SIGNATURE_HEADER = "X-FreshBooks-Hmac-SHA256"
TARGET_P99_MS = 25.0
TARGET_THROUGHPUT = 1000.0  # acknowledged webhooks/s, on each database
TARGET_RATIO = 0.4  # of the bare Flask route's requests/s on the same server
BARE_PATH = "/bench/bare"
BARE_ROUTE_ENV = "FBSLACK_BENCH_BARE_ROUTE"  # connector.ops.web.BENCH_BARE_ROUTE_ENV
CLIENT_TIMEOUT_S = 10.0  # FreshBooks gives a webhook about 10 s
IDLE_RECONNECT_S = 4.0  # the server (gunicorn keepalive=5) closes connections idle for 5 s
HEALTH_DEADLINE_S = 20.0
STOP_DEADLINE_S = 30.0
BUSY_MACHINE_PCT = 15.0


# ---------------------------------------------------------------------------------------------
# Load generator: runs in a child process and imports nothing from the app
# ---------------------------------------------------------------------------------------------


def sign(fields: list[tuple[str, str]], verifier: str) -> str:
    """FreshBooks' signature (reference §2): base64 HMAC-SHA256 of json.dumps(fields in wire order)."""
    message = json.dumps(dict(fields)).encode("utf-8")
    digest = hmac.new(verifier.encode("utf-8"), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def webhook(object_id: int, event: str = "invoice.create") -> tuple[bytes, str]:
    """A form body as FreshBooks sends it, and its signature header."""
    fields = [
        ("name", event),
        ("object_id", str(object_id)),
        ("user_id", "1"),
        ("identity_id", "2"),
        ("business_id", "3"),
        ("account_id", ACCOUNT_ID),
    ]
    return urllib.parse.urlencode(fields).encode("ascii"), sign(fields, VERIFIER)


class Client:
    """One keep-alive HTTP/1.1 connection posting webhooks. Never retries: a retry could store twice."""

    def __init__(self, port: int, path: str, event: str) -> None:
        self._port = port
        self._path = path
        self._event = event
        self._conn: http.client.HTTPConnection | None = None
        self._last_used = 0.0

    def connect(self, *, prime: bool = False) -> None:
        """Open the connection; `prime` sends one GET /healthz on it before the measurement starts.

        Priming matters: gunicorn's gthread worker hands every new connection to a pool thread
        that waits up to 5 s for its first bytes, so connections opened ahead of time and left
        silent would hold the server's threads and stall everyone else. (A real sender connects
        and sends at once.) A primed keep-alive connection waits in the poller instead.
        """
        self.close()
        conn = http.client.HTTPConnection("127.0.0.1", self._port, timeout=CLIENT_TIMEOUT_S)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._conn = conn
        if prime:
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            response.read()
            if response.status != 200 or response.will_close:
                raise RuntimeError(f"priming GET /healthz answered HTTP {response.status}")
        self._last_used = time.perf_counter()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def post(self, object_id: int) -> int | str:
        """The HTTP status, or the exception's class name when no answer came."""
        body, signature = webhook(object_id, self._event)
        if self._conn is None or time.perf_counter() - self._last_used > IDLE_RECONNECT_S:
            # The server is about to drop it as idle: open a fresh one rather than risk a dead socket.
            self.connect()
        assert self._conn is not None
        try:
            self._conn.request(
                "POST",
                self._path,
                body=body,
                headers={"Content-Type": "application/x-www-form-urlencoded", SIGNATURE_HEADER: signature},
            )
            response = self._conn.getresponse()
            response.read()
            status = response.status
            if response.will_close:
                self.close()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            return type(exc).__name__
        self._last_used = time.perf_counter()
        return status


def closed_loop(spec: dict[str, Any]) -> dict[str, Any]:
    """`clients` threads, each sending its next webhook as soon as the previous one is answered."""
    clients, seconds = spec["clients"], spec["seconds"]
    ids = iter(range(spec["first_id"], spec["first_id"] + 100_000_000))
    id_lock = threading.Lock()
    outcomes: list[list[tuple[int | str, float]]] = [[] for _ in range(clients)]
    connected = threading.Barrier(clients + 1)
    go = threading.Event()
    deadline = [0.0]

    def run(index: int) -> None:
        client = Client(spec["port"], spec["path"], spec["event"])
        client.connect(prime=True)
        connected.wait()
        go.wait()
        mine = outcomes[index]
        while time.perf_counter() < deadline[0]:
            with id_lock:
                object_id = next(ids)
            started = time.perf_counter()
            status = client.post(object_id)
            mine.append((status, time.perf_counter() - started))
        client.close()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    connected.wait()
    began = time.perf_counter()
    deadline[0] = began + seconds
    go.set()
    for t in threads:
        t.join(seconds + CLIENT_TIMEOUT_S + 5)
    elapsed = time.perf_counter() - began
    results = [o for per_thread in outcomes for o in per_thread]
    return {
        "elapsed_s": elapsed,
        "statuses": [s for s, _ in results],
        "latencies_ms": [lat * 1000 for s, lat in results if isinstance(s, int) and 200 <= s < 300],
        "hung_threads": sum(t.is_alive() for t in threads),
    }


def open_loop(spec: dict[str, Any]) -> dict[str, Any]:
    """Request i is planned at t0 + i/rate; a pool of keep-alive connections sends each when due.

    Latency runs from the planned time to the end of the answer: time a request waits for a free
    connection because earlier ones are slow is counted, as a real sender would experience it.
    """
    rate, pool = spec["rate"], spec["pool"]
    total = round(rate * spec["seconds"])
    due: queue.Queue[tuple[int, float] | None] = queue.Queue()
    records: list[tuple[float, float, float, int | str]] = []  # (planned, sent, done, status)
    records_lock = threading.Lock()
    connected = threading.Barrier(pool + 1)

    def run() -> None:
        client = Client(spec["port"], spec["path"], spec["event"])
        client.connect(prime=True)
        connected.wait()
        mine = []
        while (item := due.get()) is not None:
            i, planned = item
            sent = time.perf_counter()
            status = client.post(spec["first_id"] + i)
            mine.append((planned, sent, time.perf_counter(), status))
        client.close()
        with records_lock:
            records.extend(mine)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(pool)]
    for t in threads:
        t.start()
    connected.wait()
    start = time.perf_counter() + 0.05
    dispatch_lag = 0.0
    for i in range(total):
        planned = start + i / rate
        delay = planned - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        else:
            dispatch_lag = max(dispatch_lag, -delay)
        due.put((i, planned))
    for _ in threads:
        due.put(None)
    for t in threads:
        t.join(CLIENT_TIMEOUT_S + 10)
    ok = [r for r in records if isinstance(r[3], int) and 200 <= r[3] < 300]
    return {
        "planned": total,
        "elapsed_s": max((r[2] for r in records), default=start) - start,
        "statuses": [r[3] for r in records],
        "latencies_ms": [(r[2] - r[0]) * 1000 for r in ok],
        "service_ms": [(r[2] - r[1]) * 1000 for r in ok],
        # (planned offset s, latency ms): shows whether the slow answers come in bursts
        "timeline": sorted((r[0] - start, (r[2] - r[0]) * 1000) for r in ok),
        "max_dispatch_lag_ms": dispatch_lag * 1000,
        "hung_threads": sum(t.is_alive() for t in threads),
    }


def loadgen_main(spec: dict[str, Any], pipe: Any) -> None:
    """The load-generator process: run one phase and send the raw results back."""
    try:
        result = closed_loop(spec) if spec["mode"] == "closed" else open_loop(spec)
        result["client_cpu_s"] = time.process_time()
        pipe.send(result)
    except BaseException as exc:  # report it rather than leave the parent waiting
        pipe.send({"error": f"{type(exc).__name__}: {exc}"})
    finally:
        pipe.close()


def run_phase(spec: dict[str, Any]) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=loadgen_main, args=(spec, child), name=f"loadgen-{spec['mode']}")
    proc.start()
    child.close()
    timeout = spec["seconds"] + CLIENT_TIMEOUT_S + 30
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
# FreshBooks stub: every request gets the Events API's 404 answer
# ---------------------------------------------------------------------------------------------


class _StubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without this, Nagle + delayed ACK add 40 ms per call.
    disable_nagle_algorithm = True
    BODY = json.dumps({"errno": 404, "message": "Requested resource could not be found."}).encode()

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.server.hits += 1  # type: ignore[attr-defined]
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.BODY)))
        self.end_headers()
        self.wfile.write(self.BODY)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FreshBooksStub:
    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _StubHandler)
        self.server.daemon_threads = True
        self.server.hits = 0  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="fb-stub", daemon=True)

    @property
    def hits(self) -> int:
        return int(self.server.hits)  # type: ignore[attr-defined]

    def __enter__(self) -> FreshBooksStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------------------------------
# The database: fresh, migrated, seeded
# ---------------------------------------------------------------------------------------------


def pg_unreachable() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return (
            "PostgreSQL at 127.0.0.1:5432 (user postgres, database test) is unreachable "
            f"({type(exc).__name__}{': ' + detail if detail else ''})"
        )
    return None


@contextlib.contextmanager
def fresh_database(kind: str, tmp: Path) -> Iterator[str]:
    """Yield the SQLAlchemy URL of an empty database; drop it afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'bench.db'}"
        return
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute("SET lock_timeout = '10s'")  # a server that did not stop could hold locks
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def migrate_and_seed(url: str) -> str:
    """Migrate (Alembic), add a workspace, a connection and one verified callback; return the URL token."""
    from storage import connections, migrate
    from storage.crypto import Cipher
    from storage.db import Database

    db = Database(url, pool_size=2)
    try:
        migrate.upgrade(db.engine)
        cipher = Cipher([ENCRYPTION_KEY])
        with db.session() as session:
            workspace = connections.ensure_workspace(
                session, team_id="TBENCH0001", now=dt.datetime.now(dt.UTC)
            )
            new = connections.create_connection(
                session,
                cipher,
                workspace_id=workspace.id,
                account_id=ACCOUNT_ID,
                business_id=3,
                business_name="Benchmark Business",
                # A token, so the background worker really calls the (stub) API for every row.
                access_token="bench-access-token",
                refresh_token="bench-refresh-token",
                token_expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=1),
                now=dt.datetime.now(dt.UTC),
            )
            callback = connections.record_callback(
                session,
                connection_id=new.connection.id,
                callback_id=CALLBACK_ID,
                event="invoice.create",
                now=dt.datetime.now(dt.UTC),
            )
            connections.adopt_verifier(
                session,
                callback_row_id=callback.id,
                verifier_enc=cipher.encrypt(VERIFIER),
                now=dt.datetime.now(dt.UTC),
            )
        return new.webhook_token
    finally:
        db.dispose()


class Inbox:
    """Read-only counts. Not storage.db.Database: its SQLite sessions take the write lock."""

    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        self._engine = create_engine(url, poolclass=NullPool)

    def rows(self) -> int:
        from sqlalchemy import text

        with self._engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM webhook_inbox")).scalar_one())

    def by_state(self) -> dict[str, int]:
        from sqlalchemy import text

        with self._engine.connect() as conn:
            rows = conn.execute(text("SELECT state, count(*) FROM webhook_inbox GROUP BY state")).all()
        return {str(state): int(n) for state, n in rows}

    def wait_drained(self, deadline_s: float) -> tuple[int, float]:
        """Wait until the background worker has no pending row left: (pending left, seconds waited)."""
        began = time.monotonic()
        while True:
            pending = self.by_state().get("pending", 0)
            waited = time.monotonic() - began
            if pending == 0 or waited >= deadline_s:
                return pending, waited
            time.sleep(0.25)

    def dispose(self) -> None:
        self._engine.dispose()


# ---------------------------------------------------------------------------------------------
# The server under test, and CPU accounting from /proc
# ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fbslack_command() -> list[str]:
    script = Path(sys.executable).parent / "fbslack"
    if script.exists():
        return [str(script), "serve"]
    return [sys.executable, "-m", "connector.ops.cli", "serve"]


def server_environment(
    url: str, port: int, data_dir: Path, stub_url: str, workers: int | None, threads: int | None
) -> dict[str, str]:
    from connector.domain.settings import Settings

    # Nothing from the caller's shell that the app would read as its configuration.
    known = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in known}
    env.update(
        DATABASE_URL=url,
        ENCRYPTION_KEYS=ENCRYPTION_KEY,
        PORT=str(port),
        HOST="127.0.0.1",
        DATA_DIR=str(data_dir),
        LOG_LEVEL="INFO",
        FRESHBOOKS_API_URL=stub_url,
        PYTHONUNBUFFERED="1",
    )
    env[BARE_ROUTE_ENV] = "1"  # adds the bare route the throughput is compared with
    # Unset: the server's own defaults (what a user gets), which the benchmark is meant to measure.
    if workers is not None:
        env["WEB_WORKERS"] = str(workers)
    if threads is not None:
        env["WEB_THREADS"] = str(threads)
    return env


def machine_cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies over all CPUs from /proc/stat; (0, 0) where there is none."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return 0.0, 0.0
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return float(total - idle), float(total)


def busy_pct(before: tuple[float, float], after: tuple[float, float]) -> float | None:
    if after[1] <= before[1]:
        return None
    return round(100 * (after[0] - before[0]) / (after[1] - before[1]), 1)


def process_cpu() -> dict[int, tuple[str, int, float]]:
    """pid -> (command, parent pid, user + system CPU seconds) of every live process (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[int, tuple[str, int, float]] = {}
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            command = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2 :].split()
            found[int(entry)] = (command, int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    return found


class CpuMeter:
    """Where the machine's CPU went during a phase: the server, PostgreSQL, the client, everything else.

    The benchmark shares a 2-core machine, so a number is only meaningful next to how much of the
    machine other processes took meanwhile. PostgreSQL counts every backend (ours and anyone else's).
    """

    def __init__(self, server_pid: int) -> None:
        self._server_pid = server_pid
        self._procs = process_cpu()
        self._machine = machine_cpu_times()
        self._started = time.monotonic()

    def _group(self, pid: int, command: str, ppid: int) -> str:
        if pid == self._server_pid or ppid == self._server_pid:
            return "server"
        if command in ("postgres", "postmaster"):
            return "postgresql"
        if pid == os.getpid():
            return "orchestrator"
        return "rest"

    def stop(self, client_cpu_s: float) -> dict[str, Any]:
        after = process_cpu()
        machine = machine_cpu_times()
        wall = time.monotonic() - self._started
        groups = {"server": 0.0, "postgresql": 0.0, "orchestrator": 0.0}
        for pid, (command, ppid, cpu) in after.items():
            group = self._group(pid, command, ppid)
            if group in groups:
                groups[group] += cpu - (self._procs[pid][2] if pid in self._procs else 0.0)
        tick = os.sysconf("SC_CLK_TCK")
        busy_s = (machine[0] - self._machine[0]) / tick
        capacity_s = wall * (os.cpu_count() or 1)
        groups["client"] = client_cpu_s
        # Whatever the machine did besides us: other people's processes, the kernel, short-lived jobs.
        groups["other"] = max(0.0, busy_s - sum(groups.values()))
        result: dict[str, Any] = {f"{k}_s": round(v, 2) for k, v in groups.items()}
        result["machine_busy_pct"] = round(100 * busy_s / capacity_s, 1) if capacity_s else None
        result["other_pct"] = round(100 * groups["other"] / capacity_s, 1) if capacity_s else None
        return result


class Server:
    """`fbslack serve` as a subprocess in its own session, its output in a log file."""

    def __init__(self, env: dict[str, str], log_path: Path, port: int) -> None:
        self.port = port
        self._log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            fbslack_command(),
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C reaches only us, and we stop it with SIGTERM
        )

    def log_tail(self, lines: int = 30) -> str:
        if not self._log.closed:
            self._log.flush()
        try:
            text = self._log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_healthy(self) -> float:
        began = time.monotonic()
        last = "no answer"
        while time.monotonic() - began < HEALTH_DEADLINE_S:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the server exited with {self.proc.returncode} before it was healthy:\n{self.log_tail()}"
                )
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            try:
                conn.request("GET", "/healthz")
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    return time.monotonic() - began
                last = f"HTTP {response.status}"
            except OSError as exc:
                last = type(exc).__name__
            finally:
                conn.close()
            time.sleep(0.1)
        raise RuntimeError(
            f"the server was not healthy after {HEALTH_DEADLINE_S:.0f} s ({last}):\n{self.log_tail()}"
        )

    def stop(self) -> dict[str, Any]:
        """SIGTERM the gunicorn master and wait; SIGKILL its session only if it does not stop."""
        began = time.monotonic()
        clean = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                clean = False
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()
        return {
            "clean": clean and self.proc.returncode == 0,
            "returncode": self.proc.returncode,
            "seconds": round(time.monotonic() - began, 2),
        }


# ---------------------------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------------------------


def percentile(sorted_values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(round(pct * len(sorted_values) / 100, 6)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def slow_bursts(timeline: list[tuple[float, float]], limit_ms: float, top: int = 5) -> list[dict[str, Any]]:
    """Requests over `limit_ms`, grouped when planned within 50 ms of each other; the largest groups."""
    bursts: list[dict[str, Any]] = []
    for planned, latency in timeline:
        if latency <= limit_ms:
            continue
        if bursts and planned - bursts[-1]["to_s"] < 0.05:
            burst = bursts[-1]
            burst["to_s"] = planned
            burst["requests"] += 1
            burst["max_ms"] = max(burst["max_ms"], latency)
        else:
            bursts.append({"from_s": planned, "to_s": planned, "requests": 1, "max_ms": latency})
    bursts.sort(key=lambda b: (-b["requests"], -b["max_ms"]))
    return [
        {
            "from_s": round(b["from_s"], 2),
            "to_s": round(b["to_s"], 2),
            "requests": b["requests"],
            "max_ms": round(b["max_ms"], 1),
        }
        for b in bursts[:top]
    ]


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    statuses = Counter(str(s) for s in result["statuses"])
    acked = sum(n for s, n in statuses.items() if s.isdigit() and 200 <= int(s) < 300)
    latencies = sorted(result["latencies_ms"])
    elapsed = result["elapsed_s"]
    summary: dict[str, Any] = {
        "sent": len(result["statuses"]),
        "acked": acked,
        "errors": len(result["statuses"]) - acked,
        "outcomes": dict(statuses),
        "elapsed_s": round(elapsed, 3),
        "acked_per_s": round(acked / elapsed, 1) if elapsed > 0 else 0.0,
        "hung_client_threads": result["hung_threads"],
        "client_cpu_s": round(result["client_cpu_s"], 2),
    }
    for name, pct in (("p50", 50), ("p90", 90), ("p99", 99), ("p999", 99.9)):
        value = percentile(latencies, pct)
        summary[f"{name}_ms"] = round(value, 2) if value is not None else None
    summary["max_ms"] = round(latencies[-1], 2) if latencies else None
    summary["mean_ms"] = round(sum(latencies) / len(latencies), 2) if latencies else None
    summary["over_target"] = sum(1 for v in latencies if v > TARGET_P99_MS)
    if "service_ms" in result:
        service = sorted(result["service_ms"])
        summary["planned"] = result["planned"]
        summary["service_p50_ms"] = round(percentile(service, 50) or 0.0, 2)
        summary["service_p99_ms"] = round(percentile(service, 99) or 0.0, 2)
        summary["max_dispatch_lag_ms"] = round(result["max_dispatch_lag_ms"], 2)
        summary["slow_bursts"] = slow_bursts(result["timeline"], TARGET_P99_MS)
    return summary


def phase_line(s: dict[str, Any]) -> str:
    return (
        f"{s['acked']} acked in {s['elapsed_s']:.1f} s ({s['acked_per_s']}/s), p50 {s['p50_ms']} ms, "
        f"p99 {s['p99_ms']} ms, max {s['max_ms']} ms, errors {s['errors']}, lost {s['lost']}; "
        f"server CPU {s['server_cpu_ms_per_ack']} ms/ack, machine CPU {s['machine_cpu_busy_pct']}% busy "
        f"({s['cpu']['other_pct']}% by others), "
        f"{s['pending_after']} rows still pending"
    )


# ---------------------------------------------------------------------------------------------
# One leg: one database, every phase
# ---------------------------------------------------------------------------------------------


def run_leg(kind: str, args: argparse.Namespace, stub: FreshBooksStub) -> dict[str, Any]:
    leg: dict[str, Any] = {"db": kind, "phases": {}}
    idle = machine_cpu_times()
    time.sleep(1.0)
    leg["machine_busy_before_pct"] = busy_pct(idle, machine_cpu_times())
    if (leg["machine_busy_before_pct"] or 0) > BUSY_MACHINE_PCT:
        print(
            f"  [{kind}] WARNING: the machine is already {leg['machine_busy_before_pct']}% busy before the "
            "benchmark starts: expect slower, noisier numbers",
            file=sys.stderr,
        )
    tmp = Path(tempfile.mkdtemp(prefix=f"fbslack-bench-{kind}-"))
    began = time.monotonic()
    try:
        with fresh_database(kind, tmp) as url:
            token = migrate_and_seed(url)
            inbox = Inbox(url)
            port = free_port()
            env = server_environment(url, port, tmp / "data", stub.url, args.workers, args.threads)
            server = Server(env, tmp / "server.log", port)
            try:
                leg["startup_s"] = round(server.wait_healthy(), 2)
                fetches_before = stub.hits
                common = {"port": port, "path": f"/freshbooks/webhooks/{token}", "event": args.event}
                open_spec = {"mode": "open", "rate": args.rate, "pool": args.pool}
                phases = [
                    ("warmup", {**open_spec, "seconds": args.warmup, "first_id": 1}),
                    # Latency before throughput: the steady rate meets a drained inbox, not the
                    # backlog a flat-out phase leaves for the background worker.
                    ("latency", {**open_spec, "seconds": args.seconds, "first_id": 10_000_000}),
                    # The ceiling: the same clients and bodies against the bare route, on the same
                    # server, after the worker has drained (as the throughput phase starts).
                    (
                        "bare",
                        {
                            "mode": "closed",
                            "clients": args.clients,
                            "seconds": args.seconds,
                            "first_id": 40_000_000,
                            "path": BARE_PATH,
                        },
                    ),
                    (
                        "throughput",
                        {
                            "mode": "closed",
                            "clients": args.clients,
                            "seconds": args.seconds,
                            "first_id": 50_000_000,
                        },
                    ),
                ]
                for name, spec in phases:
                    if name in ("latency", "bare"):
                        pending, waited = inbox.wait_drained(args.drain)
                        leg[f"pending_before_{name}"] = {"pending": pending, "waited_s": round(waited, 2)}
                    rows_before = inbox.rows()
                    meter = CpuMeter(server.proc.pid)
                    raw = run_phase({**common, **spec})
                    cpu = meter.stop(raw["client_cpu_s"])
                    stored = inbox.rows() - rows_before
                    summary = summarize(raw)
                    summary["stored"] = stored
                    # The bare route stores nothing: nothing it acknowledges can be lost.
                    expected = 0 if name == "bare" else summary["acked"]
                    summary["lost"] = max(0, expected - stored)
                    summary["stored_without_ack"] = max(0, stored - summary["acked"])
                    summary["pending_after"] = inbox.by_state().get("pending", 0)
                    summary["cpu"] = cpu
                    summary["server_cpu_ms_per_ack"] = (
                        round(cpu["server_s"] * 1000 / summary["acked"], 2) if summary["acked"] else None
                    )
                    summary["machine_cpu_busy_pct"] = cpu["machine_busy_pct"]
                    if (cpu["other_pct"] or 0) > BUSY_MACHINE_PCT:
                        print(
                            f"  [{kind}] WARNING: other processes took {cpu['other_pct']}% of the machine "
                            f"during the {name} phase: its numbers are skewed",
                            file=sys.stderr,
                        )
                    leg["phases"][name] = summary
                    print(f"  [{kind}] {name}: {phase_line(summary)}", file=sys.stderr, flush=True)
                leg["freshbooks_fetches"] = stub.hits - fetches_before
                bare_rate = leg["phases"]["bare"]["acked_per_s"]
                leg["ratio_to_bare"] = (
                    round(leg["phases"]["throughput"]["acked_per_s"] / bare_rate, 3) if bare_rate else None
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
            leg["acked_total"] = sum(p["acked"] for n, p in leg["phases"].items() if n != "bare")
            leg["rows_total"] = inbox.rows()
            leg["lost"] = max(0, leg["acked_total"] - leg["rows_total"])
            leg["inbox_by_state"] = inbox.by_state()
            inbox.dispose()
            leg["server_log"] = scan_server_log(tmp / "server.log")
    finally:
        if args.keep:
            leg["kept_dir"] = str(tmp)
            print(f"  [{kind}] kept {tmp} (server.log, bench.db)", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    leg["leg_seconds"] = round(time.monotonic() - began, 1)
    return leg


def scan_server_log(log_path: Path) -> dict[str, int]:
    """The expected 'inbox item failed' lines (the stub's 404s) apart from anything unexpected."""
    counts = {"inbox_item_failed_404": 0, "tracebacks": 0, "other_errors": 0}
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return counts
    for line in lines:
        if "inbox item failed" in line:
            counts["inbox_item_failed_404"] += 1
        elif line.startswith("Traceback"):
            counts["tracebacks"] += 1
        elif " ERROR " in line or "[ERROR]" in line or " CRITICAL " in line:
            counts["other_errors"] += 1
    return counts


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def target_met(leg: dict[str, Any]) -> bool:
    lat = leg["phases"]["latency"]
    fast = lat["p99_ms"] is not None and lat["p99_ms"] < TARGET_P99_MS
    return fast and lat["errors"] == 0 and leg["lost"] == 0


def throughput_met(leg: dict[str, Any]) -> bool:
    tp = leg["phases"]["throughput"]
    ratio = leg.get("ratio_to_bare")
    return tp["acked_per_s"] >= TARGET_THROUGHPUT and ratio is not None and ratio >= TARGET_RATIO


def markdown(results: dict[str, Any]) -> str:
    cfg, mach = results["config"], results["machine"]
    rate = fmt(cfg["rate"])
    lines = [
        f"### Webhook intake: `fbslack serve` ({cfg['workers'] or 'default'} workers x "
        f"{cfg['threads'] or 'default'} threads, plus the background process) on "
        f"{mach['cpus']} CPUs ({mach['cpu_model']})",
        "",
        f"Latency: open loop at {rate}/s for {fmt(cfg['seconds'])} s, from the planned send time. "
        f"Throughput: {cfg['clients']} keep-alive clients flat out for {fmt(cfg['seconds'])} s; the same "
        f"against a bare Flask route on the same server, just before. Event `{cfg['event']}`.",
        "",
        f"| DB | throughput (acked/s) | bare Flask (req/s) | ratio | p50 @{rate}/s (ms) | p90 (ms) "
        f"| p99 (ms) | max (ms) | errors | lost | >= {TARGET_THROUGHPUT:g}/s and ratio >= {TARGET_RATIO:g} "
        f"| p99 < {TARGET_P99_MS:g} ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    notes = []
    for leg in results["legs"]:
        if "skipped" in leg or "failed" in leg:
            what = f"skipped: {leg['skipped']}" if "skipped" in leg else f"FAILED: {leg['failed']}"
            lines.append(f"| {leg['db']} | {what} | | | | | | | | | | |")
            continue
        tp, lat, bare = leg["phases"]["throughput"], leg["phases"]["latency"], leg["phases"]["bare"]
        errors = sum(p["errors"] for p in leg["phases"].values())
        lines.append(
            f"| {leg['db']} | {fmt(tp['acked_per_s'])} | {fmt(bare['acked_per_s'])} | "
            f"{fmt(leg['ratio_to_bare'])} | {fmt(lat['p50_ms'])} | {fmt(lat['p90_ms'])} | "
            f"{fmt(lat['p99_ms'])} | {fmt(lat['max_ms'])} | {errors} | {leg['lost']} | "
            f"{'yes' if throughput_met(leg) else 'no'} | {'yes' if target_met(leg) else 'no'} |"
        )
        worst = lat["slow_bursts"][0] if lat["slow_bursts"] else None
        notes.append(
            f"- {leg['db']}: {lat['acked']}/{lat['planned']} acked at {fmt(lat['acked_per_s'])}/s, "
            f"{lat['over_target']} over {TARGET_P99_MS:g} ms"
            + (
                f" (largest burst: {worst['requests']} requests at {worst['from_s']}-{worst['to_s']} s, "
                f"max {worst['max_ms']} ms)"
                if worst
                else ""
            )
            + f"; server CPU {fmt(lat['server_cpu_ms_per_ack'])} ms/webhook, machine "
            f"{fmt(lat['machine_cpu_busy_pct'])}% busy ({fmt(lat['cpu']['other_pct'])}% by other processes), "
            f"{lat['pending_after']} rows left pending by the "
            f"worker. Throughput phase p50 {fmt(tp['p50_ms'])} / p99 {fmt(tp['p99_ms'])} ms, server CPU "
            f"{fmt(tp['server_cpu_ms_per_ack'])} ms/ack (bare route {fmt(bare['server_cpu_ms_per_ack'])} "
            f"ms/request). Inbox rows "
            f"{leg['rows_total']} = acked {leg['acked_total']}. Machine "
            f"{fmt(leg['machine_busy_before_pct'])}% busy before start; server stop "
            f"{'clean' if leg['stop']['clean'] else 'NOT clean'} in "
            f"{fmt(leg['stop']['seconds'])} s; leg {fmt(leg['leg_seconds'])} s."
        )
    return "\n".join([*lines, "", *notes])


def run_legs(
    kinds: list[str],
    run: Callable[[str], dict[str, Any]],
    results: dict[str, Any],
    failed: Callable[[dict[str, Any]], bool],
) -> int:
    """Run one leg per database into results["legs"] (a skipped or crashed leg is recorded, not
    fatal); return the exit status: 130 interrupted, 1 if a leg crashed or `failed(leg)`, else 0."""
    status = 0
    for kind in kinds:
        if kind == "postgresql" and (reason := pg_unreachable()):
            print(f"SKIPPING the PostgreSQL leg: {reason}", file=sys.stderr)
            results["legs"].append({"db": kind, "skipped": reason})
            continue
        print(f"== {kind} ==", file=sys.stderr, flush=True)
        try:
            leg = run(kind)
        except KeyboardInterrupt:
            # The leg's cleanup (server stop, schema drop, temp dir) has run on the way out.
            print(f"interrupted during the {kind} leg", file=sys.stderr)
            results["legs"].append({"db": kind, "failed": "interrupted"})
            return 130
        except Exception as exc:
            print(f"the {kind} leg failed: {exc}", file=sys.stderr)
            results["legs"].append({"db": kind, "failed": f"{type(exc).__name__}: {str(exc)[:2000]}"})
            status = 1
            continue
        results["legs"].append(leg)
        if failed(leg):
            status = 1
    return status


def write_results(results: dict[str, Any], report: str, json_path: Path | None) -> None:
    """The Markdown report on stdout and, when asked, the full results as JSON."""
    print(report, flush=True)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nresults written to {json_path}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Webhook intake benchmark through `fbslack serve`.")
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--rate", type=float, default=200.0, help="webhooks/s in the latency phase (200)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measured phase (10)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients, throughput phase (16)")
    parser.add_argument("--pool", type=int, default=64, help="keep-alive connections, latency phase (64)")
    parser.add_argument("--workers", type=int, help="WEB_WORKERS for the server (default: the server's)")
    parser.add_argument("--threads", type=int, help="WEB_THREADS for the server (default: the server's)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of unmeasured traffic first (2)")
    parser.add_argument(
        "--drain", type=float, default=8.0, help="max s to let the worker drain before measuring latency (8)"
    )
    parser.add_argument(
        "--event",
        default="invoice.create",
        help="event name to send; an ignored event (e.g. client.create) is stored without waking the "
        "background worker, which isolates the intake's own cost",
    )
    parser.add_argument("--json", type=Path, help="also write the full results to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (server.log, SQLite file)")
    args = parser.parse_args(argv)

    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    results: dict[str, Any] = {
        "benchmark": "ingest",
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "target": {
            "p99_ms": TARGET_P99_MS,
            "rate": args.rate,
            "throughput_per_s": TARGET_THROUGHPUT,
            "ratio_to_bare": TARGET_RATIO,
        },
        "legs": [],
    }
    with FreshBooksStub() as stub:
        status = run_legs(
            kinds,
            lambda kind: run_leg(kind, args, stub),
            results,
            lambda leg: bool(leg["lost"] or any(p["lost"] for p in leg["phases"].values())),
        )
    write_results(results, markdown(results), args.json)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
