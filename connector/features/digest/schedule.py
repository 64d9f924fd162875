"""When a digest is due, and the `/freshbooks digest` command's words. Pure: no I/O, no clock.

A schedule says "daily at 08:00" or "weekly on Monday at 08:00" in an IANA zone, so it follows the
zone's clock changes: 08:00 in New York is 13:00 UTC in winter and 12:00 UTC in summer. An
occurrence is one such moment with the period it reports on (the day, or the 7 days, before it).
A local time that a clock change skips (02:30 on a spring-forward night) is read with the offset
from before the change, so it happens once, an hour later on the wall clock; one that happens
twice (01:30 on a fall-back night) happens the first time only.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connector.features.digest.period import MONDAY, Cadence, Period, period_just_ended

DEFAULT_TIME = dt.time(8, 0)
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_SHORT_DAYS = {name[:3]: n for n, name in enumerate(WEEKDAYS)}
_TIME = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])")
_CHANNEL = re.compile(r"<#([CG][A-Z0-9]+)(?:\|[^<>]*)?>")

USAGE = (
    "Usage: `/freshbooks digest #channel daily|weekly [monday] [at HH:MM]` schedules a cash-flow "
    "digest (times are in your Slack time zone; weekly digests go out on Mondays unless you name "
    "another day; the default time is 08:00). `/freshbooks digests` lists them, "
    "`/freshbooks undigest N` removes one, `/freshbooks digest now [#channel]` posts one at once.\n"
    "Example: `/freshbooks digest #finance weekly friday at 17:30`"
)


class DigestSyntaxError(ValueError):
    """A digest command we cannot read; str() is the problem and the usage, ready for Slack."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"{problem}\n{USAGE}")
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Timing:
    cadence: Cadence
    at: dt.time
    zone: ZoneInfo
    weekday: int | None = None  # 0 = Monday; weekly only

    def __post_init__(self) -> None:
        if (self.cadence is Cadence.WEEKLY) != (self.weekday is not None):
            raise ValueError("a weekly digest has a weekday, a daily one has none")

    def describe(self) -> str:
        """`daily at 08:00 (America/New_York)`, `weekly on Monday at 08:00 (Europe/Paris)`."""
        when = "daily" if self.weekday is None else f"weekly on {WEEKDAYS[self.weekday].title()}"
        return f"{when} at {self.at:%H:%M} ({self.zone.key})"


@dataclass(frozen=True, slots=True)
class Occurrence:
    due_at: dt.datetime  # UTC
    period: Period


def occurrence_on(timing: Timing, day: dt.date) -> Occurrence:
    """The digest of local `day` (its send day): due at the local time, reporting the period before."""
    due = dt.datetime.combine(day, timing.at, tzinfo=timing.zone).astimezone(dt.UTC)
    week_start = timing.weekday if timing.weekday is not None else MONDAY
    # The period that ended as the send day began (noon: any instant of that day gives the same).
    start_of_day = dt.datetime.combine(day, dt.time(12), tzinfo=timing.zone)
    return Occurrence(due, period_just_ended(start_of_day, cadence=timing.cadence, zone=timing.zone,
                                             week_start=week_start))  # fmt: skip


