"""The implied-speed jump check between two position fixes, shared by check-ins and presence.

A fix is an implausible jump from the previous one when the distance left after giving both
fixes their accuracy, max(0, distance - both accuracies), was covered faster than a limit.
No time between the fixes (or time running backwards) with any distance left is infinitely fast;
no distance left is never a jump, whatever the time.

Check-ins (`app/checkins/service.py`) and pings (`app/presence/engine.py`) call this one function;
each keeps its own explanation keys (`previous_recorded_at` for a check-in's previous fix,
`previous_fix_at` for a ping's), built from the numbers returned here.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import NamedTuple, Protocol

from app.core.geo import haversine_m


class TimedPosition(Protocol):
    """A previous fix: where, how accurate, and when."""

    @property
    def lon(self) -> float: ...

    @property
    def lat(self) -> float: ...

    @property
    def accuracy_m(self) -> float: ...

    @property
    def recorded_at(self) -> datetime: ...


class Jump(NamedTuple):
    """The figures of an implausible jump (made only when one is found: the hot path of pings)."""

    distance_m: float  # great-circle distance between the fixes, before the accuracies
    seconds: float  # from the previous fix to this one (<= 0 when not later)
    speed_mps: float  # distance left after both accuracies / seconds; inf when seconds <= 0

    @property
    def reported_speed_mps(self) -> float | None:
        """The implied speed as explanations show it: 0.1 m/s, None for infinitely fast."""
        return round(self.speed_mps, 1) if math.isfinite(self.speed_mps) else None


def implausible_jump(
    prev: TimedPosition,
    lon: float,
    lat: float,
    accuracy_m: float,
    at: datetime,
    max_speed_mps: float,
) -> Jump | None:
    """The jump from `prev` to the fix (lon, lat, accuracy_m, at), or None when plausible."""
    dist = haversine_m(prev.lon, prev.lat, lon, lat)
    slack = max(0.0, dist - prev.accuracy_m - accuracy_m)
    if slack <= 0:
        return None
    dt = (at - prev.recorded_at).total_seconds()
    speed = slack / dt if dt > 0 else math.inf
    if speed <= max_speed_mps:
        return None
    return Jump(dist, dt, speed)
