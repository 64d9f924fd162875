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
_DAY: Final = 24 * 60
SATURDAY: Final = 5


class QuietHoursError(ValueError):
    """Quiet hours we cannot read; str() says what is wrong, ready for Slack."""


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
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise QuietHoursError("Hours go from 00 to 23 and minutes from 00 to 59, like `19:00-08:00`.")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end:
        raise QuietHoursError(
            "The quiet hours start and end at the same time. Give a range like `19:00-08:00`."
        )
    return start, end


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
