"""The period a digest reports on: the day or week just ended, in the schedule's IANA zone. Pure.

A period is a run of whole local days, [local midnight, local midnight), so consecutive periods
tile time: every instant, and every calendar date, falls in exactly one. Its bounds are kept in
UTC because Python compares and subtracts two datetimes that share a tzinfo by wall-clock time,
ignoring the offset: in one zone, the 23-hour spring day would measure 24 hours.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from zoneinfo import ZoneInfo

MONDAY = 0
_ONE_DAY = dt.timedelta(days=1)


class Cadence(enum.StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"


_DAYS_IN: dict[Cadence, int] = {Cadence.DAILY: 1, Cadence.WEEKLY: 7}


def local_midnight(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    """The first instant of `day` in `zone`, in UTC.

    Where a zone skips midnight (a spring change at 00:00, as in Chile or once in Brazil), fold=0
    reads the missing 00:00 with the offset from before the change, which lands on the first
    instant that exists, 01:00; where midnight happens twice, fold=0 is the first.
    """
    return dt.datetime.combine(day, dt.time(0), tzinfo=zone).astimezone(dt.UTC)


@dataclass(frozen=True, slots=True)
class Period:
    """Whole local days [first_day, end_day) in `zone`; `start` and `end` are those midnights in UTC."""

    cadence: Cadence
    zone: ZoneInfo
    first_day: dt.date
    end_day: dt.date  # exclusive: the day after the last one

    def __post_init__(self) -> None:
        if self.end_day <= self.first_day:
            raise ValueError("a period ends after it starts")

    @property
    def start(self) -> dt.datetime:
        return local_midnight(self.first_day, self.zone)

    @property
    def end(self) -> dt.datetime:
        return local_midnight(self.end_day, self.zone)

    @property
    def last_day(self) -> dt.date:
        return self.end_day - _ONE_DAY

    @property
    def duration(self) -> dt.timedelta:
        """Real elapsed time: 23 or 25 hours for a day with a clock change."""
        return self.end - self.start

    def contains(self, instant: dt.datetime) -> bool:
        """Whether an aware instant lies in [start, end)."""
        if instant.tzinfo is None:
            raise ValueError("an instant without a zone cannot be placed in a period")
        return self.start <= instant.astimezone(dt.UTC) < self.end

    def contains_day(self, day: dt.date) -> bool:
        """Whether a calendar date (FreshBooks' date-only fields) is one of the period's days."""
        return self.first_day <= day < self.end_day

    def previous(self) -> Period:
        """The period of the same length just before this one, for the comparison."""
        days = _DAYS_IN[self.cadence]
        shift = dt.timedelta(days=days)
        return Period(self.cadence, self.zone, self.first_day - shift, self.end_day - shift)


def period_just_ended(
    now: dt.datetime, *, cadence: Cadence, zone: ZoneInfo, week_start: int = MONDAY
) -> Period:
    """Yesterday (daily) or the last whole week starting on `week_start` (0 = Monday), as of `now`."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    if not 0 <= week_start <= 6:
        raise ValueError("week_start is a weekday number, 0 (Monday) to 6 (Sunday)")
    today = now.astimezone(zone).date()
    if cadence is Cadence.DAILY:
        return Period(cadence, zone, today - _ONE_DAY, today)
    this_week = today - dt.timedelta(days=(today.weekday() - week_start) % 7)
    return Period(cadence, zone, this_week - dt.timedelta(days=7), this_week)


def covering_days(start: dt.datetime, end: dt.datetime, zone: dt.tzinfo) -> tuple[dt.date, dt.date]:
    """The whole days in `zone` that cover [start, end), as (first, day after the last). Pure.

    FreshBooks' list filters take dates, not times (freshbooks-reports.md §6.1): a window of
    instants is asked for as the days around it, and the answer sifted by the caller.
    """
    first = start.astimezone(zone).date()
    last_instant = end.astimezone(zone)
    after = last_instant.date()
    if last_instant.timetz().replace(tzinfo=None) != dt.time(0):
        after += _ONE_DAY  # `end` falls inside a day: that day is needed too
    return first, max(after, first + _ONE_DAY)
