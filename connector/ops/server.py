"""The production server: gunicorn web workers for requests, plus one background process.

Each web worker reads requests on an asyncio loop and runs the app on a thread pool only once a
request is complete (connector.ops.front): a slow client costs a socket, never a thread. Each listens
on its own SO_REUSEPORT socket, so the kernel spreads connections evenly over the workers.

Web workers only acknowledge: verify, store, answer. The background process runs the pipeline
loops, the delivery engine and the scheduled jobs; the web workers wake it through a Unix datagram
socket. Several hosts on one PostgreSQL each run their own pair; the database coordinates them.

Metrics: every process of a run writes its samples to one fresh PROMETHEUS_MULTIPROC_DIR
(prometheus-client's multi-process mode), and /metrics, answered by any web worker, merges them.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any

from gunicorn.app.base import BaseApplication

from connector.domain.settings import Settings

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_metrics_dir() -> str:
    """A fresh, empty PROMETHEUS_MULTIPROC_DIR for this run, set in our environment so the web
    workers (forked) and the background process (spawned) inherit it.

    Fresh per run: files left by an earlier run would add its counts to this one's. It must be set
    before prometheus_client is first imported, which is when the library picks multi-process mode.
    """
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prepare_metrics_dir() must run before prometheus_client is imported")
    path = tempfile.mkdtemp(prefix="fbslack-metrics-")
    os.environ[MULTIPROC_ENV] = path
    return path


def _mark_dead(pid: int, metrics_dir: str) -> None:
    # Imported here: this module is imported before the directory exists (see prepare_metrics_dir).
    from prometheus_client import multiprocess

    # Drops the process's live gauges; its counters stay in the sums, as counters must.
    multiprocess.mark_process_dead(pid, path=metrics_dir)  # type: ignore[no-untyped-call]


class Server(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, *, workers: int, threads: int, metrics_dir: str) -> None:
        self._settings = settings
        self._metrics_dir = metrics_dir
        self._wake_path = os.path.join(tempfile.gettempdir(), f"fbslack-{os.getpid()}.wake")
        self._background: subprocess.Popen[bytes] | None = None
        self._options: dict[str, Any] = {
            "bind": f"{settings.host}:{settings.port}",
            "workers": workers,
            "threads": threads,
            # gthread would give a thread to a connection at its first byte (issue 12, slow clients).
            "worker_class": "connector.ops.front.FrontWorker",
            # gunicorn then binds one SO_REUSEPORT socket in each worker, and none in the master: the
            # kernel spreads connections over the workers (issue 12, section 5).
            "reuse_port": True,
            # FreshBooks gives a webhook about 10 s; nothing we do in a request should take long.
            "timeout": 30,
            "graceful_timeout": 20,
            "keepalive": 5,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": settings.log_level.lower(),
            "proc_name": "fbslack",
            # gunicorn 27's control socket lives at one path per user: a second server on the host
            # would take it over. We do not use it (signals and `fbslack` cover operations).
            "control_socket_disable": True,
            "when_ready": self._start_background,
            "child_exit": self._child_exit,
            "on_exit": self._on_exit,
        }
        super().__init__()

    def _start_background(self, _arbiter: Any) -> None:
        # A separate program (`fbslack worker`), not a forked child: the web workers fork from this
        # master and must not inherit a child process they would try to join on exit.
        self._background = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [
                sys.executable,
                *("-m", "connector.ops.cli", "worker"),
                *("--wake-path", self._wake_path),
                *("--parent-pid", str(os.getpid())),  # it stops if this master dies without telling it
            ]
        )

    def _child_exit(self, _arbiter: Any, worker: Any) -> None:
        _mark_dead(worker.pid, self._metrics_dir)

    def _on_exit(self, _arbiter: Any) -> None:
        self._stop_background()
        shutil.rmtree(self._metrics_dir, ignore_errors=True)

    def _stop_background(self) -> None:
        if self._background is None:
            return
        self._background.terminate()  # SIGTERM: it finishes the post in hand, then stops
        try:
            self._background.wait(30)
        except subprocess.TimeoutExpired:
            self._background.kill()
            self._background.wait()
        _mark_dead(self._background.pid, self._metrics_dir)

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        # Imported in each worker after the fork, so every process has its own engine and threads.
        from app import create_app

        # Hand the GIL over sooner (default 5 ms): a request thread ready to answer should not wait
        # for another thread's time slice to run out.
        sys.setswitchinterval(0.001)
        from connector.ops.web import body_limits, direct_routes
        from connector.pipeline.wake import WakeSender

        # The master announces what is left to configure, once (cmd_serve).
        app = create_app(
            self._settings, start_background=False, wake=WakeSender(self._wake_path), announce_setup=False
        )
        # Read by connector.ops.front.FrontWorker.
        self.body_limit = body_limits(app.url_map)
        self.direct = direct_routes(app.extensions["fbslack"].intake)
        return app
