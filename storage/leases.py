"""Named leases for scheduled jobs: the one place that queries job_leases."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage.models import JobLease


def try_acquire(session: Session, *, name: str, owner: str, now: dt.datetime, ttl: dt.timedelta) -> bool:
    """Take the lease `name` until now+ttl unless someone holds it; safe under concurrency."""
    taken = session.execute(
        update(JobLease)
        .where(JobLease.name == name, JobLease.until <= now)
        .values(owner=owner, until=now + ttl)
    )
    if taken.rowcount:  # type: ignore[attr-defined]
        return True
    if session.scalar(select(JobLease.name).where(JobLease.name == name)) is not None:
        return False
    try:
        with session.begin_nested():
            session.add(JobLease(name=name, owner=owner, until=now + ttl))
    except IntegrityError:
        return False  # another process created it first
    return True


def acquire_or_held_until(
    session: Session, *, name: str, owner: str, now: dt.datetime, ttl: dt.timedelta
) -> dt.datetime | None:
    """Like try_acquire; None when taken, else when the current holder's lease ends (at least now)."""
    if try_acquire(session, name=name, owner=owner, now=now, ttl=ttl):
        return None
    until = session.scalar(select(JobLease.until).where(JobLease.name == name))
    return max(until, now) if until is not None else now


# A lease that ended this long ago is taken again exactly as if it had never existed: its row only
# costs space. Per-person limits (connector.features.limits) name one lease per person, so without
# this their rows would grow with every person who ever ran `/freshbooks test`.
EXPIRED_KEEP = dt.timedelta(days=1)


def purge_expired(session: Session, *, now: dt.datetime) -> int:
    """Delete leases that ended more than EXPIRED_KEEP ago; a held lease is never touched."""
    result = session.execute(delete(JobLease).where(JobLease.until < now - EXPIRED_KEEP))
    return int(result.rowcount)  # type: ignore[attr-defined]
