"""Logging setup: text or JSON lines. Records carry IDs in `extra={"context": {...}}`, never payloads."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any, TextIO


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = getattr(record, "context", None)
        if isinstance(context, dict):
            entry.update({k: v for k, v in context.items() if v is not None})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = getattr(record, "context", None)
        if isinstance(context, dict):
            pairs = " ".join(f"{k}={v}" for k, v in context.items() if v is not None)
            line = f"{line} {pairs}" if pairs else line
        return line


# Third-party loggers that would print URLs with tokens or bodies at DEBUG stay at WARNING.
# werkzeug and gunicorn.access would log request lines, and webhook URLs carry their token.
NOISY_LOGGERS = (
    "httpx",
    "httpcore",
    "slack_sdk",
    "slack_bolt",
    "urllib3",
    "apscheduler",
    "werkzeug",
    "gunicorn.access",
)


def configure_logging(*, level: str, json_lines: bool, stream: TextIO | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