def latest_due(timing: Timing, now: dt.datetime) -> Occurrence | None:
    """The newest occurrence at or before `now` (one of the last 8 days is always the weekday)."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    today = now.astimezone(timing.zone).date()
    for back in range(9):
        day = today - dt.timedelta(days=back)
        if timing.weekday is not None and day.weekday() != timing.weekday:
            continue
        occurrence = occurrence_on(timing, day)
        if occurrence.due_at <= now:
            return occurrence
    return None


def next_due(timing: Timing, now: dt.datetime) -> dt.datetime:
    """When the next digest after `now` goes out (for listings)."""
    today = now.astimezone(timing.zone).date()
    for ahead in range(9):
        day = today + dt.timedelta(days=ahead)
        if timing.weekday is not None and day.weekday() != timing.weekday:
            continue
        due = occurrence_on(timing, day).due_at
        if due > now:
            return due
    raise AssertionError("unreachable: one of the next 8 days is the weekday")


def zone_or_none(name: str | None) -> ZoneInfo | None:
    """An IANA zone by name (Slack's users.info `tz`), or None if it is missing or unknown."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


# -- the command --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScheduleRequest:
    """`digest #channel daily|weekly [day] [at HH:MM]`: everything but the zone (the admin's)."""

    channel_id: str
    cadence: Cadence
    at: dt.time
    weekday: int | None


@dataclass(frozen=True, slots=True)
class NowRequest:
    """`digest now [#channel]`: None posts to the channel the command was typed in."""

    channel_id: str | None


def _shown(text: str) -> str:
    cut = text if len(text) <= 30 else f"{text[:29]}…"
    return cut.replace("`", "'").replace("<", "&lt;").replace(">", "&gt;")


def parse_time(text: str) -> dt.time:
    """`8:00`, `08:00`, `17:30` (24-hour clock)."""
    found = _TIME.fullmatch(text)
    if found is None:
        raise DigestSyntaxError(
            f"`{_shown(text)}` is not a time: write it on the 24-hour clock, like `at 08:00`."
        )
    return dt.time(int(found.group(1)), int(found.group(2)))


def parse_weekday(text: str) -> int | None:
    word = text.lower()
    if word in WEEKDAYS:
        return WEEKDAYS.index(word)
    return _SHORT_DAYS.get(word.rstrip("."))


def _channel(word: str) -> str:
    found = _CHANNEL.fullmatch(word)
    if found is None:
        if word.startswith("<@"):
            raise DigestSyntaxError(f"`{_shown(word)}` is a person, not a channel. Pick a channel with `#`.")
        raise DigestSyntaxError(
            f"`{_shown(word)}` is not a linked channel. Pick the channel with `#` so Slack links it "
            "(it turns blue), then send the command."
        )
    return found.group(1)


def parse_digest_command(args: str) -> ScheduleRequest | NowRequest:
    """The words after `digest`. Raises DigestSyntaxError naming what is wrong."""
    words = args.split()
    if not words:
        raise DigestSyntaxError("Which channel, and how often?")
    if words[0].lower() == "now":
        if len(words) > 2:
            raise DigestSyntaxError("`digest now` takes one channel at most.")
        return NowRequest(_channel(words[1]) if len(words) == 2 else None)
    channel_id = _channel(words[0])
    rest = words[1:]
    if not rest:
        raise DigestSyntaxError("How often: `daily` or `weekly`?")
    cadence_word = rest.pop(0).lower()
    if cadence_word not in ("daily", "weekly"):
        close = difflib.get_close_matches(cadence_word, ["daily", "weekly"], n=1, cutoff=0.6)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        raise DigestSyntaxError(f"`{_shown(cadence_word)}` is not `daily` or `weekly`.{hint}")
    cadence = Cadence(cadence_word)
    weekday, at = _options(rest, cadence)
    return ScheduleRequest(channel_id=channel_id, cadence=cadence, at=at, weekday=weekday)


def _options(rest: list[str], cadence: Cadence) -> tuple[int | None, dt.time]:
    """The day and time after `daily|weekly`, each at most once."""
    weekday: int | None = MONDAY if cadence is Cadence.WEEKLY else None
    at = DEFAULT_TIME
    seen_day = seen_time = False
    while rest:
        word = rest.pop(0)
        day = parse_weekday(word)
        if day is not None:
            if cadence is Cadence.DAILY:
                raise DigestSyntaxError(
                    f"A daily digest goes out every day; for {WEEKDAYS[day].title()}s say "
                    f"`weekly {_shown(word)}`."
                )
            if seen_day:
                raise DigestSyntaxError("Name one day: a weekly digest goes out once a week.")
            weekday, seen_day = day, True
            continue
        if word.lower() == "at":
            if not rest:
                raise DigestSyntaxError("`at` needs a time, like `at 08:00`.")
            word = rest.pop(0)
        elif not _TIME.fullmatch(word):
            close = difflib.get_close_matches(word.lower(), [*WEEKDAYS, "at"], n=1, cutoff=0.6)
            hint = f" Did you mean `{close[0]}`?" if close else ""
            raise DigestSyntaxError(f"`{_shown(word)}` is not a day or `at HH:MM`.{hint}")
        if seen_time:
            raise DigestSyntaxError("Give one time.")
        at, seen_time = parse_time(word), True
    return weekday, at
