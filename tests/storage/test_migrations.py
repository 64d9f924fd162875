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


def test_0002_backfills_existing_events(database_url: str) -> None:
    from sqlalchemy import text

    database = Database(database_url)
    try:
        migrate.upgrade(database.engine, "0001")
        with database.engine.begin() as conn:
            conn.execute(
                text("INSERT INTO workspaces (id, slack_team_id, installed_at) VALUES (1, 'T1', :now)"),
                {"now": "2026-01-01 00:00:00+00:00"},
            )
            conn.execute(
                text(
                    "INSERT INTO freshbooks_connections (id, workspace_id, account_id, webhook_token_hash, "
                    "webhook_token_enc, status, token_version, created_at) "
                    "VALUES (1, 1, 'A1', 'h', 'x', 'active', 0, :now)"
                ),
                {"now": "2026-01-01 00:00:00+00:00"},
            )
            conn.execute(
                text(
                    "INSERT INTO events (id, connection_id, inbox_id, name, object_id, object_updated, "
                    "created_at) VALUES (1, 1, 7, 'payment.create', '5', 'u', :now)"
                ),
                {"now": "2026-01-01 00:00:00+00:00"},
            )
        migrate.upgrade(database.engine)
        with database.engine.connect() as conn:
            row = conn.execute(text("SELECT object_kind, source FROM events WHERE id = 1")).one()
        assert tuple(row) == ("payment", "webhook")
    finally:
        database.dispose()


def test_checkpoint_runs_outside_transactions(db: Database) -> None:
    from sqlalchemy import text

    with db.session() as session:
        session.execute(
            text("INSERT INTO workspaces (slack_team_id, installed_at) VALUES ('T9', '2026-01-01')")
        )
    db.checkpoint()  # must not raise "database table is locked" (nor do anything on PostgreSQL)
    with db.read() as session:
        assert session.execute(text("SELECT count(*) FROM workspaces")).scalar_one() == 1
