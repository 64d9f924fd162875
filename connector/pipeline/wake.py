"""Waking the background process from the web processes: one datagram on a Unix socket.

A stored webhook should be processed at once, not at the next poll. The web workers and the
background worker are separate processes (so pipeline work never competes with acknowledging
webhooks for the GIL); a datagram is the cheapest reliable nudge between them. If it is lost, the
background loop's own short poll picks the row up anyway.

The datagram names what arrived (`INBOX` or `VERIFICATION`), so a burst of webhooks wakes only the
inbox loop: waking every loop would make the callback-verification loop query its table once per
webhook for nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

INBOX = b"i"  # a webhook was stored
VERIFICATION = b"v"  # a callback verification was received


class WakeSender:
    def __init__(self, path: str) -> None:
        self._path = path
        self._local = threading.local()

    def inbox(self) -> None:
        self._send(INBOX)

    def verification(self) -> None:
        self._send(VERIFICATION)

    def _send(self, kind: bytes) -> None:
        sock = getattr(self._local, "sock", None)
        if sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.setblocking(False)
            self._local.sock = sock
        # A full queue or a listener that is restarting: the poll covers it.
        with contextlib.suppress(OSError):
            sock.sendto(kind, self._path)


class WakeListener:
    """Calls the handler named by each datagram; one it does not know (a sender of another
    version during an upgrade) wakes every handler, which is never wrong, only wasteful."""

    def __init__(self, path: str, handlers: Mapping[bytes, Callable[[], None]]) -> None:
        self._path = path
        self._handlers = dict(handlers)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(path)
        self._sock.settimeout(1.0)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wake-listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                kind = self._sock.recv(64)
            except TimeoutError:
                continue
            except OSError:
                if not self._stopping.is_set():
                    log.exception("wake socket failed")
                return
            self._dispatch(kind)

    def _dispatch(self, kind: bytes) -> None:
        handler = self._handlers.get(kind)
        if handler is not None:
            handler()
            return
        for each in self._handlers.values():
            each()
