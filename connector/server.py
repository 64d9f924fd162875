"""The production server: gunicorn (threaded workers) for requests, plus one background process.

Web workers only acknowledge: verify, store, answer. The background process runs the pipeline
loops, the delivery engine and the scheduled jobs; the web workers wake it through a Unix datagram
socket. Several hosts on one PostgreSQL each run their own pair; the database coordinates them.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from typing import Any

from gunicorn.app.base import BaseApplication

from connector.settings import Settings

log = logging.getLogger(__name__)


class Server(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, *, workers: int, threads: int) -> None:
        self._settings = settings
        self._wake_path = os.path.join(tempfile.gettempdir(), f"fbslack-{os.getpid()}.wake")
        self._background: subprocess.Popen[bytes] | None = None
        self._options: dict[str, Any] = {
            "bind": f"{settings.host}:{settings.port}",
            "workers": workers,
            "threads": threads,
            "worker_class": "gthread",
            # FreshBooks gives a webhook about 10 s; nothing we do in a request should take long.
            "timeout": 30,
            "graceful_timeout": 20,
            "keepalive": 5,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": settings.log_level.lower(),
            "proc_name": "fbslack",
            "when_ready": self._start_background,
            "on_exit": self._stop_background,
        }
        super().__init__()

    def _start_background(self, _arbiter: Any) -> None:
        # A separate program (`fbslack worker`), not a forked child: the web workers fork from this
        # master and must not inherit a child process they would try to join on exit.
        self._background = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "connector.cli", "worker", "--wake-path", self._wake_path]
        )

    def _stop_background(self, _arbiter: Any) -> None:
        if self._background is None:
            return
        self._background.terminate()  # SIGTERM: it finishes the post in hand, then stops
        try:
            self._background.wait(30)
        except subprocess.TimeoutExpired:
            self._background.kill()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        # Imported in each worker after the fork, so every process has its own engine and threads.
        from app import create_app

        # Hand the GIL over sooner (default 5 ms): a request thread ready to answer should not wait
        # for another thread's time slice to run out.
        sys.setswitchinterval(0.001)
        from connector.pipeline.wake import WakeSender

        return create_app(self._settings, start_background=False, wake=WakeSender(self._wake_path))
