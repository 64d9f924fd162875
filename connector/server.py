"""The production server: gunicorn with threaded workers, each running its own background loops."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from connector.settings import Settings


class Server(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, *, workers: int, threads: int) -> None:
        self._settings = settings
        self._options = {
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
        }
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        # Imported in each worker after the fork, so every process has its own engine and threads.
        from app import create_app

        return create_app(self._settings)
