"""The web workers' HTTP front: each request is read whole, within its limits, before a thread runs it.

gunicorn's gthread worker gives a connection to a thread as soon as its first byte arrives, and the
thread then blocks reading the rest: forty clients sending a byte a second held every thread of
both workers (issue 12). Here one asyncio loop per worker process reads the requests (h11 parses
them) and hands the WSGI app only complete ones, on a pool of threads. A client, however slow,
costs a socket and a buffer, never a thread. The body limit of the route a request names is known
before its body is read (413, whether Content-Length declares it or a chunked body reaches it); a
request must arrive within `read_seconds` of its first byte (408).

A route may be answered by the front itself, on its loop (`DirectRoute`): the webhook route does
so, to spare the common case the WSGI app and two thread hand-offs (issue 12, section 5).

Each worker listens on a socket of its own (gunicorn's `reuse_port`: SO_REUSEPORT, bound after the
fork): the kernel spreads new connections over the workers, instead of one worker taking every
keep-alive connection because it woke first.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import socket
import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote_to_bytes

import h11
from gunicorn.workers.base import Worker

log = logging.getLogger(__name__)

# (method, path) -> the largest body the route accepts, in bytes.
BodyLimit = Callable[[str, str], int]
WsgiApp = Callable[..., Iterable[bytes]]


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes


class DirectRoute(Protocol):
    """A request the front answers on its loop, without the WSGI app (the path was matched)."""

    def too_large(self) -> None:
        """The front refused its body (413) before reading it whole."""

    async def answer(self, headers: Sequence[tuple[bytes, bytes]], body: bytes) -> Answer | None:
        """The answer; None to have the WSGI app answer it after all. `headers` are h11's: names
        lower-case, values as sent. Must not block the loop."""


# (method, path) -> the direct route that answers it, or None for the WSGI app.
DirectRoutes = Callable[[str, str], DirectRoute | None]

MAX_HEADER_BYTES = 16 * 1024  # request line and headers together; above it, 431
_READ_SIZE = 64 * 1024
_REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True, slots=True)
class Limits:
    """How long and how much a client may take. Seconds are wall durations on the loop's clock."""

    read_seconds: float = 10.0  # from a request's first byte to its last
    keepalive_seconds: float = 5.0  # a connection idle between requests (or before the first) closes
    max_connections: int = 1000  # per worker; more are answered 503 at once
    # After a refusal, what is still arriving is read and dropped for this long, up to this much, so
    # that the client reads the answer instead of a reset; then the connection closes.
    linger_seconds: float = 1.0
    linger_bytes: int = 1024 * 1024


_FAILED = Answer(500, "Internal Server Error", [], b"")  # the app raised: 500, and the connection closes


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def too_large_message(limit: int) -> str:
    """What a 413 says, whichever server refused the body."""
    size = f"{limit // 1024} KiB" if limit >= 1024 and limit % 1024 == 0 else f"{limit} bytes"
    return f"the body is larger than {size}, the limit of this URL"


def _error_bytes(status: int, message: str) -> bytes:
    body = (message + "\n").encode()
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


