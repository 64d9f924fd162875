"""Group commit of webhook rows: a lone request commits at once, requests that pile up during a
commit share the next one and each get their own outcome, and a failed batch stores nothing and
answers every request in it with an error (503 over HTTP), never a 2xx."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import psycopg
import pytest
from sqlalchemy import Connection, func, select, text
from sqlalchemy.exc import DBAPIError

from connector.pipeline.ingest.batcher import CommitFailed, GroupCommit
from storage import inbox
from storage.crypto import Cipher
from storage.db import Database
from storage.models import InboxState, WebhookInbox
from tests.support.live import PG_DSN, FakeClock, Live, add_connection
from tests.support.webhooks import inbox_rows, rejected, signed

T = TypeVar("T")
R = TypeVar("R")

DEADLINE = 10.0


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.001)


class GatedWrite(Generic[T, R]):
    """Wraps a batch write; its first call blocks (a commit in flight) until `release()`."""

    def __init__(self, write: Callable[[Sequence[T]], Sequence[R]]) -> None:
        self._write = write
        self.calls: list[list[T]] = []
        self.first_started = threading.Event()
        self._release = threading.Event()

    def __call__(self, items: Sequence[T]) -> Sequence[R]:
        self.calls.append(list(items))
        if len(self.calls) == 1:
            self.first_started.set()
            assert self._release.wait(DEADLINE), "the test never released the first commit"
        return self._write(items)

    def release(self) -> None:
        self._release.set()


def pile_up(
    batcher: GroupCommit[T, R], gate: GatedWrite[T, R], first: T, rest: Sequence[T]
) -> list[R | Exception]:
    """Submit `first`, hold its commit until all of `rest` have queued behind it, then let go.
    Returns each item's outcome (its result or the exception its thread got), in input order."""
    items = [first, *rest]
    outcomes: list[R | Exception | None] = [None] * len(items)

    def submit(i: int) -> None:
        try:
            outcomes[i] = batcher.submit(items[i])
        except Exception as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(items))]
    threads[0].start()
    assert gate.first_started.wait(DEADLINE)
    for thread in threads[1:]:
        thread.start()
    wait_until(lambda: batcher.queued() == len(rest), "the other items to queue")
    gate.release()
    for thread in threads:
        thread.join(DEADLINE)
        assert not thread.is_alive(), "a submitter was never released"
    return outcomes  # type: ignore[return-value]  # every slot was filled by its thread


def times_ten(items: Sequence[int]) -> list[int | None]:
    # None stands for "the connection was disconnected": an outcome, not an error.
    return [None if i % 3 == 0 else i * 10 for i in items]


# -- the batcher on its own -------------------------------------------------------------------------


def test_a_lone_item_is_written_at_once_in_the_submitting_thread() -> None:
    calls: list[tuple[int, list[int]]] = []

    def write(items: Sequence[int]) -> list[int | None]:
        calls.append((threading.get_ident(), list(items)))
        return times_ten(items)

    batcher: GroupCommit[int, int | None] = GroupCommit(write)
    assert batcher.submit(4) == 40
    # No writer thread, no timer: the write ran before submit returned, in this very thread.
    assert calls == [(threading.get_ident(), [4])]
    assert batcher.submit(3) is None  # the lead was given back: the next lone item commits too
    assert calls[1] == (threading.get_ident(), [3])
    assert batcher.queued() == 0


def test_items_piling_up_during_a_commit_share_the_next_one_each_with_its_own_result() -> None:
    gate = GatedWrite(times_ten)
    batcher: GroupCommit[int, int | None] = GroupCommit(gate)
    outcomes = pile_up(batcher, gate, 1, list(range(2, 18)))
    assert outcomes == times_ten(list(range(1, 18)))
    assert gate.calls[0] == [1]
    assert len(gate.calls) == 2, "everything that piled up went into one commit"
    assert sorted(gate.calls[1]) == list(range(2, 18))


