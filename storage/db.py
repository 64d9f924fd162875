"""The one engine and session factory per process."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

READ_ONLY = "fbslack_read_only"
T = TypeVar("T")


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from pysqlite so we can BEGIN IMMEDIATE below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Checkpoints (copying the WAL into the database file, with an fsync) are left to the
        # background process (Database.checkpoint), so a web request committing a webhook never
        # pays for one; the large threshold is only a safety net if that process is not running.
        cursor.execute("PRAGMA wal_autocheckpoint=20000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get(READ_ONLY):
            # Readers never block anyone in WAL mode: no write lock for them.
            connection.exec_driver_sql("BEGIN DEFERRED")
            return
        # A deferred transaction that reads and then writes can fail at once with "database is
        # locked" when another process wrote in between (the busy handler is skipped for lock
        # upgrades). Taking the write lock up front makes writers queue politely instead.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


class WriterLock:
    """SQLite's one writer, queued fairly: in-process threads on an RLock, processes on an
    exclusive flock() of a file beside the database.

    Without it, a writer that finds the database locked polls in SQLite's busy handler, whose
    sleeps grow to 100 ms: under load, a webhook's commit could wait hundreds of milliseconds
    behind another process's. flock() blocks in the kernel (the GIL released) and wakes the next
    waiter as soon as the holder lets go. Re-entrant within a thread; the flock is taken by the
    outermost acquisition only (a nested one must not release it early).
    """

    def __init__(self, path: str | None) -> None:
        self._path = path  # None: an in-memory database, one process only
        self._lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None
        self._pid = 0

    def __enter__(self) -> None:
        self._lock.acquire()
        try:
            if self._depth == 0 and self._path is not None:
                fcntl.flock(self._file(), fcntl.LOCK_EX)
        except BaseException:
            self._lock.release()
            raise
        self._depth += 1

    def __exit__(self, *_exc: object) -> None:
        self._depth -= 1
        try:
            if self._depth == 0 and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._lock.release()

    def _file(self) -> int:
        # Opened per process: a descriptor inherited through fork() would share the lock with the
        # parent (flock belongs to the open file description).
        if self._fd is None or self._pid != os.getpid():
            assert self._path is not None
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._pid = os.getpid()
        return self._fd


def upsert_insert(session: Session, model: Any) -> Any:
    """`INSERT` with `on_conflict_do_nothing()` for the session's dialect (SQLite or PostgreSQL)."""
    if session.get_bind().dialect.name == "postgresql":
        return pg_insert(model)
    return sqlite_insert(model)


class Database:
    """Engine plus session factory; `session()` is a unit of work that commits or rolls back."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {"future": True}
        if self.dialect == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 10}
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
        self.url = url
        self.engine = create_engine(url, **kwargs)
        if self.dialect == "sqlite":
            _configure_sqlite(self.engine)
        # For `autocommit()`: its own small pool, in autocommit mode and without the pre-ping
        # (a round trip per checkout, as dear as the one statement it guards); `autocommit()`
        # retries on a fresh connection instead when a pooled one turns out to be dead.
        self._autocommit_engine: Engine | None = None
        if self.dialect != "sqlite":
            # Small: its one caller (the intake's group commit) runs one statement at a time.
            self._autocommit_engine = create_engine(
                url, future=True, pool_size=1, max_overflow=3, isolation_level="AUTOCOMMIT"
            )
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(
            self.engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False
        )
        # SQLite allows one writer: threads and processes queue for it here, in order, instead of
        # polling in SQLite's busy handler (whose sleeps grow to 100 ms and starve unlucky waiters).
        self._write_lock: WriterLock | None = None
        if self.dialect == "sqlite":
            on_disk = bool(parsed.database) and parsed.database != ":memory:"
            self._write_lock = WriterLock(f"{parsed.database}.writer-lock" if on_disk else None)

    @property
    def supports_skip_locked(self) -> bool:
        return self.dialect == "postgresql"

    @contextmanager
    def session(self) -> Iterator[Session]:
        if self._write_lock is None:
            with self._sessions.begin() as session:
                yield session
            return
        with self._write_lock, self._sessions.begin() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A Core connection in one write transaction that commits or rolls back, for a hot path
        where an ORM Session's bookkeeping would cost more than the statements (webhook intake).
        On SQLite it queues on the same in-process write lock as `session()`."""
        if self._write_lock is None:
            with self.engine.begin() as connection:
                yield connection
            return
        with self._write_lock, self.engine.begin() as connection:
            yield connection

    @contextmanager
    def write_sqlite(self) -> Iterator[sqlite3.Connection]:
        """SQLite: the driver's own connection in one BEGIN IMMEDIATE transaction, committed on a
        normal exit and rolled back on an error, under the same write lock as `session()`.

        For the webhook intake's group commit only: a handful of fixed statements per batch, where
        SQLAlchemy's execution machinery (bind processing, result objects, events) cost several
        times what SQLite itself spends on them. Values must already be in their stored form.
        """
        if self._write_lock is None:
            raise RuntimeError("write_sqlite() is for SQLite")
        with self._write_lock:
            pooled = self.engine.raw_connection()
            try:
                raw = pooled.driver_connection
                assert isinstance(raw, sqlite3.Connection)
                raw.execute("BEGIN IMMEDIATE")
                try:
                    yield raw
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        raw.execute("ROLLBACK")
                    raise
                try:
                    raw.execute("COMMIT")
                except BaseException:
                    # A failed COMMIT can leave the transaction open: end it before the connection
                    # goes back to the pool.
                    with contextlib.suppress(sqlite3.Error):
                        raw.execute("ROLLBACK")
                    raise
            finally:
                pooled.close()

    def autocommit(self, statement: Callable[[Connection], T]) -> T:
        """Run `statement` (ONE SQL statement, which the database makes atomic by itself) on a
        connection in autocommit mode: no BEGIN and COMMIT round trips, and no pre-ping.

        A pooled connection found dead (the server restarted, a proxy dropped it) is discarded
        and the statement runs once more on a fresh one, so a database restart stays invisible.
        The statement must tolerate that second run: the first may have committed just before
        the connection died. PostgreSQL only (on SQLite writes queue on the write lock, `write`).
        """
        if self._autocommit_engine is None:
            raise RuntimeError("autocommit() is for PostgreSQL; SQLite writes go through write()")
        try:
            with self._autocommit_engine.connect() as connection:
                return statement(connection)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        # SQLAlchemy has invalidated the pool's older connections too: this one is new.
        with self._autocommit_engine.connect() as connection:
            return statement(connection)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only unit of work: on SQLite it takes no write lock and waits for no writer."""
        with self._read_sessions() as session:  # closing rolls back: nothing is ever committed
            yield session

    def checkpoint(self) -> None:
        """SQLite: move the WAL into the database file without blocking writers (PASSIVE)."""
        if self.dialect != "sqlite":
            return
        # On the raw connection, outside any transaction: a checkpoint cannot run inside one (and
        # our sessions open theirs with BEGIN IMMEDIATE).
        raw = self.engine.raw_connection()
        try:
            raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")  # type: ignore[union-attr]
        finally:
            raw.close()

    def ping(self) -> None:
        """Raise if the database cannot answer a trivial query."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()
        if self._autocommit_engine is not None:
            self._autocommit_engine.dispose()
