"""connector.ops.front served in this process, on an event loop in its own thread (as `fbslack
serve`'s workers run it), for tests that talk to it over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator

from connector.ops.front import Front


@contextlib.contextmanager
def on_loop_thread(served: Front) -> Iterator[int]:
    """Serve `served` on 127.0.0.1 (a free port) until the block ends; the port. Closes `served`."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.setblocking(False)
    loop = asyncio.new_event_loop()
    started = threading.Event()

    async def run() -> None:
        server = await served.serve(sock)
        started.set()
        async with server:
            with contextlib.suppress(asyncio.CancelledError):
                await server.serve_forever()

    thread = threading.Thread(target=lambda: loop.run_until_complete(run()), daemon=True)
    thread.start()
    assert started.wait(5)
    try:
        yield sock.getsockname()[1]
    finally:
        for task in asyncio.all_tasks(loop):
            loop.call_soon_threadsafe(task.cancel)
        thread.join(5)
        served.close()
