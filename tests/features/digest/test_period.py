"""The digest's period: yesterday or last week in the schedule's zone, exact across clock changes."""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest

from connector.features.digest.period import (
    Cadence,
    Period,
    covering_days,
    local_midnight,
    period_just_ended,
)

NEW_YORK = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")
AUCKLAND = ZoneInfo("Pacific/Auckland")
SANTIAGO = ZoneInfo("America/Santiago")
HOUR = dt.timedelta(hours=1)


def at(zone: ZoneInfo, *parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=zone)  # type: ignore[misc]


def utc(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=dt.UTC)  # type: ignore[misc]


def test_yesterday_of_a_spring_change_has_23_hours() -> None:
    # 2027-03-14: New York's clocks go from 02:00 EST to 03:00 EDT.
    period = period_just_ended(at(NEW_YORK, 2027, 3, 15, 8), cadence=Cadence.DAILY, zone=NEW_YORK)
    assert (period.first_day, period.end_day) == (dt.date(2027, 3, 14), dt.date(2027, 3, 15))
    assert (period.start, period.end) == (utc(2027, 3, 14, 5), utc(2027, 3, 15, 4))
    assert period.duration == 23 * HOUR


def test_yesterday_of_an_autumn_change_has_25_hours() -> None:
    period = period_just_ended(at(NEW_YORK, 2027, 11, 8, 0, 5), cadence=Cadence.DAILY, zone=NEW_YORK)
    assert period.first_day == dt.date(2027, 11, 7)
    assert (period.start, period.end) == (utc(2027, 11, 7, 4), utc(2027, 11, 8, 5))
    assert period.duration == 25 * HOUR
    # The repeated hour (01:00-02:00 twice) is inside, both times.
    assert period.contains(dt.datetime(2027, 11, 7, 1, 30, fold=0, tzinfo=NEW_YORK))
    assert period.contains(dt.datetime(2027, 11, 7, 1, 30, fold=1, tzinfo=NEW_YORK))


def test_london_changes_and_a_week_across_one() -> None:
    spring = period_just_ended(at(LONDON, 2027, 3, 29, 9), cadence=Cadence.DAILY, zone=LONDON)
    autumn = period_just_ended(at(LONDON, 2027, 11, 1, 9), cadence=Cadence.DAILY, zone=LONDON)
    assert (spring.first_day, spring.duration) == (dt.date(2027, 3, 28), 23 * HOUR)
    assert (autumn.first_day, autumn.duration) == (dt.date(2027, 10, 31), 25 * HOUR)
    week = period_just_ended(at(LONDON, 2027, 3, 29, 9), cadence=Cadence.WEEKLY, zone=LONDON)
    assert (week.first_day, week.end_day) == (dt.date(2027, 3, 22), dt.date(2027, 3, 29))
    assert week.duration == dt.timedelta(days=7) - HOUR
    assert week.previous().duration == dt.timedelta(days=7)


def test_a_zone_that_skips_midnight_starts_the_day_at_one() -> None:
    # Chile moves its clocks at midnight: 2026-09-06 00:00 never happens, the day starts at 01:00.
    assert local_midnight(dt.date(2026, 9, 6), SANTIAGO).astimezone(SANTIAGO) == at(SANTIAGO, 2026, 9, 6, 1)
    period = period_just_ended(at(SANTIAGO, 2026, 9, 7, 9), cadence=Cadence.DAILY, zone=SANTIAGO)
    assert period.duration == 23 * HOUR
    assert period.previous().end == period.start


def test_month_and_year_ends() -> None:
    feb = period_just_ended(at(NEW_YORK, 2027, 3, 1, 0, 30), cadence=Cadence.DAILY, zone=NEW_YORK)
    assert (feb.first_day, feb.end_day) == (dt.date(2027, 2, 28), dt.date(2027, 3, 1))
    new_year = period_just_ended(at(NEW_YORK, 2027, 1, 1, 6), cadence=Cadence.DAILY, zone=NEW_YORK)
    assert new_year.first_day == dt.date(2026, 12, 31)
    assert new_year.previous().first_day == dt.date(2026, 12, 30)
    # 2027-01-04 is a Monday: last week is Mon 2026-12-28 to Sun 2027-01-03, across the year end.
    week = period_just_ended(at(NEW_YORK, 2027, 1, 4, 9), cadence=Cadence.WEEKLY, zone=NEW_YORK)
    assert (week.first_day, week.last_day) == (dt.date(2026, 12, 28), dt.date(2027, 1, 3))
    assert (week.previous().first_day, week.previous().end_day) == (dt.date(2026, 12, 21), week.first_day)


