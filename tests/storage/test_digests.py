"""Digest schedules and runs in storage, on SQLite and PostgreSQL: the run's unique key, its lease,
the once-only notices, and every query scoped to its workspace."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from storage import connections, digests
from storage.crypto import Cipher
from storage.db import Database
from storage.models import DigestRun, DigestRunState
from tests.support.live import add_connection, clock_start

NOW = clock_start()
LEASE = dt.timedelta(minutes=5)


def _schedule(db: Database, connection_id: int, channel: str = "C1") -> int:
    with db.session() as session:
        workspace = connections.workspace_of_team(session, "T1")
        assert workspace is not None
        return digests.add_schedule(
            session,
            workspace_id=workspace,
            connection_id=connection_id,
            channel_id=channel,
            cadence="weekly",
            weekday=4,
            local_time="17:30",
            zone="Europe/Paris",
            created_by="U1",
            now=NOW,
        )


def test_a_schedule_reads_back_with_its_workspace_and_connection(db: Database, cipher: Cipher) -> None:
    connection_id = add_connection(db, cipher, "ACC1")
    schedule_id = _schedule(db, connection_id)
    with db.read() as session:
        (found,) = digests.schedules(session)
        assert found == digests.get_schedule(session, schedule_id=schedule_id)
    assert (found.team_id, found.account_id, found.connection_status) == ("T1", "ACC1", "active")
    assert (found.cadence, found.weekday, found.local_time, found.zone) == (
        "weekly",
        4,
        "17:30",
        "Europe/Paris",
    )
    assert found.created_at == NOW


def test_a_period_has_one_run_however_often_it_is_created(db: Database, cipher: Cipher) -> None:
    schedule_id = _schedule(db, add_connection(db, cipher, "ACC1"))
    start = NOW - dt.timedelta(days=1)
    with db.session() as session:
        assert digests.add_run(session, schedule_id=schedule_id, period_start=start, due_at=NOW, now=NOW)
        assert not digests.add_run(session, schedule_id=schedule_id, period_start=start, due_at=NOW, now=NOW)
    with db.session() as session:
        assert not digests.add_run(session, schedule_id=schedule_id, period_start=start, due_at=NOW, now=NOW)
        assert digests.add_run(session, schedule_id=schedule_id, period_start=NOW, due_at=NOW, now=NOW)


def test_a_run_is_leased_to_one_owner_until_its_lease_ends(db: Database, cipher: Cipher) -> None:
    schedule_id = _schedule(db, add_connection(db, cipher, "ACC1"))
    with db.session() as session:
        digests.add_run(session, schedule_id=schedule_id, period_start=NOW, due_at=NOW, now=NOW)
    with db.session() as session:
        (claim,) = digests.claim_runs(session, owner="a", now=NOW, lease=LEASE, limit=5)
    assert (claim.state, claim.attempts) == (DigestRunState.PENDING, 1)
    with db.session() as session:
        assert (
            digests.claim_runs(session, owner="b", now=NOW + dt.timedelta(minutes=4), lease=LEASE, limit=5)
            == []
        )
        assert digests.mark_sent(session, run_id=claim.run_id, owner="a", now=NOW)
    later = NOW + dt.timedelta(minutes=6)
    with db.session() as session:
        # a's lease ran out: b takes the run over, in doubt (a may have posted), and a can no longer act.
        (taken,) = digests.claim_runs(session, owner="b", now=later, lease=LEASE, limit=5)
        assert (taken.state, taken.attempts, taken.sent_at) == (DigestRunState.IN_DOUBT, 2, NOW)
        assert not digests.mark_sent(session, run_id=claim.run_id, owner="a", now=later)
        assert not digests.finish(
            session, run_id=claim.run_id, owner="a", state=DigestRunState.FAILED, now=later
        )
        assert digests.finish(
            session, run_id=claim.run_id, owner="b", state=DigestRunState.DELIVERED, now=later, slack_ts="1.2"
        )
    with db.session() as session:
        assert digests.claim_runs(session, owner="c", now=later + LEASE * 2, lease=LEASE, limit=5) == []
        line = digests.last_runs(session, schedule_ids=[schedule_id])[schedule_id]
    assert (line.state, line.at) == (DigestRunState.DELIVERED, later)


def test_notices_are_given_once(db: Database, cipher: Cipher) -> None:
    schedule_id = _schedule(db, add_connection(db, cipher, "ACC1"))
    with db.session() as session:
        digests.add_run(session, schedule_id=schedule_id, period_start=NOW, due_at=NOW, now=NOW)
        (claim,) = digests.claim_runs(session, owner="a", now=NOW, lease=LEASE, limit=5)
    with db.session() as session:
        assert digests.note_delay(session, run_id=claim.run_id, now=NOW)
        assert not digests.note_delay(session, run_id=claim.run_id, now=NOW)
        assert digests.note_skip(session, schedule_id=schedule_id, now=NOW)
        assert not digests.note_skip(session, schedule_id=schedule_id, now=NOW)
        digests.clear_skip(session, schedule_id=schedule_id)
        assert digests.note_skip(session, schedule_id=schedule_id, now=NOW)


def test_another_workspace_cannot_read_or_remove_a_schedule(db: Database, cipher: Cipher) -> None:
    schedule_id = _schedule(db, add_connection(db, cipher, "ACC1"))
    with db.session() as session:
        other = connections.ensure_workspace(session, team_id="T2", now=NOW).id
        digests.add_run(session, schedule_id=schedule_id, period_start=NOW, due_at=NOW, now=NOW)
    with db.session() as session:
        assert digests.get_schedule(session, schedule_id=schedule_id, workspace_id=other) is None
        assert digests.schedules(session, workspace_id=other) == []
        assert not digests.delete_schedule(session, workspace_id=other, schedule_id=schedule_id)
    with db.session() as session:
        workspace = connections.workspace_of_team(session, "T1")
        assert workspace is not None
        assert digests.delete_schedule(session, workspace_id=workspace, schedule_id=schedule_id)
    with db.read() as session:
        assert digests.schedules(session) == []
        assert digests.last_runs(session, schedule_ids=[schedule_id]) == {}


def test_finished_runs_are_purged_with_the_history_but_never_a_recent_one(
    db: Database, cipher: Cipher
) -> None:
    from storage import retention

    schedule_id = _schedule(db, add_connection(db, cipher, "ACC1"))
    now = NOW + dt.timedelta(days=30)
    with db.session() as session:
        for days_ago, state in (
            (29, DigestRunState.DELIVERED),
            (20, DigestRunState.PENDING),
            (10, DigestRunState.DELIVERED),
        ):
            start = now - dt.timedelta(days=days_ago)
            digests.add_run(session, schedule_id=schedule_id, period_start=start, due_at=start, now=start)
            (claim,) = digests.claim_runs(session, owner="a", now=now, lease=LEASE, limit=1)
            later = now + dt.timedelta(days=1)  # the pending one is not due again in this loop
            digests.finish(
                session, run_id=claim.run_id, owner="a", state=state, now=now, next_attempt_at=later
            )
    with db.session() as session:
        # A one-day retention still keeps two weeks of runs: the 10-day-old run stays.
        retention.purge_leftovers(session, now=now, cutoff=now - dt.timedelta(days=1))
    with db.read() as session:
        line = digests.last_runs(session, schedule_ids=[schedule_id])[schedule_id]
        kept = session.scalars(select(DigestRun.state).order_by(DigestRun.period_start)).all()
    assert kept == [DigestRunState.PENDING, DigestRunState.DELIVERED]  # unfinished runs always stay
    assert line.period_start == now - dt.timedelta(days=10)
