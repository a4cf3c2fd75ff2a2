"""Time windows: a person's effective preferences, quiet hours, shifts and the local day.

Pure functions of the preferences and a moment; no database. Used by the decisions, the
preferences API and broadcasts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from app.core.config import Settings
from app.rules import repository
from app.rules.models import NotificationPreference


def _hhmm(value: str) -> time:
    hh, mm = value.split(":")
    return time(int(hh), int(mm))


@dataclass(frozen=True)
class Prefs:
    time_zone: str
    quiet_start: time | None
    quiet_end: time | None
    opted_out: frozenset[str]
    max_per_day: int | None
    shift_start: time | None = None
    shift_end: time | None = None
    shift_days: tuple[int, ...] | None = None

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


def effective_prefs(
    settings: Settings,
    kind: str,
    row: NotificationPreference | repository.StoredPrefs | None,
) -> Prefs:
    """The stored preferences, or the defaults (residents: quiet 21-08 and 3 a day; staff:
    no quiet hours, no budget — field workers follow their shift)."""
    if row is None:
        if kind == "device":
            return Prefs(
                time_zone=settings.rules_default_time_zone,
                quiet_start=_hhmm(settings.rules_default_quiet_start),
                quiet_end=_hhmm(settings.rules_default_quiet_end),
                opted_out=frozenset(),
                max_per_day=settings.rules_default_max_per_day,
            )
        return Prefs(settings.rules_default_time_zone, None, None, frozenset(), None)
    return Prefs(
        time_zone=row.time_zone,
        quiet_start=row.quiet_start,
        quiet_end=row.quiet_end,
        opted_out=frozenset(row.opted_out_categories or []),
        max_per_day=row.max_per_day,
        shift_start=row.shift_start,
        shift_end=row.shift_end,
        shift_days=tuple(row.shift_days) if row.shift_days else None,
    )


def _in_window(local: time, start: time, end: time) -> bool:
    if start == end:
        return False
    if start < end:
        return start <= local < end
    return local >= start or local < end


def quiet_until(prefs: Prefs, now: datetime) -> datetime | None:
    """When the quiet hours covering `now` end (aware UTC), or None if not quiet now."""
    if prefs.quiet_start is None or prefs.quiet_end is None:
        return None
    local = now.astimezone(prefs.tz)
    if not _in_window(local.time(), prefs.quiet_start, prefs.quiet_end):
        return None
    end_day = local.date()
    if local.time() >= prefs.quiet_end:
        end_day += timedelta(days=1)
    end = datetime.combine(end_day, prefs.quiet_end, tzinfo=prefs.tz)
    return end.astimezone(UTC)


def on_shift(prefs: Prefs, now: datetime) -> bool:
    """No shift set = always on shift; else the local window on the listed weekdays."""
    if prefs.shift_start is None or prefs.shift_end is None:
        return True
    local = now.astimezone(prefs.tz)
    day = local.isoweekday()
    if prefs.shift_start > prefs.shift_end and local.time() < prefs.shift_end:
        day = (local - timedelta(days=1)).isoweekday()  # the shift began yesterday
    if prefs.shift_days is not None and day not in prefs.shift_days:
        return False
    return _in_window(local.time(), prefs.shift_start, prefs.shift_end)


def day_start(prefs: Prefs, now: datetime) -> datetime:
    local = now.astimezone(prefs.tz)
    return datetime.combine(local.date(), time(0), tzinfo=prefs.tz).astimezone(UTC)
