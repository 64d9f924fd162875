"""The web processes wake the background process over a Unix datagram socket, by kind."""

from __future__ import annotations

import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.pipeline import wake
from connector.pipeline.wake import WakeListener, WakeSender

DEADLINE_S = 5.0


@pytest.fixture
def socket_path() -> Iterator[str]:
    # Short: a Unix socket path is limited to about 100 bytes, and pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="fbw-") as directory:
        yield str(Path(directory) / "wake")


def test_each_kind_wakes_only_its_loop(socket_path: str) -> None:
    inbox, verification = threading.Event(), threading.Event()
    listener = WakeListener(socket_path, {wake.INBOX: inbox.set, wake.VERIFICATION: verification.set})
    listener.start()
    try:
        sender = WakeSender(socket_path)
        sender.inbox()
        assert inbox.wait(DEADLINE_S)
        assert not verification.is_set()
        inbox.clear()
        sender.verification()
        assert verification.wait(DEADLINE_S)
        assert not inbox.is_set()
    finally:
        listener.stop()


def test_an_unknown_kind_wakes_every_loop(socket_path: str) -> None:
    inbox, verification = threading.Event(), threading.Event()
    listener = WakeListener(socket_path, {wake.INBOX: inbox.set, wake.VERIFICATION: verification.set})
    listener.start()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"w", socket_path)  # what a sender of an earlier version sends
        assert inbox.wait(DEADLINE_S)
        assert verification.wait(DEADLINE_S)
    finally:
        listener.stop()


def test_a_sender_without_a_listener_does_not_raise(socket_path: str) -> None:
    # The background process is restarting: the datagram is lost and its short poll covers it.
    WakeSender(socket_path).inbox()
