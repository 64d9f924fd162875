"""A fresh PostgreSQL schema on the test server, dropped afterwards: one empty database per test."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import psycopg

from tests.support.live import PG_DSN


@contextlib.contextmanager
def fresh_schema() -> Iterator[str]:
    """A new, empty schema (its name) on PG_DSN's server, dropped with all in it afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