def test_a_burst_larger_than_max_batch_is_split_and_every_item_answered() -> None:
    gate = GatedWrite(times_ten)
    batcher: GroupCommit[int, int | None] = GroupCommit(gate, max_batch=4)
    outcomes = pile_up(batcher, gate, 1, list(range(2, 12)))
    assert outcomes == times_ten(list(range(1, 12)))
    assert [len(c) for c in gate.calls] == [1, 4, 4, 2]
    assert batcher.queued() == 0
    assert batcher.submit(5) == 50  # nobody is left holding the lead


def test_a_failed_write_fails_every_item_of_its_batch_and_the_next_batch_still_commits() -> None:
    broken = RuntimeError("database is locked")

    def write(items: Sequence[int]) -> list[int | None]:
        if 2 in items:
            raise broken
        return times_ten(items)

    gate = GatedWrite(write)
    batcher: GroupCommit[int, int | None] = GroupCommit(gate)
    outcomes = pile_up(batcher, gate, 1, [2, 4, 5, 7])
    assert outcomes[0] == 10  # the first commit was fine
    failures = outcomes[1:]
    assert all(isinstance(f, CommitFailed) and f.__cause__ is broken for f in failures)
    assert len({id(f) for f in failures}) == len(failures), "each thread raises its own exception"
    assert batcher.submit(8) == 80


def test_a_write_returning_the_wrong_number_of_results_is_a_failure_not_a_guess() -> None:
    batcher: GroupCommit[int, int] = GroupCommit(lambda items: [1])
    assert batcher.submit(1) == 1
    gate: GatedWrite[int, int] = GatedWrite(lambda items: [1])
    batcher = GroupCommit(gate)
    outcomes = pile_up(batcher, gate, 1, [2, 3])
    assert outcomes[0] == 1
    assert all(isinstance(o, CommitFailed) for o in outcomes[1:])
    failure = outcomes[1]
    assert isinstance(failure, CommitFailed) and str(failure) == "batch not committed: RuntimeError"
    assert "2 items" in str(failure.__cause__)


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch must be at least 1, not 0"):
        GroupCommit(times_ten, max_batch=0)


class Told:
    """Collects what `submit_nowait` callbacks are told, with the thread that told them."""

    def __init__(self) -> None:
        self.outcomes: dict[int, tuple[object, CommitFailed | None, str]] = {}
        self._lock = threading.Lock()

    def callback(self, item: int) -> Callable[[object, CommitFailed | None], None]:
        def done(result: object, failed: CommitFailed | None) -> None:
            with self._lock:
                self.outcomes[item] = (result, failed, threading.current_thread().name)

        return done

    def wait_for(self, count: int) -> None:
        wait_until(lambda: len(self.outcomes) >= count, f"{count} callbacks")


def test_items_submitted_without_blocking_are_committed_by_the_committer_and_told() -> None:
    gate = GatedWrite(times_ten)
    batcher: GroupCommit[int, int | None] = GroupCommit(gate)
    told = Told()
    batcher.submit_nowait(1, told.callback(1))  # returns at once; the commit thread leads
    assert gate.first_started.wait(DEADLINE)
    for item in range(2, 12):
        batcher.submit_nowait(item, told.callback(item))
    assert batcher.queued() == 10
    gate.release()
    told.wait_for(11)
    assert {item: result for item, (result, _, _) in told.outcomes.items()} == dict(
        zip(range(1, 12), times_ten(list(range(1, 12))), strict=True)
    )
    assert all(failed is None for _, failed, _ in told.outcomes.values())
    assert {thread for _, _, thread in told.outcomes.values()} == {"fbslack-commit_0"}
    assert [sorted(c) for c in gate.calls] == [[1], list(range(2, 12))], "what piled up went together"
    assert batcher.submit(5) == 50  # a blocking submitter gets the lead back (or is handed it)


