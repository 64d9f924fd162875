"""`fbslack demo` as a real process: started as a user starts it, read through its HTTP routes."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")
ADDRESS = re.compile(r"open (http://127\.0\.0\.1:\d+/demo/)")
START_SECONDS = 60  # a fresh schema and the app's start, on a machine whose cores are busy


def demo_environment(data_dir: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without any app setting, with DATA_DIR and `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "FRESHBOOKS_"))}
    for name in ("DATABASE_URL", "ENCRYPTION_KEYS", "PUBLIC_URL", "DATA_DIR", "PORT", "HOST"):
        env.pop(name, None)
    env.update(DATA_DIR=str(data_dir), **extra)
    return env


def fbslack(*args: str) -> list[str]:
    return [sys.executable, "-m", "connector.ops.cli", *args]


def run_fbslack(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`fbslack *args` run to its end (a minute at most), its output captured as text."""
    return subprocess.run(
        fbslack(*args), env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


@dataclass
class DemoProcess:
    page_url: str
    process: subprocess.Popen[str]
    stderr: list[str]

    @property
    def base(self) -> str:
        return self.page_url.removesuffix("/demo/")

    def fire(self, action: str) -> dict[str, Any]:
        answer = httpx.post(f"{self.base}/demo/api/fire/{action}", json={}, timeout=60)
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    def command(self, text: str) -> str:
        answer = httpx.post(f"{self.base}/demo/api/command", json={"text": text}, timeout=30)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["command_id"])

    def slack(self) -> dict[str, Any]:
        """The stand-in's state: channels (messages with their thread replies), home, ephemerals."""
        state: dict[str, Any] = httpx.get(f"{self.base}/demo/api/slack", timeout=30).json()
        return state

    def channel(self, name: str) -> list[dict[str, Any]]:
        return next(c["messages"] for c in self.slack()["channels"] if c["name"] == name)


def _pump(stream: Any, lines: queue.Queue[str], kept: list[str] | None = None) -> None:
    for line in stream:
        lines.put(line)
        if kept is not None:
            kept.append(line)


@contextlib.contextmanager
def running_demo(env: Mapping[str, str], *, cwd: Path) -> Iterator[DemoProcess]:
    """`fbslack demo --port 0` until the `with` ends (SIGTERM, then SIGKILL after 20 s)."""
    process = subprocess.Popen(
        fbslack("demo", "--port", "0"),
        env=dict(env),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out: queue.Queue[str] = queue.Queue()
    err_lines: list[str] = []
    threading.Thread(target=_pump, args=(process.stdout, out), daemon=True).start()
    threading.Thread(target=_pump, args=(process.stderr, queue.Queue(), err_lines), daemon=True).start()
    try:
        deadline = time.monotonic() + START_SECONDS
        page_url = None
        while page_url is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or process.poll() is not None:
                raise AssertionError(f"fbslack demo printed no address: {''.join(err_lines)[-3000:]}")
            with contextlib.suppress(queue.Empty):
                match = ADDRESS.search(out.get(timeout=min(remaining, 1.0)))
                page_url = match.group(1) if match else None
        yield DemoProcess(page_url=page_url, process=process, stderr=err_lines)
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