def _environ(
    request: h11.Request, body: bytes, *, peer: tuple[str, int], server: tuple[str, int]
) -> dict[str, Any]:
    """PEP 3333 environ of a complete request. Header names with `_` are dropped (as gunicorn does):
    `X_Forwarded_For` and `X-Forwarded-For` would otherwise become the same variable."""
    target = request.target
    path, _, query = target.partition(b"?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method.decode("ascii"),
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": query.decode("latin-1"),
        "SERVER_NAME": server[0],
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": "HTTP/" + request.http_version.decode("ascii"),
        "REMOTE_ADDR": peer[0],
        "REMOTE_PORT": str(peer[1]),
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for raw_name, raw_value in request.headers:
        if b"_" in raw_name:
            continue
        name = raw_name.decode("ascii").upper().replace("-", "_")
        value = raw_value.decode("latin-1")
        if name in ("CONTENT_LENGTH", "TRANSFER_ENCODING"):
            continue  # the body is whole and de-chunked: CONTENT_LENGTH is its real length
        key = name if name == "CONTENT_TYPE" else f"HTTP_{name}"
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


def call_wsgi(app: WsgiApp, environ: dict[str, Any]) -> tuple[int, str, list[tuple[str, str]], bytes]:
    """Run the app on a complete request; its whole answer. Runs in a pool thread."""
    started: list[tuple[str, list[tuple[str, str]]]] = []
    chunks: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if exc_info is not None and started:
            raise exc_info[1].with_traceback(exc_info[2])
        started[:] = [(status, headers)]
        return chunks.append

    result = app(environ, start_response)
    try:
        chunks.extend(chunk for chunk in result if chunk)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    status, headers = started[0]
    code, _, reason = status.partition(" ")
    return int(code), reason, headers, b"".join(chunks)


class Front:
    """Serves one listening socket: reads requests on the loop, runs the app on `threads` threads."""

    def __init__(
        self,
        app: WsgiApp,
        *,
        body_limit: BodyLimit,
        threads: int,
        limits: Limits,
        direct: DirectRoutes | None = None,
    ) -> None:
        self._app = app
        self._body_limit = body_limit
        self._direct = direct
        self._limits = limits
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fbslack-web")
        self._idle: set[asyncio.StreamWriter] = set()
        self.connections = 0
        self.stopping = False

    async def serve(self, sock: socket.socket) -> asyncio.Server:
        return await asyncio.start_server(self._connection, sock=sock, limit=_READ_SIZE)

    def stop_idle(self) -> None:
        """Shutting down: close connections waiting for a request; the others finish theirs."""
        self.stopping = True
        for writer in list(self._idle):
            writer.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            if self.connections > self._limits.max_connections:
                writer.write(_error_bytes(503, "too many connections"))
                return
            await self._requests(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away
        finally:
            self.connections -= 1
            self._idle.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        peer = writer.get_extra_info("peername") or ("", 0)
        server = writer.get_extra_info("sockname") or ("", 0)
        while not self.stopping:
            if not conn.trailing_data[0]:  # nothing pipelined: wait for the next request to start
                self._idle.add(writer)
                try:
                    async with asyncio.timeout(self._limits.keepalive_seconds):
                        data = await reader.read(_READ_SIZE)
                except TimeoutError:
                    return
                finally:
                    self._idle.discard(writer)
                if not data:
                    return
                conn.receive_data(data)
            try:
                async with asyncio.timeout(self._limits.read_seconds):
                    request, body, route = await self._read_request(conn, reader, writer)
            except TimeoutError:
                await self._refuse(writer, reader, 408, "the request did not arrive in time")
                return
            except _Refused as refused:
                await self._refuse(writer, reader, refused.status, str(refused))
                return
            except h11.RemoteProtocolError as exc:
                await self._refuse(writer, reader, exc.error_status_hint, "malformed request")
                return
            if request is None:
                return
            answer = None if route is None else await self._answer_direct(route, request, body)
            if answer is None:
                answer = await self._answer(_environ(request, body, peer=peer[:2], server=server[:2]))
            if not await self._send(conn, writer, request.method == b"HEAD", answer):
                return
            conn.start_next_cycle()

    async def _answer(self, environ: dict[str, Any]) -> Answer:
        """Run the app on the thread pool; its answer."""
        loop = asyncio.get_running_loop()
        try:
            code, reason, headers, content = await loop.run_in_executor(
                self._pool, call_wsgi, self._app, environ
            )
        except Exception:
            log.exception("the app failed on %s %s", environ["REQUEST_METHOD"], environ["PATH_INFO"])
            return _FAILED
        return Answer(code, reason, headers, content)

    @staticmethod
    async def _answer_direct(route: DirectRoute, request: h11.Request, body: bytes) -> Answer | None:
        try:
            return await route.answer(request.headers, body)
        except Exception:
            log.exception("the front's own route failed on %s", request.method.decode("ascii"))
            return _FAILED

    async def _send(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, head: bool, answer: Answer
    ) -> bool:
        """Send the answer; whether the connection may go on."""
        if answer is _FAILED:
            writer.write(_error_bytes(500, "internal error"))
            return False
        headers = answer.headers
        if not head and not any(k.lower() == "content-length" for k, _ in headers):
            headers = [*headers, ("Content-Length", str(len(answer.body)))]
        if self.stopping:
            headers = [*headers, ("Connection", "close")]
        out = conn.send(
            h11.Response(status_code=answer.status, headers=headers, reason=answer.reason.encode("latin-1"))
        )
        if answer.body and not head:
            out = (out or b"") + (conn.send(h11.Data(data=answer.body)) or b"")
        writer.write((out or b"") + (conn.send(h11.EndOfMessage()) or b""))
        async with asyncio.timeout(self._limits.read_seconds):
            await writer.drain()
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE

    async def _read_request(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[h11.Request | None, bytes, DirectRoute | None]:
        request = await self._next_event(conn, reader)
        if not isinstance(request, h11.Request):
            return None, b"", None  # the client closed the connection
        method = request.method.decode("ascii")
        path = unquote_to_bytes(request.target.partition(b"?")[0]).decode("latin-1")
        limit = self._body_limit(method, path)
        route = self._direct(method, path) if self._direct is not None else None
        # h11 has checked the framing: one Content-Length, digits only, not beside chunked.
        declared = next((int(v) for k, v in request.headers if k == b"content-length"), None)
        if declared is not None and declared > limit:
            raise self._too_large(route, limit)
        if conn.they_are_waiting_for_100_continue:
            writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
        body = bytearray()
        while True:
            event = await self._next_event(conn, reader)
            if isinstance(event, h11.Data):
                body += event.data
                if len(body) > limit:
                    raise self._too_large(route, limit)
            elif isinstance(event, h11.EndOfMessage):
                return request, bytes(body), route
            else:
                return None, b"", None

    @staticmethod
    def _too_large(route: DirectRoute | None, limit: int) -> _Refused:
        if route is not None:
            route.too_large()
        return _Refused(413, too_large_message(limit))

    @staticmethod
    async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> Any:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            conn.receive_data(await reader.read(_READ_SIZE))

    async def _refuse(
        self, writer: asyncio.StreamWriter, reader: asyncio.StreamReader, status: int, message: str
    ) -> None:
        """Answer and close. What the client is still sending is read and dropped for a moment,
        so that closing does not reset the connection before the client has read the answer."""
        writer.write(_error_bytes(status, message))
        with contextlib.suppress(OSError, TimeoutError):
            await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
            dropped = 0
            async with asyncio.timeout(self._limits.linger_seconds):
                while dropped < self._limits.linger_bytes and (chunk := await reader.read(_READ_SIZE)):
                    dropped += len(chunk)


class FrontWorker(Worker):  # type: ignore[misc]
    """A gunicorn worker serving through `Front`. The gunicorn application must have a `body_limit`
    and may have `direct` routes (both set when its `wsgi()` loads the app). Heartbeat, SIGTERM
    (graceful) and the master's death are handled as gunicorn's own workers do."""

    def run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        front = Front(
            self.wsgi,
            body_limit=self.app.body_limit,
            threads=self.cfg.threads,
            limits=Limits(keepalive_seconds=self.cfg.keepalive, max_connections=self.cfg.worker_connections),
            direct=getattr(self.app, "direct", None),
        )
        # With reuse_port, gunicorn binds these in each worker after the fork (SO_REUSEPORT).
        servers = [await front.serve(listener.sock) for listener in self.sockets]
        loop = asyncio.get_running_loop()
        try:
            while self.alive:
                self.notify()
                if self.ppid != os.getppid():
                    log.warning("the gunicorn master is gone: stopping web worker %d", os.getpid())
                    break
                await asyncio.sleep(1.0)
        finally:
            for server in servers:
                server.close()
            front.stop_idle()
            deadline = loop.time() + self.cfg.graceful_timeout
            while front.connections and loop.time() < deadline:
                self.notify()
                await asyncio.sleep(0.05)
            front.close()
