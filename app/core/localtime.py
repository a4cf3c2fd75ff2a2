"""Times in words for people: a push's "due to end at 15:30 BST", in the organisation's zone.

Times are stored and computed in UTC; only text meant for a person is local. The zone is the
organisation's own (`organisations.time_zone`, set with `hereabouts organisations time-zone`),
else the deployment's `HEREABOUTS_TIME_ZONE` (default UTC): `accounts.service.local_zone`. The
zone's abbreviation is always shown, so a time is never ambiguous (the repeated hour when clocks
go back reads 01:30 BST, then 01:30 GMT).
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def known_zone(name: str) -> bool:
    """Whether `name` is an IANA time zone this machine knows (e.g. Europe/London, UTC)."""
    if not name or name != name.strip():
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def clock(at: datetime, zone: ZoneInfo) -> str:
    """`at` (aware) as the wall-clock time in `zone` with its abbreviation: '15:30 BST'."""
    return at.astimezone(zone).strftime("%H:%M %Z")
