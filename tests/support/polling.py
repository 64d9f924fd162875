"""Waiting in tests without guessing a sleep: poll a condition until it holds, up to a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll `condition` every `interval` seconds until it returns something truthy (returned);
    fail after `timeout` seconds, naming `what` was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)  # the polling interval; the deadline above bounds the wait
