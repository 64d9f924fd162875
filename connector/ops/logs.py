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
# alembic narrates every schema check and upgrade at INFO ("Context impl", "Will assume
# transactional DDL", "Running upgrade"); `fbslack db upgrade` says the outcome itself.
NOISY_LOGGERS = (
    "alembic",
    "httpx",
    "httpcore",
    "slack_sdk",
    "slack_bolt",
    "urllib3",
    "apscheduler",
    "werkzeug",
    "gunicorn.access",
)


class DropMessages(logging.Filter):
    """Drops records whose message is one of `messages` (exact text): for a library's warning
    about a choice we made on purpose, so it does not read as a problem in every start-up."""

    def __init__(self, messages: frozenset[str]) -> None:
        super().__init__()
        self.messages = messages

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() not in self.messages


def _bolt_token_warnings() -> frozenset[str]:
    from slack_bolt.logger import messages

    # Bolt reads SLACK_BOT_TOKEN from the environment itself, then warns that it is unused: we give
    # it a ready client (single workspace) or an installation store (many), as meant.
    return frozenset(
        {messages.warning_client_prioritized_and_token_skipped(), messages.warning_token_skipped()}
    )


# Logger name -> the exact messages dropped from it.
QUIET_MESSAGES = {"slack_bolt.App": _bolt_token_warnings}


def configure_logging(*, level: str, json_lines: bool, stream: TextIO | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    for name, messages in QUIET_MESSAGES.items():
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, DropMessages)]:
            logger.removeFilter(old)
        logger.addFilter(DropMessages(messages()))
