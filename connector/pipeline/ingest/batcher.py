"""Group commit: many request threads, one transaction and one commit for whatever piles up.

A commit (an fsync on SQLite, a round trip plus a WAL flush on PostgreSQL) costs far more than the
insert before it. When requests arrive while a commit is in flight, they wait for it anyway; here
they queue their rows instead, and the next commit takes all of them at once.

There is no writer thread and no timer. The first thread to find nobody writing becomes the
leader: it writes everything pending (its own row included) in one call, hands every waiter its own
result, and, if more rows arrived meanwhile, passes the lead to the oldest of them. A request alone
therefore commits at once, in its own thread, exactly as it would without the batcher.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Bounds one transaction (and the statements it holds) when a burst piles up; the rest of the
# burst goes into the next one, led by the oldest waiter.
DEFAULT_MAX_BATCH = 128


class CommitFailed(Exception):
    """The batch holding this item was not committed; nothing of it was stored.

    Raised in every thread of the batch, each with its own instance (`__cause__` is the error the
    write raised), so no two threads share one exception's traceback.
    """


class _Slot(Generic[T, R]):
    """One submitted item and, once its batch is done, its result or the batch's error."""

    __slots__ = ("done", "error", "item", "ready", "result")

    def __init__(self, item: T) -> None:
        self.item = item
        # Set once: either the slot is done, or (done still False) this thread now leads.
        self.ready = threading.Event()
        self.done = False
        self.result: R | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[T, R]):
    """Thread-safe: `submit(item)` returns `write`'s result for that item once it is committed.

    `write(items)` must store all of `items` in one transaction and return one result per item, in
    order, or raise having stored none of them (the transaction rolled back).
    """

    def __init__(
        self, write: Callable[[Sequence[T]], Sequence[R]], *, max_batch: int = DEFAULT_MAX_BATCH
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self._write = write
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._pending: list[_Slot[T, R]] = []
        # True from the moment a thread takes the lead until it finds nothing pending: while it is
        # True, new items only queue. Invariant: False implies `_pending` is empty.
        self._leading = False

    def queued(self) -> int:
        """Items waiting for a commit that has not started yet (the one in flight excluded)."""
        with self._lock:
            return len(self._pending)

    def submit(self, item: T) -> R:
        """Store `item` (with whatever else is pending) and return its result; raise CommitFailed."""
        slot: _Slot[T, R] = _Slot(item)
        with self._lock:
            self._pending.append(slot)
            lead = not self._leading
            self._leading = True
        if not lead:
            slot.ready.wait()
            if not slot.done:  # handed the lead: our item is now the oldest pending one
                lead = True
        if lead:
            self._lead(slot)
        if slot.error is not None:
            # Only the kind in the message: a database error's text can list the statement's values.
            raise CommitFailed(f"batch not committed: {type(slot.error).__name__}") from slot.error
        return slot.result  # type: ignore[return-value]  # set with done, error None

    def _lead(self, own: _Slot[T, R]) -> None:
        with self._lock:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
        assert batch and batch[0] is own, "the leader is always the oldest pending item"
        error: BaseException | None = None
        results: Sequence[R] = ()
        try:
            results = self._write([s.item for s in batch])
            if len(results) != len(batch):
                error = RuntimeError(f"write returned {len(results)} results for {len(batch)} items")
        except BaseException as exc:  # every waiter must be released, whatever happened
            error = exc
        for i, slot in enumerate(batch):
            if error is None:
                slot.result = results[i]
            else:
                slot.error = error
            slot.done = True
            if slot is not own:
                slot.ready.set()
        with self._lock:
            if self._pending:
                self._pending[0].ready.set()  # the lead passes on; `_leading` stays True
            else:
                self._leading = False
        if error is not None and not isinstance(error, Exception):
            raise error  # KeyboardInterrupt, SystemExit: not a database outcome, do not wrap
