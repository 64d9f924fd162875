"""The Alembic history builds exactly the schema the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from storage import migrate
from storage.db import Database
from storage.models import Base


def test_upgrade_matches_the_models(db: Database) -> None:
    assert migrate.is_up_to_date(db.engine)
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []


def test_downgrade_to_nothing_and_back(db: Database) -> None:
    migrate.downgrade(db.engine, "base")
    tables = set(inspect(db.engine).get_table_names()) - {"alembic_version"}
    assert tables == set()
    assert migrate.current_revision(db.engine) is None
    migrate.upgrade(db.engine)
    assert migrate.is_up_to_date(db.engine)
    assert "webhook_inbox" in inspect(db.engine).get_table_names()


def test_fresh_database_is_not_up_to_date(database_url: str) -> None:
    fresh = Database(database_url)
    try:
        assert migrate.current_revision(fresh.engine) is None
        assert not migrate.is_up_to_date(fresh.engine)
    finally:
        fresh.dispose()
