"""SQLite's one writer is queued across processes by a flock() beside the database file."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from storage.db import Database

DEADLINE_S = 10.0


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'lock.db'}")
    with database.write() as connection:
        connection.execute(text("CREATE TABLE t (n INTEGER)"))
    yield database
    database.dispose()


def lock_path(tmp_path: Path) -> Path:
    return tmp_path / "lock.db.writer-lock"


def held_elsewhere(path: Path) -> bool:
    """Whether another open file description holds the lock (as another process would see it)."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops our lock if we got it
    return False


def test_a_write_holds_the_lock_until_it_commits(sqlite_db: Database, tmp_path: Path) -> None:
    with sqlite_db.write() as connection:
        connection.execute(text("INSERT INTO t VALUES (1)"))
        assert held_elsewhere(lock_path(tmp_path))
    assert not held_elsewhere(lock_path(tmp_path))
    with sqlite_db.session() as session:
        assert held_elsewhere(lock_path(tmp_path))
        session.execute(text("INSERT INTO t VALUES (2)"))
    assert not held_elsewhere(lock_path(tmp_path))


def test_a_nested_acquisition_does_not_release_the_outer_one(sqlite_db: Database, tmp_path: Path) -> None:
    lock = sqlite_db._write_lock
    assert lock is not None
    with lock:
        with lock:
            assert held_elsewhere(lock_path(tmp_path))
        assert held_elsewhere(lock_path(tmp_path)), "the inner exit let go of the outer lock"
    assert not held_elsewhere(lock_path(tmp_path))


def test_a_killed_holder_does_not_block_the_next_writer(sqlite_db: Database, tmp_path: Path) -> None:
    # Another process takes the lock and is SIGKILLed holding it (a web worker killed mid-commit).
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys\n"
            f"fd = os.open({str(lock_path(tmp_path))!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert held_elsewhere(lock_path(tmp_path))
        done = threading.Event()

        def write() -> None:
            with sqlite_db.write() as connection:
                connection.execute(text("INSERT INTO t VALUES (3)"))
            done.set()

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        holder.send_signal(signal.SIGKILL)
        holder.wait(DEADLINE_S)
        assert done.wait(DEADLINE_S), "the writer still waits for a dead process's lock"
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    with sqlite_db.read() as session:
        assert session.execute(text("SELECT n FROM t")).scalars().all() == [3]


def test_an_in_memory_database_needs_no_lock_file(tmp_path: Path) -> None:
    database = Database("sqlite:///:memory:")
    with database.write() as connection:
        connection.execute(text("SELECT 1"))
    database.dispose()
    assert list(tmp_path.iterdir()) == []
