"""When a digest is due (pure): local times across clock changes, the period each occurrence
reports, and the command's words."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from connector.features.digest.period import Cadence
from connector.features.digest.schedule import (
    DigestSyntaxError,
    NowRequest,
    ScheduleRequest,
    Timing,
    latest_due,
    next_due,
    occurrence_on,
    parse_digest_command,
    zone_or_none,
)

NEW_YORK = ZoneInfo("America/New_York")
UTC = dt.UTC


def daily(hour: int, minute: int = 0, zone: ZoneInfo = NEW_YORK) -> Timing:
    return Timing(Cadence.DAILY, dt.time(hour, minute), zone)


def test_a_local_time_keeps_its_place_on_the_wall_clock_across_both_changes() -> None:
    # 2027: clocks go forward on Sunday Mar 14 and back on Sunday Nov 7 in New York.
    assert occurrence_on(daily(8), dt.date(2027, 3, 13)).due_at == dt.datetime(2027, 3, 13, 13, tzinfo=UTC)
    assert occurrence_on(daily(8), dt.date(2027, 3, 14)).due_at == dt.datetime(2027, 3, 14, 12, tzinfo=UTC)
    assert occurrence_on(daily(8), dt.date(2027, 11, 6)).due_at == dt.datetime(2027, 11, 6, 12, tzinfo=UTC)
    assert occurrence_on(daily(8), dt.date(2027, 11, 7)).due_at == dt.datetime(2027, 11, 7, 13, tzinfo=UTC)


def test_a_skipped_time_happens_an_hour_later_and_a_repeated_one_once() -> None:
    # 02:30 does not exist on Mar 14: read with the offset before the change, 03:30 EDT.
    skipped = occurrence_on(daily(2, 30), dt.date(2027, 3, 14))
    assert skipped.due_at == dt.datetime(2027, 3, 14, 7, 30, tzinfo=UTC)
    assert skipped.due_at.astimezone(NEW_YORK).hour == 3
    # 01:30 happens twice on Nov 7: the first one (EDT).
    assert occurrence_on(daily(1, 30), dt.date(2027, 11, 7)).due_at == dt.datetime(
        2027, 11, 7, 5, 30, tzinfo=UTC
    )


def test_the_period_is_the_day_or_the_seven_days_before_the_send_day() -> None:
    day = occurrence_on(daily(8), dt.date(2027, 3, 14)).period
    assert (day.first_day, day.end_day, day.duration) == (
        dt.date(2027, 3, 13),
        dt.date(2027, 3, 14),
        dt.timedelta(hours=24),
    )
    crossing = occurrence_on(daily(8), dt.date(2027, 3, 15)).period
    assert crossing.duration == dt.timedelta(hours=23)  # Mar 14 had 23 hours
    friday = Timing(Cadence.WEEKLY, dt.time(17, 30), NEW_YORK, weekday=4)
    week = occurrence_on(friday, dt.date(2027, 4, 2)).period
    assert (week.first_day, week.last_day) == (dt.date(2027, 3, 26), dt.date(2027, 4, 1))


def test_latest_and_next_due() -> None:
    timing = daily(8)
    before = dt.datetime(2027, 3, 14, 11, 59, tzinfo=UTC)  # 07:59 EDT
    latest = latest_due(timing, before)
    assert latest is not None and latest.due_at == dt.datetime(2027, 3, 13, 13, tzinfo=UTC)
    assert next_due(timing, before) == dt.datetime(2027, 3, 14, 12, tzinfo=UTC)
    at = dt.datetime(2027, 3, 14, 12, tzinfo=UTC)
    now_due = latest_due(timing, at)
    assert now_due is not None and now_due.due_at == at
    assert next_due(timing, at) == dt.datetime(2027, 3, 15, 12, tzinfo=UTC)
    weekly = Timing(Cadence.WEEKLY, dt.time(9), NEW_YORK, weekday=0)
    found = latest_due(weekly, dt.datetime(2027, 3, 20, tzinfo=UTC))  # a Saturday
    assert found is not None and found.due_at.astimezone(NEW_YORK).date() == dt.date(2027, 3, 15)
    with pytest.raises(ValueError, match="aware"):
        latest_due(timing, dt.datetime(2027, 3, 14))


def test_a_timing_is_consistent_and_says_itself() -> None:
    with pytest.raises(ValueError):
        Timing(Cadence.WEEKLY, dt.time(8), NEW_YORK)
    with pytest.raises(ValueError):
        Timing(Cadence.DAILY, dt.time(8), NEW_YORK, weekday=1)
    assert (
        Timing(Cadence.WEEKLY, dt.time(8, 5), NEW_YORK, 6).describe()
        == "weekly on Sunday at 08:05 (America/New_York)"
    )
    assert zone_or_none("Europe/Paris") == ZoneInfo("Europe/Paris")
    assert (
        zone_or_none("Mars/Olympus") is None and zone_or_none("") is None and zone_or_none("../etc") is None
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<#C1|fin> daily", ScheduleRequest("C1", Cadence.DAILY, dt.time(8), None)),
        ("<#C1> weekly", ScheduleRequest("C1", Cadence.WEEKLY, dt.time(8), 0)),
        ("<#C1|fin> weekly fri at 9:05", ScheduleRequest("C1", Cadence.WEEKLY, dt.time(9, 5), 4)),
        ("<#G1|x> WEEKLY 17:30 Sunday", ScheduleRequest("G1", Cadence.WEEKLY, dt.time(17, 30), 6)),
        ("<#C1|fin> daily at 00:00", ScheduleRequest("C1", Cadence.DAILY, dt.time(0), None)),
        ("now", NowRequest(None)),
        ("now <#C9|x>", NowRequest("C9")),
    ],
)
def test_the_command_is_read(text: str, expected: object) -> None:
    assert parse_digest_command(text) == expected


def test_a_bad_command_says_what_and_shows_the_usage() -> None:
    with pytest.raises(DigestSyntaxError) as info:
        parse_digest_command("<#C1|fin> daily at 24:00")
    assert "24-hour clock" in info.value.problem and "Usage:" in str(info.value)
