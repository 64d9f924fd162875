"""Quiet hours of a channel, as values: when they hold messages back and when they end. Pure.

Times are wall-clock times in the IANA zone of the admin who set them (Slack's users.info `tz`),
so 19:00-08:00 stays 19:00-08:00 across daylight-saving changes; instants are UTC.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_RANGE: Final = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")
_TIME: Final = re.compile(r"(\d{1,2}):(\d{2})")
_CHANNEL_ID: Final = re.compile(r"[CG][A-Z0-9]{2,31}")  # a public or private channel; never a DM
_DAY: Final = 24 * 60
SATURDAY: Final = 5


class QuietHoursError(ValueError):
    """Quiet hours we cannot read; str() says what is wrong, ready for Slack (mrkdwn).

    `field` is what is wrong, "channel" or "time", for a form that shows the error under its field."""

    def __init__(self, message: str, *, field: str = "time") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class QuietHours:
    channel_id: str
    start_minute: int  # minutes after local midnight
    end_minute: int
    weekends: bool  # also quiet all of Saturday and Sunday
    zone: str  # IANA name, e.g. "America/New_York"

    def describe(self) -> str:
        days = " and all weekend" if self.weekends else ""
        return f"{_hhmm(self.start_minute)}-{_hhmm(self.end_minute)}{days} ({self.zone})"


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def parse_range(text: str) -> tuple[int, int]:
    """ "19:00-08:00" as (start, end) minutes after midnight; the range may cross midnight."""
    match = _RANGE.fullmatch(text.strip())
    if match is None:
        raise QuietHoursError(
            f"`{text[:40]}` is not a time range. Write it like `19:00-08:00` (24-hour clock)."
        )
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    return check_range(_minute(h1, m1), _minute(h2, m2))


def parse_time(text: str) -> int:
    """ "19:00" (a Block Kit timepicker's HH:mm) as minutes after midnight."""
    match = _TIME.fullmatch(text.strip())
    if match is None:
        raise QuietHoursError(f"`{text[:40]}` is not a time. Write it like `19:00` (24-hour clock).")
    return _minute(int(match.group(1)), int(match.group(2)))


def _minute(hour: int, minute: int) -> int:
    if hour > 23 or minute > 59:
        raise QuietHoursError("Hours go from 00 to 23 and minutes from 00 to 59, like `19:00-08:00`.")
    return hour * 60 + minute


def check_range(start: int, end: int) -> tuple[int, int]:
    """(start, end) as given, if they make quiet hours: a range that ends where it starts is none."""
    if not (0 <= start < _DAY and 0 <= end < _DAY):
        raise QuietHoursError("Hours go from 00 to 23 and minutes from 00 to 59, like `19:00-08:00`.")
    if start == end:
        raise QuietHoursError(
            "The quiet hours start and end at the same time. Give a range like `19:00-08:00`."
        )
    return start, end


@dataclass(frozen=True, slots=True)
class QuietRequest:
    """Quiet hours as an admin asked for them (command or App Home), before their time zone is
    looked up; checked when made, so every way of setting them refuses the same things."""

    channel_id: str
    start_minute: int
    end_minute: int
    weekends: bool

    def __post_init__(self) -> None:
        if not _CHANNEL_ID.fullmatch(self.channel_id):
            raise QuietHoursError("Pick a channel (public or private), not a person.", field="channel")
        check_range(self.start_minute, self.end_minute)

    def in_zone(self, zone: str) -> QuietHours:
        return QuietHours(self.channel_id, self.start_minute, self.end_minute, self.weekends, zone)


def zone_of(name: str | None) -> str:
    """A Slack user's `tz`, checked; UTC when Slack gave none (documented as possible)."""
    if not name:
        return "UTC"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return "UTC"
    return name


def is_quiet(hours: QuietHours, moment: dt.datetime) -> bool:
    """Whether `moment` (aware) falls in the quiet hours."""
    local = moment.astimezone(ZoneInfo(hours.zone))
    if hours.weekends and local.weekday() >= SATURDAY:
        return True
    minute = local.hour * 60 + local.minute
    if hours.start_minute < hours.end_minute:
        return hours.start_minute <= minute < hours.end_minute
    return minute >= hours.start_minute or minute < hours.end_minute


def quiet_until(hours: QuietHours, now: dt.datetime) -> dt.datetime | None:
    """When the quiet hours that hold `now` end (UTC), or None if `now` is not in quiet hours.

    The end is the first local end time (or midnight, where a weekend ends) after `now` that is
    not itself quiet; local times are made instants in the zone as it is on that day (DST-correct;
    an end time inside a spring-forward gap comes out at the same instant as the hour after it).
    """
    if not is_quiet(hours, now):
        return None
    zone = ZoneInfo(hours.zone)
    today = now.astimezone(zone).date()
    candidates = []
    for offset in range(9):  # a weekend plus a night, with room to spare
        day = today + dt.timedelta(days=offset)
        for minute in (hours.end_minute, 0):
            local = dt.datetime.combine(day, dt.time(minute // 60, minute % 60), tzinfo=zone)
            moment = local.astimezone(dt.UTC)
            if moment > now and not is_quiet(hours, moment):
                candidates.append(moment)
    return min(candidates) if candidates else None
