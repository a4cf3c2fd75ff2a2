"""is_open(): weekly ranges in the place's own time zone, across midnight and DST changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from app.geofences.opening_hours import is_open

LONDON: dict[str, Any] = {
    "time_zone": "Europe/London",
    "weekly": {
        "mon": [["09:00", "17:00"]],
        "fri": [["09:00", "12:30"], ["18:00", "02:00"]],  # late opening into Saturday
        "sat": [["10:00", "16:00"]],
        "sun": [["00:00", "24:00"]],
    },
    "closed_dates": ["2026-12-25", "2027-01-01"],
}


def utc(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_no_opening_hours_means_always_open() -> None:
    assert is_open(None, utc(2026, 11, 25, 3, 0))


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (utc(2026, 11, 23, 8, 59), False),  # Monday (GMT = UTC in winter)
        (utc(2026, 11, 23, 9, 0), True),  # opening minute is open
        (utc(2026, 11, 23, 16, 59), True),
        (utc(2026, 11, 23, 17, 0), False),  # closing minute is closed
        (utc(2026, 11, 24, 12, 0), False),  # Tuesday: not listed, closed
        (utc(2026, 11, 27, 13, 0), False),  # Friday lunch gap
        (utc(2026, 11, 27, 23, 30), True),  # Friday evening range
        (utc(2026, 11, 28, 1, 59), True),  # ...running past midnight into Saturday
        (utc(2026, 11, 28, 2, 0), False),
        (utc(2026, 11, 28, 9, 0), False),  # Saturday before its own opening
        (utc(2026, 11, 29, 23, 59), True),  # Sunday all day
    ],
)
def test_weekly_ranges_in_winter(at: datetime, expected: bool) -> None:
    assert is_open(LONDON, at) is expected


def test_summer_time_shifts_the_utc_instants_not_the_local_hours() -> None:
    # 2026-06-01 is a Monday; BST = UTC+1, so 09:00 local is 08:00 UTC.
    assert is_open(LONDON, utc(2026, 6, 1, 8, 0))
    assert not is_open(LONDON, utc(2026, 6, 1, 7, 59))
    assert not is_open(LONDON, utc(2026, 6, 1, 16, 0))  # 17:00 local


def test_overnight_range_across_the_autumn_clock_change() -> None:
    # Clocks go back at 02:00 BST on Sunday 2026-10-25. A Saturday 22:00–03:00 range spans it.
    hours = {"time_zone": "Europe/London", "weekly": {"sat": [["22:00", "03:00"]]}}
    assert is_open(hours, utc(2026, 10, 24, 21, 0))  # 22:00 BST Saturday
    assert is_open(hours, utc(2026, 10, 25, 0, 30))  # 01:30 BST (first pass)
    assert is_open(hours, utc(2026, 10, 25, 1, 30))  # 01:30 GMT (second pass)
    assert is_open(hours, utc(2026, 10, 25, 2, 59))  # 02:59 GMT
    assert not is_open(hours, utc(2026, 10, 25, 3, 0))  # 03:00 GMT


def test_spring_forward_gap_is_handled() -> None:
    # 2026-03-29 01:00 GMT → 02:00 BST; a Sunday 01:30–04:00 range starts inside the gap.
    hours = {"time_zone": "Europe/London", "weekly": {"sun": [["01:30", "04:00"]]}}
    assert is_open(hours, utc(2026, 3, 29, 1, 0))  # 02:00 BST
    assert not is_open(hours, utc(2026, 3, 29, 0, 59))  # 00:59 GMT
    assert not is_open(hours, utc(2026, 3, 29, 3, 0))  # 04:00 BST


def test_same_instant_differs_by_the_places_time_zone() -> None:
    nine_to_five = {"mon": [["09:00", "17:00"]]}
    at = utc(2026, 11, 23, 15, 0)  # Monday 15:00 UTC
    assert is_open({"time_zone": "Europe/London", "weekly": nine_to_five}, at)
    assert not is_open({"time_zone": "Asia/Tokyo", "weekly": nine_to_five}, at)  # 00:00 Tue
    assert is_open({"time_zone": "America/New_York", "weekly": nine_to_five}, at)  # 10:00
    # An aware datetime in any zone means the same instant.
    assert is_open(LONDON, at.astimezone(timezone(timedelta(hours=-5))))


def test_closed_dates_close_the_day_and_its_overnight_tail() -> None:
    # 2026-12-25 is a Friday: the day and the Friday-night range are closed...
    assert not is_open(LONDON, utc(2026, 12, 25, 10, 0))
    assert not is_open(LONDON, utc(2026, 12, 26, 1, 0))
    # ...but Saturday's own hours are unaffected.
    assert is_open(LONDON, utc(2026, 12, 26, 11, 0))


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        is_open(LONDON, datetime(2026, 11, 23, 10, 0))  # noqa: DTZ001
