"""Identity of this process, for leases that must say who holds them."""

from __future__ import annotations

import os
import socket
import uuid


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
