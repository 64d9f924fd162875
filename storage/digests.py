"""Digest schedules and their runs: the one place that queries digest_schedules and digest_runs.

A run is one digest of one schedule for one period. Its UNIQUE (schedule, period start) makes
"create the run" idempotent across processes; its lease makes one process at a time work on it;
its state (in doubt before the post) and delivery key make a crash mid-post reconcilable.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import Select, and_, delete, func, or_, select, update
from sqlalchemy.orm import Session

from storage.db import upsert_insert
from storage.models import DigestRun, DigestRunState, DigestSchedule, FreshBooksConnection, Workspace


@dataclass(frozen=True, slots=True)
class Schedule:
    id: int
    workspace_id: int
    team_id: str
    connection_id: int
    account_id: str
    connection_status: str
    channel_id: str
    cadence: str  # daily | weekly
    weekday: int | None  # 0 = Monday
    local_time: str  # HH:MM
    zone: str  # IANA
    created_by: str | None
    created_at: dt.datetime
    skip_notice_at: dt.datetime | None


def _schedules() -> Select[DigestSchedule, str, str, str]:
    return (
        select(
            DigestSchedule,
            Workspace.slack_team_id,
            FreshBooksConnection.account_id,
            FreshBooksConnection.status,
        )
        .join(Workspace, Workspace.id == DigestSchedule.workspace_id)
        .join(FreshBooksConnection, FreshBooksConnection.id == DigestSchedule.connection_id)
        .order_by(DigestSchedule.id)
    )


def _schedule(row: DigestSchedule, team_id: str, account_id: str, status: str) -> Schedule:
    return Schedule(
        id=row.id,
        workspace_id=row.workspace_id,
        team_id=team_id,
        connection_id=row.connection_id,
        account_id=account_id,
        connection_status=status,
        channel_id=row.channel_id,
        cadence=row.cadence,
        weekday=row.weekday,
        local_time=row.local_time,
        zone=row.zone,
        created_by=row.created_by,
        created_at=row.created_at,
        skip_notice_at=row.skip_notice_at,
    )


def add_schedule(
    session: Session,
    *,
    workspace_id: int,
    connection_id: int,
    channel_id: str,
    cadence: str,
    weekday: int | None,
    local_time: str,
    zone: str,
    created_by: str | None,
    now: dt.datetime,
) -> int:
    row = DigestSchedule(
        workspace_id=workspace_id,
        connection_id=connection_id,
        channel_id=channel_id,
        cadence=cadence,
        weekday=weekday,
        local_time=local_time,
        zone=zone,
        created_by=created_by,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row.id


def schedules(session: Session, *, workspace_id: int | None = None) -> list[Schedule]:
    """Every schedule (the scheduler's list), or one workspace's, oldest first."""
    query = _schedules()
    if workspace_id is not None:
        query = query.where(DigestSchedule.workspace_id == workspace_id)
    return [_schedule(row[0], row[1], row[2], row[3]) for row in session.execute(query).all()]


def get_schedule(session: Session, *, schedule_id: int, workspace_id: int | None = None) -> Schedule | None:
    """A schedule by id; with `workspace_id`, only if it is that workspace's."""
    query = _schedules().where(DigestSchedule.id == schedule_id)
    if workspace_id is not None:
        query = query.where(DigestSchedule.workspace_id == workspace_id)
    row = session.execute(query).first()
    return None if row is None else _schedule(row[0], row[1], row[2], row[3])


def delete_schedule(session: Session, *, workspace_id: int, schedule_id: int) -> bool:
    """Remove a schedule of this workspace and its runs' history (its audit entries stay)."""
    found = session.scalar(
        select(DigestSchedule.id).where(
            DigestSchedule.id == schedule_id, DigestSchedule.workspace_id == workspace_id
        )
    )
    if found is None:
        return False
    session.execute(delete(DigestRun).where(DigestRun.schedule_id == schedule_id))
    session.execute(delete(DigestSchedule).where(DigestSchedule.id == schedule_id))
    return True


def note_skip(session: Session, *, schedule_id: int, now: dt.datetime) -> bool:
    """True for the one caller that gets to tell the channel its digest is skipped (until cleared)."""
    result = session.execute(
        update(DigestSchedule)
        .where(DigestSchedule.id == schedule_id, DigestSchedule.skip_notice_at.is_(None))
        .values(skip_notice_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def clear_skip(session: Session, *, schedule_id: int) -> None:
    session.execute(
        update(DigestSchedule)
        .where(DigestSchedule.id == schedule_id, DigestSchedule.skip_notice_at.is_not(None))
        .values(skip_notice_at=None)
    )


# -- runs ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunClaim:
    run_id: int
    schedule_id: int
    period_start: dt.datetime
    due_at: dt.datetime
    delivery_key: str
    state: str
    attempts: int
    sent_at: dt.datetime | None
    delayed_notice_at: dt.datetime | None


def add_run(
    session: Session, *, schedule_id: int, period_start: dt.datetime, due_at: dt.datetime, now: dt.datetime
) -> bool:
    """The run of a schedule's period, created once whoever asks (False: it existed already)."""
    statement = (
        upsert_insert(session, DigestRun)
        .values(
            schedule_id=schedule_id,
            period_start=period_start,
            due_at=due_at,
            delivery_key=str(uuid.uuid4()),
            state=DigestRunState.PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        .on_conflict_do_nothing()
        .returning(DigestRun.id)  # rowcount is unreliable for a conflict (storage.outbox)
    )
    return session.scalar(statement) is not None


def claim_runs(
    session: Session, *, owner: str, now: dt.datetime, lease: dt.timedelta, limit: int
) -> list[RunClaim]:
    """Lease the runs due now (pending or in doubt, lease free), SKIP LOCKED on PostgreSQL."""
    rows = session.scalars(
        select(DigestRun)
        .where(
            DigestRun.state.in_((DigestRunState.PENDING, DigestRunState.IN_DOUBT)),
            DigestRun.next_attempt_at <= now,
            or_(DigestRun.lease_expires_at.is_(None), DigestRun.lease_expires_at < now),
        )
        .order_by(DigestRun.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    claims = []
    for run in rows:
        # Conditional, so that two SQLite processes (no row locks) cannot both take it.
        taken = session.execute(
            update(DigestRun)
            .where(
                DigestRun.id == run.id,
                or_(DigestRun.lease_expires_at.is_(None), DigestRun.lease_expires_at < now),
            )
            .values(lease_owner=owner, lease_expires_at=now + lease, attempts=DigestRun.attempts + 1)
            .execution_options(synchronize_session=False)
        )
        if not taken.rowcount:  # type: ignore[attr-defined]
            continue
        claims.append(
            RunClaim(
                run_id=run.id,
                schedule_id=run.schedule_id,
                period_start=run.period_start,
                due_at=run.due_at,
                delivery_key=run.delivery_key,
                state=run.state,
                attempts=run.attempts + 1,
                sent_at=run.sent_at,
                delayed_notice_at=run.delayed_notice_at,
            )
        )
    return claims


def mark_sent(session: Session, *, run_id: int, owner: str, now: dt.datetime) -> bool:
    """Written before the post: a crash leaves the run in doubt. False when the lease ran out."""
    result = session.execute(
        update(DigestRun)
        .where(DigestRun.id == run_id, DigestRun.lease_owner == owner, DigestRun.lease_expires_at > now)
        .values(state=DigestRunState.IN_DOUBT, sent_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def finish(
    session: Session,
    *,
    run_id: int,
    owner: str,
    state: DigestRunState,
    now: dt.datetime,
    next_attempt_at: dt.datetime | None = None,
    error: str | None = None,
    slack_ts: str | None = None,
    not_posted: bool = False,
) -> bool:
    """Record an attempt's outcome and end the lease (only if still ours)."""
    values: dict[str, object] = {
        "state": state,
        "lease_owner": None,
        "lease_expires_at": None,
        "last_error": error[:64] if error else None,
    }
    if next_attempt_at is not None:
        values["next_attempt_at"] = next_attempt_at
    if slack_ts is not None:
        values.update(slack_ts=slack_ts, delivered_at=now)
    if not_posted:
        values["sent_at"] = None
    result = session.execute(
        update(DigestRun).where(DigestRun.id == run_id, DigestRun.lease_owner == owner).values(**values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def note_delay(session: Session, *, run_id: int, now: dt.datetime) -> bool:
    """True for the one caller that gets to tell the channel this run's digest is delayed."""
    result = session.execute(
        update(DigestRun)
        .where(DigestRun.id == run_id, DigestRun.delayed_notice_at.is_(None))
        .values(delayed_notice_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class RunLine:
    schedule_id: int
    period_start: dt.datetime
    state: str
    at: dt.datetime  # delivered, or created
    error: str | None


def last_runs(session: Session, *, schedule_ids: list[int]) -> dict[int, RunLine]:
    """Each schedule's newest run, for listings."""
    found: dict[int, RunLine] = {}
    if not schedule_ids:
        return found
    newest = (
        select(DigestRun.schedule_id, func.max(DigestRun.period_start).label("period_start"))
        .where(DigestRun.schedule_id.in_(schedule_ids))
        .group_by(DigestRun.schedule_id)
        .subquery()
    )
    rows = session.scalars(
        select(DigestRun).join(
            newest,
            and_(
                DigestRun.schedule_id == newest.c.schedule_id, DigestRun.period_start == newest.c.period_start
            ),
        )
    )
    for run in rows:
        found[run.schedule_id] = RunLine(
            run.schedule_id, run.period_start, run.state, run.delivered_at or run.created_at, run.last_error
        )
    return found
