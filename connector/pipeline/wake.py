"""Waking the background process from the web processes: one datagram on a Unix socket.

A stored webhook should be processed at once, not at the next poll. The web workers and the
background worker are separate processes (so pipeline work never competes with acknowledging
webhooks for the GIL); a datagram is the cheapest reliable nudge between them. If it is lost, the
background loop's own short poll picks the row up anyway.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class WakeSender:
    def __init__(self, path: str) -> None:
        self._path = path
        self._local = threading.local()

    def __call__(self) -> None:
        sock = getattr(self._local, "sock", None)
        if sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.setblocking(False)
            self._local.sock = sock
        # A full queue or a listener that is restarting: the poll covers it.
        with contextlib.suppress(OSError):
            sock.sendto(b"w", self._path)


class WakeListener:
    """Calls `on_wake` for every datagram (coalesced: one call per burst is enough)."""

    def __init__(self, path: str, on_wake: Callable[[], None]) -> None:
        self._path = path
        self._on_wake = on_wake
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
                self._sock.recv(64)
            except TimeoutError:
                continue
            except OSError:
                if not self._stopping.is_set():
                    log.exception("wake socket failed")
                return
            self._on_wake()
