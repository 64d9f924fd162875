"""Group commit: many requests, one transaction and one commit for whatever piles up.

A commit (an fsync on SQLite, a round trip plus a WAL flush on PostgreSQL) costs far more than the
insert before it. When requests arrive while a commit is in flight, they wait for it anyway; here
they queue their rows instead, and the next commit takes all of them at once.

There is no timer. A thread that submits with `submit` and finds nobody writing becomes the
leader: it writes everything pending (its own row included) in one call, hands every waiter its own
result, and, if more rows arrived meanwhile, passes the lead to the oldest of them. A request alone
therefore commits at once, in its own thread, exactly as it would without the batcher.

`submit_nowait` is for a caller that must not block (the web front's event loop): its item queues
the same way, and its result comes to a callback. When such an item needs a leader, the batcher's
own committing thread takes the lead, and keeps it while the oldest pending item is another
non-blocking one: under a stream of those it is one writer thread, woken once per batch.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

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


# What a non-blocking item's callback gets: its result, or (None, the batch's failure).
Done = Callable[[R | None, CommitFailed | None], None]


def _failed(error: BaseException) -> CommitFailed:
    # Only the kind in the message: a database error's text can list the statement's values.
    failed = CommitFailed(f"batch not committed: {type(error).__name__}")
    failed.__cause__ = error
    return failed


class _Slot(Generic[T, R]):
    """One submitted item and, once its batch is done, its result or the batch's error."""

    __slots__ = ("done", "error", "item", "notify", "ready", "result")

    def __init__(self, item: T, notify: Done[R] | None = None) -> None:
        self.item = item
        # A blocking submitter waits on `ready`, set once: either the slot is done, or (done still
        # False) this thread now leads. A non-blocking one is told through `notify` instead.
        self.notify = notify
        self.ready = threading.Event() if notify is None else None
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
        # The thread that leads for non-blocking submitters; started on first use (after a fork).
        self._committer: ThreadPoolExecutor | None = None

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
            assert slot.ready is not None
            slot.ready.wait()
            if not slot.done:  # handed the lead: our item is now the oldest pending one
                lead = True
        if lead:
            self._lead(slot, committer=False)
        if slot.error is not None:
            raise _failed(slot.error) from slot.error
        return slot.result  # type: ignore[return-value]  # set with done, error None

    def submit_nowait(self, item: T, done: Done[R]) -> None:
        """Queue `item` without blocking; `done(result, None)` or `done(None, CommitFailed)` is
        called once its batch has committed or failed, in the thread that wrote it. `done` must be
        quick and must not raise (an error is logged, and the batch's other items still told)."""
        slot: _Slot[T, R] = _Slot(item, done)
        with self._lock:
            self._pending.append(slot)
            lead = not self._leading
            self._leading = True
        if lead:
            self._committer_pool().submit(self._lead, slot, committer=True)

    def _committer_pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._committer is None:
                self._committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fbslack-commit")
            return self._committer

    def _lead(self, own: _Slot[T, R], *, committer: bool) -> None:
        while True:
            error, following = self._commit(own)
            stopping = error if error is not None and not isinstance(error, Exception) else None
            if following is not None and (stopping is not None or not committer):
                self._committer_pool().submit(self._lead, following, committer=True)
            if stopping is not None:
                raise stopping  # KeyboardInterrupt, SystemExit: not a database outcome, do not wrap
            if following is None or not committer:
                return
            own = following

    def _commit(self, own: _Slot[T, R]) -> tuple[BaseException | None, _Slot[T, R] | None]:
        """Write one batch led by `own` and tell its items; the batch's error, if any, and the
        non-blocking item that leads next, if the lead is not passed to a blocked submitter."""
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
            if slot.notify is not None:
                _tell(slot)
            elif slot is not own:
                assert slot.ready is not None
                slot.ready.set()
        with self._lock:
            if not self._pending:
                self._leading = False
                return error, None
            following = self._pending[0]
            if following.ready is not None:
                following.ready.set()  # a blocked submitter leads next; `_leading` stays True
                return error, None
            return error, following


def _tell(slot: _Slot[T, R]) -> None:
    assert slot.notify is not None
    try:
        if slot.error is None:
            slot.notify(slot.result, None)
        else:
            slot.notify(None, _failed(slot.error))
    except Exception:
        log.exception("a group commit callback failed")