def test_a_leap_day() -> None:
    leap = period_just_ended(at(NEW_YORK, 2028, 3, 1, 7), cadence=Cadence.DAILY, zone=NEW_YORK)
    assert (leap.first_day, leap.end_day) == (dt.date(2028, 2, 29), dt.date(2028, 3, 1))
    assert leap.previous().first_day == dt.date(2028, 2, 28)
    week = period_just_ended(at(NEW_YORK, 2028, 3, 6, 7), cadence=Cadence.WEEKLY, zone=NEW_YORK)
    assert (week.first_day, week.last_day) == (dt.date(2028, 2, 28), dt.date(2028, 3, 5))
    assert week.contains_day(dt.date(2028, 2, 29))


def test_today_is_the_schedules_today_not_utcs() -> None:
    # 20:00 UTC on Dec 4 is already 09:00 on Dec 5 in Auckland: yesterday there is Dec 4.
    period = period_just_ended(utc(2026, 12, 4, 20), cadence=Cadence.DAILY, zone=AUCKLAND)
    assert period.first_day == dt.date(2026, 12, 4)
    assert period.start == utc(2026, 12, 3, 11)  # NZDT, UTC+13


def test_the_boundary_instant_belongs_to_the_new_day() -> None:
    midnight = at(NEW_YORK, 2027, 6, 2)
    assert period_just_ended(midnight, cadence=Cadence.DAILY, zone=NEW_YORK).first_day == dt.date(2027, 6, 1)
    just_before = midnight - dt.timedelta(microseconds=1)
    assert period_just_ended(just_before, cadence=Cadence.DAILY, zone=NEW_YORK).first_day == dt.date(
        2027, 5, 31
    )
    period = period_just_ended(midnight, cadence=Cadence.DAILY, zone=NEW_YORK)
    assert period.contains(period.start) and not period.contains(period.end)


@pytest.mark.parametrize(
    ("week_start", "first_day"),
    [(0, dt.date(2027, 5, 24)), (6, dt.date(2027, 5, 23)), (2, dt.date(2027, 5, 26))],
)
def test_a_week_starts_on_the_given_weekday(week_start: int, first_day: dt.date) -> None:
    # Wednesday 2027-06-02, 09:00: a week starting on Wednesdays began this morning at midnight.
    now = at(NEW_YORK, 2027, 6, 2, 9)
    period = period_just_ended(now, cadence=Cadence.WEEKLY, zone=NEW_YORK, week_start=week_start)
    assert period.first_day == first_day
    assert period.first_day.weekday() == week_start
    assert period.end_day - period.first_day == dt.timedelta(days=7)
    assert period.end <= now < period.end + dt.timedelta(days=7)


@pytest.mark.parametrize("zone", [NEW_YORK, LONDON, AUCKLAND, SANTIAGO], ids=str)
@pytest.mark.parametrize("cadence", list(Cadence))
def test_periods_tile_time_through_a_whole_year(zone: ZoneInfo, cadence: Cadence) -> None:
    """Hour by hour through 2027 (two clock changes each): the period just ended always ends at the
    last local midnight before now, and the one before it ends where it starts."""
    now = utc(2027, 1, 1)
    seen: set[Period] = set()
    while now < utc(2028, 1, 1):
        period = period_just_ended(now, cadence=cadence, zone=zone)
        assert period.end <= now
        assert now - period.end < dt.timedelta(days=7 if cadence is Cadence.WEEKLY else 1) + HOUR
        assert period.previous().end == period.start
        assert period.end.astimezone(zone).time() in (dt.time(0), dt.time(1))
        seen.add(period)
        now += HOUR
    ordered = sorted(seen, key=lambda p: p.start)
    assert all(a.end == b.start for a, b in itertools.pairwise(ordered))


def test_bad_input_is_refused_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="aware"):
        period_just_ended(dt.datetime(2027, 1, 1), cadence=Cadence.DAILY, zone=NEW_YORK)
    with pytest.raises(ValueError, match="weekday"):
        period_just_ended(utc(2027, 1, 1), cadence=Cadence.WEEKLY, zone=NEW_YORK, week_start=7)
    with pytest.raises(ValueError, match="zone"):
        Period(Cadence.DAILY, NEW_YORK, dt.date(2027, 1, 1), dt.date(2027, 1, 2)).contains(
            dt.datetime(2027, 1, 1, 12)
        )


def test_covering_days_widen_a_window_to_whole_days_of_another_zone() -> None:
    # Yesterday in Auckland (Dec 4, NZDT) is Dec 3 11:00 UTC to Dec 4 11:00 UTC: in New York that is
    # Dec 3 06:00 to Dec 4 06:00, so the days Dec 3 and Dec 4 cover it.
    period = period_just_ended(utc(2026, 12, 4, 20), cadence=Cadence.DAILY, zone=AUCKLAND)
    assert covering_days(period.start, period.end, NEW_YORK) == (dt.date(2026, 12, 3), dt.date(2026, 12, 5))
    # In its own zone a period is its own days, exactly.
    assert covering_days(period.start, period.end, AUCKLAND) == (period.first_day, period.end_day)