def test_a_failed_batch_tells_each_non_blocking_item_its_own_failure() -> None:
    broken = RuntimeError("database is locked")

    def write(items: Sequence[int]) -> list[int | None]:
        if 2 in items:
            raise broken
        return times_ten(items)

    gate = GatedWrite(write)
    batcher: GroupCommit[int, int | None] = GroupCommit(gate)
    told = Told()
    batcher.submit_nowait(1, told.callback(1))
    assert gate.first_started.wait(DEADLINE)
    for item in (2, 4):
        batcher.submit_nowait(item, told.callback(item))
    gate.release()
    told.wait_for(3)
    assert told.outcomes[1][:2] == (10, None)
    failures = [told.outcomes[i][1] for i in (2, 4)]
    assert all(isinstance(f, CommitFailed) and f.__cause__ is broken for f in failures)
    assert failures[0] is not failures[1]
    assert all(told.outcomes[i][0] is None for i in (2, 4))


def test_blocking_and_non_blocking_items_pass_the_lead_to_each_other() -> None:
    gate = GatedWrite(times_ten)
    batcher: GroupCommit[int, int | None] = GroupCommit(gate, max_batch=2)
    told = Told()
    # A blocked submitter leads; non-blocking items and another blocking one queue behind it.
    results: dict[int, int | None] = {}
    first = threading.Thread(target=lambda: results.update({1: batcher.submit(1)}))
    first.start()
    assert gate.first_started.wait(DEADLINE)
    batcher.submit_nowait(2, told.callback(2))
    batcher.submit_nowait(4, told.callback(4))
    later = threading.Thread(target=lambda: results.update({5: batcher.submit(5)}))
    later.start()
    wait_until(lambda: batcher.queued() == 3, "the others to queue")
    gate.release()
    first.join(DEADLINE)
    later.join(DEADLINE)
    told.wait_for(2)
    # [2, 4] were led by the commit thread (the oldest was non-blocking), [5] by its own thread.
    assert results == {1: 10, 5: 50}
    assert {i: o[0] for i, o in told.outcomes.items()} == {2: 20, 4: 40}
    assert gate.calls == [[1], [2, 4], [5]]
    assert batcher.queued() == 0
    assert batcher.submit(7) == 70


def test_a_callback_that_raises_does_not_stop_the_others_of_its_batch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = GatedWrite(times_ten)
    batcher: GroupCommit[int, int | None] = GroupCommit(gate)
    told = Told()

    def broken(_result: object, _failed: CommitFailed | None) -> None:
        raise ValueError("the caller's bug")

    batcher.submit_nowait(1, told.callback(1))
    assert gate.first_started.wait(DEADLINE)
    batcher.submit_nowait(2, broken)
    batcher.submit_nowait(4, told.callback(4))
    gate.release()
    told.wait_for(2)
    assert told.outcomes[4][0] == 40
    wait_until(lambda: "a group commit callback failed" in caplog.text, "the callback's error to be logged")


# -- with the real inbox insert, on both databases --------------------------------------------------


def _row(
    cipher: Cipher, connection_id: int, object_id: str, now: dt.datetime, digest: str | None = None
) -> inbox.NewWebhook:
    return inbox.prepare_webhook(
        cipher,
        connection_id=connection_id,
        event_name="invoice.create",
        object_id=object_id,
        raw_body=f"name=invoice.create&object_id={object_id}".encode(),
        state=InboxState.PENDING,
        now=now,
        digest=digest,
    )


Stored = int | inbox.NotStored


def _inbox_batcher(
    db: Database,
) -> tuple[GatedWrite[inbox.NewWebhook, Stored], GroupCommit[inbox.NewWebhook, Stored]]:
    def write(rows: Sequence[inbox.NewWebhook]) -> list[Stored]:
        return inbox.store_webhooks(db, rows)

    gate = GatedWrite(write)
    return gate, GroupCommit(gate)


def _stored(db: Database) -> dict[int, str]:
    with db.read() as session:
        return {
            row.id: row.object_id for row in session.execute(select(WebhookInbox.id, WebhookInbox.object_id))
        }


