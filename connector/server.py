"""The production server: gunicorn (threaded workers) for requests, plus one background process.

Web workers only acknowledge: verify, store, answer. The background process runs the pipeline
loops, the delivery engine and the scheduled jobs; the web workers wake it through a Unix datagram
socket. Several hosts on one PostgreSQL each run their own pair; the database coordinates them.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
from typing import Any

from gunicorn.app.base import BaseApplication

from connector.settings import Settings

log = logging.getLogger(__name__)


def _background_main(settings: Settings, wake_path: str) -> None:
    from app import run_background
    from connector.logs import configure_logging

    configure_logging(level=settings.log_level, json_lines=settings.log_format == "json")
    # Acknowledging webhooks is what FreshBooks times; fetching and posting can wait a moment.
    # A lower CPU priority keeps the background from crowding the web workers on a small machine.
    os.nice(5)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run_background(settings, wake_path, stop)


class Server(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, *, workers: int, threads: int) -> None:
        self._settings = settings
        self._wake_path = os.path.join(tempfile.gettempdir(), f"fbslack-{os.getpid()}.wake")
        self._background: multiprocessing.process.BaseProcess | None = None
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
        context = multiprocessing.get_context("fork")
        self._background = context.Process(
            target=_background_main, args=(self._settings, self._wake_path), name="fbslack-background"
        )
        self._background.start()

    def _stop_background(self, _arbiter: Any) -> None:
        if self._background is None:
            return
        self._background.terminate()  # SIGTERM: it finishes the post in hand, then stops
        self._background.join(30)
        if self._background.is_alive():
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
