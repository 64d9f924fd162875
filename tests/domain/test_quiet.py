"""Quiet hours as values (connector.domain.quiet): across midnight, weekends, daylight-saving changes."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from connector.domain.quiet import (
    QuietHours,
    QuietHoursError,
    QuietRequest,
    is_quiet,
    parse_range,
    parse_time,
    quiet_until,
    zone_of,
)

NEW_YORK = ZoneInfo("America/New_York")


def hours(text: str = "19:00-08:00", *, weekends: bool = False, zone: str = "America/New_York") -> QuietHours:
    start, end = parse_range(text)
    return QuietHours("C1", start, end, weekends, zone)


def local(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=NEW_YORK)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("7pm-8am", "not a time range"),
        ("24:00-08:00", "00 to 23"),
        ("19:60-08:00", "00 to 59"),
        ("08:00-08:00", "same time"),
    ],
)
def test_a_range_we_cannot_read_says_why(text: str, problem: str) -> None:
    with pytest.raises(QuietHoursError, match=problem):
        parse_range(text)


def test_a_range_across_midnight_holds_the_night_and_ends_in_the_morning() -> None:
    night = hours()

    assert not is_quiet(night, local(2026, 11, 24, 18, 59))
    assert is_quiet(night, local(2026, 11, 24, 19, 0))
    assert is_quiet(night, local(2026, 11, 25, 7, 59))
    assert not is_quiet(night, local(2026, 11, 25, 8, 0))
    assert quiet_until(night, local(2026, 11, 24, 23, 30)) == local(2026, 11, 25, 8, 0)
    assert quiet_until(night, local(2026, 11, 25, 1, 0)) == local(2026, 11, 25, 8, 0)
    assert quiet_until(night, local(2026, 11, 25, 12, 0)) is None


def test_a_daytime_range_does_not_wrap() -> None:
    lunch = hours("12:00-13:30")

    assert quiet_until(lunch, local(2026, 11, 24, 12, 15)) == local(2026, 11, 24, 13, 30)
    assert not is_quiet(lunch, local(2026, 11, 24, 23, 0))


def test_weekends_hold_from_friday_night_to_monday_morning() -> None:
    weekend = hours(weekends=True)  # 2026-11-27 is a Friday

    assert quiet_until(weekend, local(2026, 11, 27, 20, 0)) == local(2026, 11, 30, 8, 0)
    assert quiet_until(weekend, local(2026, 11, 29, 12, 0)) == local(2026, 11, 30, 8, 0)
    assert quiet_until(hours(), local(2026, 11, 28, 12, 0)) is None  # without `weekends`


@pytest.mark.parametrize(
    ("evening", "morning", "utc_hour", "elapsed"),
    [
        # 2027-03-14: clocks go forward at 02:00 in New York; 08:00 is then 12:00 UTC, 8 hours on.
        (local(2027, 3, 13, 23, 0), local(2027, 3, 14, 8, 0), 12, 8),
        # 2026-11-01: clocks go back at 02:00; 08:00 is then 13:00 UTC, 10 hours on.
        (local(2026, 10, 31, 23, 0), local(2026, 11, 1, 8, 0), 13, 10),
    ],
    ids=["spring-forward", "fall-back"],
)
def test_the_end_is_the_local_time_across_a_daylight_saving_change(
    evening: dt.datetime, morning: dt.datetime, utc_hour: int, elapsed: int
) -> None:
    ends = quiet_until(hours(), evening.astimezone(dt.UTC))

    assert ends == morning
    assert ends is not None and ends.astimezone(dt.UTC).hour == utc_hour
    assert ends - evening == dt.timedelta(hours=elapsed)


def test_an_end_time_in_the_spring_forward_gap_still_ends() -> None:
    gap = hours("22:00-02:30")  # 02:30 does not exist on 2027-03-14 in New York

    ends = quiet_until(gap, local(2027, 3, 13, 23, 0))

    assert ends is not None and not is_quiet(gap, ends)
    assert ends.astimezone(NEW_YORK).date() == dt.date(2027, 3, 14)


def test_a_zone_slack_did_not_give_or_we_do_not_know_is_utc() -> None:
    assert zone_of("Europe/Paris") == "Europe/Paris"
    assert zone_of(None) == "UTC"
    assert zone_of("Mars/Olympus_Mons") == "UTC"
    assert hours(zone="UTC").describe() == "19:00-08:00 (UTC)"
    assert hours(weekends=True).describe() == "19:00-08:00 and all weekend (America/New_York)"


def test_a_request_is_checked_when_made_the_same_for_command_and_form() -> None:
    assert parse_time("07:05") == 7 * 60 + 5
    request = QuietRequest("G0PRIVATE", *parse_range("22:00-06:30"), weekends=True)
    assert request.in_zone("Europe/Berlin") == QuietHours(
        "G0PRIVATE", 22 * 60, 6 * 60 + 30, True, "Europe/Berlin"
    )
    with pytest.raises(QuietHoursError, match="same time") as same:
        QuietRequest("C1X", 60, 60, weekends=False)
    assert same.value.field == "time"
    for not_a_channel in ("D0DIRECT", "U0PERSON", "", "c0lower"):
        with pytest.raises(QuietHoursError, match="not a person") as wrong:
            QuietRequest(not_a_channel, 60, 120, weekends=False)
        assert wrong.value.field == "channel"
    with pytest.raises(QuietHoursError, match="00 to 23"):
        QuietRequest("C1X", 24 * 60, 60, weekends=False)
    with pytest.raises(QuietHoursError, match="not a time"):
        parse_time("7pm")