def test_one_commit_stores_a_pile_and_answers_each_row_with_its_own_id(
    db: Database, cipher: Cipher, clock: FakeClock
) -> None:
    live_id = add_connection(db, cipher, "LIVE1")
    other_id = add_connection(db, cipher, "LIVE2")
    gone_id = add_connection(db, cipher, "GONE1", disconnected=True)
    gate, batcher = _inbox_batcher(db)

    def connection_of(n: int) -> int:
        return gone_id if n % 4 == 0 else other_id if n % 3 == 0 else live_id

    rows = [_row(cipher, connection_of(n), str(n), clock()) for n in range(1, 13)]
    outcomes = pile_up(batcher, gate, rows[0], rows[1:])
    assert [len(c) for c in gate.calls] == [1, 11]
    stored = _stored(db)
    for n, outcome in enumerate(outcomes, start=1):
        if n % 4 == 0:
            assert outcome is inbox.NotStored.DISCONNECTED, "a disconnected connection's webhook is refused"
        else:
            assert isinstance(outcome, int) and stored[outcome] == str(n), "each row gets its own id"
    assert sorted(stored.values(), key=int) == [str(n) for n in range(1, 13) if n % 4]


def test_the_same_body_twice_in_one_batch_or_the_next_is_stored_once(
    db: Database, cipher: Cipher, clock: FakeClock
) -> None:
    one = add_connection(db, cipher, "LIVE1")
    two = add_connection(db, cipher, "LIVE2")
    gone = add_connection(db, cipher, "GONE1", disconnected=True)
    gate, batcher = _inbox_batcher(db)
    # Same digest for `two`: another connection's identical body is not a repeat of `one`'s.
    pile = [
        _row(cipher, one, "1", clock(), digest="d1"),
        _row(cipher, one, "1", clock(), digest="d1"),
        _row(cipher, two, "1", clock(), digest="d1"),
        _row(cipher, one, "2", clock(), digest="d2"),
        _row(cipher, gone, "1", clock(), digest="d1"),
        _row(cipher, one, "1", clock(), digest="d1"),
        _row(cipher, one, "3", clock()),  # no digest: never taken for a repeat
        _row(cipher, one, "3", clock()),
    ]
    outcomes = pile_up(batcher, gate, pile[0], pile[1:])
    assert [len(c) for c in gate.calls] == [1, 7]
    repeated, disconnected = inbox.NotStored.REPEATED, inbox.NotStored.DISCONNECTED
    assert [o if isinstance(o, inbox.NotStored) else "id" for o in outcomes] == [
        "id",
        repeated,
        "id",
        "id",
        disconnected,
        repeated,
        "id",
        "id",
    ]
    stored = _stored(db)
    assert len(stored) == 5 and all(stored[o] for o in outcomes if isinstance(o, int))

    # Later, in a batch of its own: a repeat until the window has passed, from the injected clock.
    clock.advance(seconds=inbox.REPEAT_WINDOW.total_seconds() - 1)
    assert inbox.store_webhooks(db, [_row(cipher, one, "1", clock(), digest="d1")]) == [repeated]
    clock.advance(seconds=2)
    (again,) = inbox.store_webhooks(db, [_row(cipher, one, "1", clock(), digest="d1")])
    assert isinstance(again, int) and again not in outcomes
    assert inbox.store_webhooks(db, [_row(cipher, one, "1", clock(), digest="d1")]) == [repeated]


def test_a_database_error_mid_batch_fails_every_waiter_and_stores_none_of_the_batch(
    db: Database, cipher: Cipher, clock: FakeClock
) -> None:
    live_id = add_connection(db, cipher, "LIVE1")
    gate, batcher = _inbox_batcher(db)
    good = [_row(cipher, live_id, str(n), clock()) for n in range(1, 6)]
    # NOT NULL violation on both databases, after two rows of the batch were already inserted.
    poison = inbox.NewWebhook({**good[0].params, "body_enc": None, "object_id": "poison"})
    outcomes = pile_up(batcher, gate, good[0], [good[1], good[2], poison, good[3]])
    assert isinstance(outcomes[0], int)
    assert all(isinstance(o, CommitFailed) for o in outcomes[1:])
    assert list(_stored(db).values()) == ["1"], "the failed batch was rolled back whole"
    assert isinstance(batcher.submit(good[4]), int)  # and the next webhook is stored again
    assert sorted(_stored(db).values()) == ["1", "5"]


