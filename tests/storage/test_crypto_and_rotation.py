"""Encryption at rest and `fbslack keys rotate`, on both databases."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from storage import connections, inbox
from storage.crypto import Cipher, DecryptionError, development_key
from storage.db import Database
from storage.models import FreshBooksConnection, InboxState, WebhookInbox, encrypted_columns
from storage.rotation import rotate_keys
from tests.support.live import FakeClock


def key() -> str:
    return Fernet.generate_key().decode()


def test_round_trip_and_key_order() -> None:
    old, new = key(), key()
    before = Cipher([old]).encrypt("xoxb-secret")
    both = Cipher([new, old])
    assert both.decrypt(before) == "xoxb-secret"
    assert not both.is_current(before)
    after = both.rotate(before)
    assert both.is_current(after)
    assert Cipher([new]).decrypt(after) == "xoxb-secret"
    with pytest.raises(DecryptionError):
        Cipher([new]).decrypt(before)
    assert Cipher([new]).decrypt_json(Cipher([new]).encrypt_json({"a": [1, "é"]})) == {"a": [1, "é"]}


def test_development_key_is_made_once_and_private(tmp_path: Path) -> None:
    first = development_key(tmp_path / "data")
    assert development_key(tmp_path / "data") == first
    mode = stat.S_IMODE(os.stat(tmp_path / "data" / "encryption.key").st_mode)
    assert mode == 0o600
    Fernet(first)  # a valid key


def test_every_secret_column_is_registered() -> None:
    registered = {f"{model.__tablename__}.{attr}" for model, attr in encrypted_columns()}
    assert {
        "freshbooks_connections.access_token_enc",
        "freshbooks_connections.refresh_token_enc",
        "freshbooks_connections.webhook_token_enc",
        "freshbooks_connections.business_name_enc",
        "freshbooks_callbacks.verifier_enc",
        "callback_verifications.verifier_enc",
        "webhook_inbox.body_enc",
        "events.object_enc",
        "deliveries.message_enc",
        "routing_rules.counterparty_enc",
        "audit_log.detail_enc",
        "object_states.snapshot_enc",
        "oauth_states.grant_enc",
        "app_secrets.value_enc",
        "simulated_objects.payload_enc",
        # slack_sdk's column names (storage.installations encrypts them before the store writes them)
        "slack_installations.bot_token",
        "slack_installations.bot_refresh_token",
        "slack_installations.user_token",
        "slack_installations.user_refresh_token",
        "slack_installations.incoming_webhook_url",
        "slack_bots.bot_token",
        "slack_bots.bot_refresh_token",
    } == registered


def _seed(db: Database, cipher: Cipher, clock: FakeClock, n: int) -> int:
    with db.session() as session:
        workspace = connections.ensure_workspace(session, team_id="T1", now=clock())
        new = connections.create_connection(
            session,
            cipher,
            workspace_id=workspace.id,
            account_id="ACM123",
            business_id=1,
            business_name="Acme",
            access_token="fb-access",
            refresh_token="fb-refresh",
            token_expires_at=None,
            now=clock(),
        )
        for i in range(n):
            inbox.add_webhook(
                session,
                cipher,
                connection_id=new.connection.id,
                event_name="invoice.create",
                object_id=str(i),
                raw_body=f"name=invoice.create&object_id={i}".encode(),
                state=InboxState.PENDING,
                now=clock(),
            )
        return new.connection.id


def _all_ciphertexts(db: Database) -> list[str]:
    values: list[str] = []
    with db.session() as session:
        for model, attr in encrypted_columns():
            values += [v for v in session.scalars(select(getattr(model, attr))) if v is not None]
    return values


def test_rotation_round_trip(db: Database, clock: FakeClock) -> None:
    old, new = key(), key()
    connection_id = _seed(db, Cipher([old]), clock, 25)
    rotating = Cipher([new, old])

    report = rotate_keys(db, rotating, batch_size=7)

    assert report.rotated == 4 + 25  # four connection secrets + every inbox body
    only_new = Cipher([new])
    assert all(only_new.is_current(v) for v in _all_ciphertexts(db))
    with db.session() as session:
        assert connections.token_snapshot(session, only_new, connection_id).access_token == "fb-access"
        bodies = session.scalars(select(WebhookInbox.body_enc).order_by(WebhookInbox.id)).all()
    assert only_new.decrypt(bodies[3]) == "name=invoice.create&object_id=3"
    # Running it again finds nothing left to do.
    again = rotate_keys(db, rotating, batch_size=7)
    assert (again.rotated, again.skipped_current) == (0, 29)


def test_rotation_can_be_interrupted_and_resumed(db: Database, clock: FakeClock) -> None:
    old, new = key(), key()
    _seed(db, Cipher([old]), clock, 30)
    rotating = Cipher([new, old])

    class Interrupted(Exception):
        pass

    def stop_after_first_inbox_batch(column: str, _scanned: int, _rotated: int) -> None:
        if column == "webhook_inbox.body_enc":
            raise Interrupted

    with pytest.raises(Interrupted):
        rotate_keys(db, rotating, batch_size=10, progress=stop_after_first_inbox_batch)
    current = [rotating.is_current(v) for v in _all_ciphertexts(db)]
    assert 0 < sum(current) < len(current)  # part done, committed batch by batch

    report = rotate_keys(db, rotating, batch_size=10)
    assert report.rotated == len(current) - sum(current)
    assert all(Cipher([new]).is_current(v) for v in _all_ciphertexts(db))


def test_rotation_never_overwrites_a_value_changed_meanwhile(db: Database, clock: FakeClock) -> None:
    if db.dialect == "sqlite":
        pytest.skip("SQLite serialises writers (BEGIN IMMEDIATE): the app cannot write mid-batch")
    old, new = key(), key()
    connection_id = _seed(db, Cipher([old]), clock, 0)

    class AppWritesMeanwhile(Cipher):
        """Between the rotator's read and its write, the app stores a freshly refreshed token."""

        def rotate(self, token: str) -> str:
            with db.session() as session:
                row = session.get_one(FreshBooksConnection, connection_id)
                if row.access_token_enc == token:
                    row.access_token_enc = self.encrypt("fb-access-NEW")
            return super().rotate(token)

    report = rotate_keys(db, AppWritesMeanwhile([new, old]))

    assert report.changed_meanwhile == 1
    with db.session() as session:
        assert (
            connections.token_snapshot(session, Cipher([new]), connection_id).access_token == "fb-access-NEW"
        )


def test_cli_rotate(database_url: str, db: Database, clock: FakeClock, tmp_path: Path) -> None:
    old, new = key(), key()
    _seed(db, Cipher([old]), clock, 3)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "ENCRYPTION_KEYS": f"{new},{old}",
        "DATA_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "connector.ops.cli", "keys", "rotate", "--batch-size", "2"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "re-encrypted 7 values" in done.stdout
    assert "webhook_inbox.body_enc" in done.stderr  # progress
    assert new not in done.stdout + done.stderr
    assert all(Cipher([new]).is_current(v) for v in _all_ciphertexts(db))
