"""Opening hours: a weekly schedule in the place's own IANA time zone, plus closed dates.

Stored as JSON (validated by `schemas.OpeningHours`):

    {"time_zone": "Europe/London",
     "weekly": {"mon": [["09:00", "17:00"]], "fri": [["09:00", "12:30"], ["18:00", "02:00"]]},
     "closed_dates": ["2026-12-25"]}

A range whose end is not after its start runs past midnight into the next day ("18:00"–"02:00"
is Friday 18:00 to Saturday 02:00); "24:00" means end of day. Days not listed are closed. A closed
date closes the ranges that *start* on that date (its overnight tail included). Times are compared
on the local wall clock after converting the instant with zoneinfo, so DST changes need no special
casing: "09:00" is 09:00 local on both sides of a clock change.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_hhmm(value: str) -> int:
    """'HH:MM' → minutes since midnight (0–1440; '24:00' allowed as an end)."""
    hours, minutes = value.split(":")
    if len(hours) != 2 or len(minutes) != 2:
        raise ValueError(f"{value!r} is not HH:MM")
    total = int(hours) * 60 + int(minutes)
    if not 0 <= int(minutes) < 60 or not 0 <= total <= 1440:
        raise ValueError(f"{value!r} is not a time of day")
    return total


def _ranges(weekly: dict[str, Any], day: date) -> list[tuple[int, int]]:
    return [(parse_hhmm(a), parse_hhmm(b)) for a, b in weekly.get(DAYS[day.weekday()], [])]


def is_open(opening_hours: dict[str, Any] | None, at: datetime) -> bool:
    """Whether the place is open at the instant `at` (timezone-aware). None means always open."""
    if opening_hours is None:
        return True
    if at.tzinfo is None:
        raise ValueError("is_open needs a timezone-aware datetime")
    local = at.astimezone(ZoneInfo(opening_hours["time_zone"]))
    weekly: dict[str, Any] = opening_hours.get("weekly") or {}
    closed = {date.fromisoformat(d) for d in opening_hours.get("closed_dates") or []}
    today = local.date()
    minute = local.hour * 60 + local.minute + local.second / 60
    if today not in closed:
        for start, end in _ranges(weekly, today):
            if start < end and start <= minute < end:
                return True
            if end <= start and minute >= start:  # overnight range, evening part
                return True
    yesterday = today - timedelta(days=1)
    if yesterday not in closed:
        for start, end in _ranges(weekly, yesterday):
            if end <= start and minute < end:  # overnight range from yesterday, morning part
                return True
    return False


def local_time(opening_hours: dict[str, Any], at: datetime) -> time:
    """The wall-clock time at the place (for explanations)."""
    return at.astimezone(ZoneInfo(opening_hours["time_zone"])).timetz()