# -- over HTTP: a webhook that could not be stored is never acknowledged ----------------------------


def test_a_webhook_that_cannot_be_committed_gets_503_and_its_retry_is_stored(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    new = live.connect_and_register("invoice.create")
    body, signature = signed(live, "invoice.create", "41")
    assert live.post_webhook(new.webhook_token, body, signature=signature).status_code == 200

    before = rejected("unavailable")
    with live.services.db.engine.begin() as conn:  # the insert now fails inside the database
        conn.execute(text("ALTER TABLE webhook_inbox RENAME TO webhook_inbox_away"))
    try:
        body, signature = signed(live, "invoice.create", "42")
        response = live.post_webhook(new.webhook_token, body, signature=signature)
    finally:
        with live.services.db.engine.begin() as conn:
            conn.execute(text("ALTER TABLE webhook_inbox_away RENAME TO webhook_inbox"))
    assert response.status_code == 503
    assert response.text == "could not store the webhook; try again\n"
    assert rejected("unavailable") == before + 1
    assert [r.object_id for r in inbox_rows(live)] == ["41"]
    (failure,) = [r.getMessage() for r in caplog.records if "not stored, rolled back" in r.getMessage()]
    assert "webhook_inbox" in failure  # the driver's reason, for the operator ...
    assert "INSERT" not in failure and "parameters" not in failure  # ... but not the statement's values

    # FreshBooks retries a webhook it got no 2xx for; the retry is stored.
    assert live.post_webhook(new.webhook_token, body, signature=signature).status_code == 200
    assert [r.object_id for r in inbox_rows(live)] == ["41", "42"]


def test_concurrent_webhooks_over_http_each_get_their_own_row(live: Live) -> None:
    new = live.connect_and_register("invoice.create")
    signed_bodies = [signed(live, "invoice.create", str(n)) for n in range(1, 25)]
    statuses: list[int] = []

    def post(body: str, signature: str) -> None:
        statuses.append(live.post_webhook(new.webhook_token, body, signature=signature).status_code)

    threads = [threading.Thread(target=post, args=pair) for pair in signed_bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE)
        assert not thread.is_alive()
    assert statuses == [200] * 24
    with live.services.db.read() as session:
        assert session.scalar(select(func.count()).select_from(WebhookInbox)) == 24
    assert sorted(int(r.object_id) for r in inbox_rows(live)) == list(range(1, 25))


def _backend_pid(connection: Connection) -> int:
    return int(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_dead_pooled_connection_is_replaced_and_the_batch_stored_once(
    db: Database, cipher: Cipher, clock: FakeClock
) -> None:
    live_id = add_connection(db, cipher, "LIVE1")
    assert isinstance(inbox.store_webhooks(db, [_row(cipher, live_id, "1", clock())])[0], int)
    # The server ends the pooled connection (a restart, a proxy timeout): no pre-ping will notice.
    pid = db.autocommit(_backend_pid)
    with psycopg.connect(PG_DSN, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
    stored = inbox.store_webhooks(db, [_row(cipher, live_id, "2", clock())])
    assert isinstance(stored[0], int)
    assert sorted(_stored(db).values()) == ["1", "2"]
    assert db.autocommit(_backend_pid) != pid, "the dead connection was replaced"


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_an_error_that_is_not_a_lost_connection_is_not_retried(
    db: Database, cipher: Cipher, clock: FakeClock
) -> None:
    live_id = add_connection(db, cipher, "LIVE1")
    calls: list[int] = []

    def failing(connection: Connection) -> None:
        calls.append(1)
        connection.exec_driver_sql("SELECT 1/0")

    with pytest.raises(DBAPIError):
        db.autocommit(failing)
    assert len(calls) == 1
    assert isinstance(inbox.store_webhooks(db, [_row(cipher, live_id, "3", clock())])[0], int)
