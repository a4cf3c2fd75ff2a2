"""`near=lon,lat` query parameters, validated once for every domain that sorts by distance."""

from __future__ import annotations

import math
from dataclasses import dataclass

from app.core.errors import Unprocessable


@dataclass(frozen=True)
class NearPoint:
    lon: float
    lat: float


def parse_near(value: str, field: str = "near") -> NearPoint:
    """Parse GeoJSON-ordered `lon,lat`; NaN, infinities and out-of-range values are 422."""
    parts = value.split(",")
    if len(parts) != 2:
        raise Unprocessable(
            f"`{field}` must be `lon,lat` (two numbers, longitude first).", extra={"field": field}
        )
    try:
        lon, lat = float(parts[0]), float(parts[1])
    except ValueError as exc:
        raise Unprocessable(f"`{field}` must contain two numbers.", extra={"field": field}) from exc
    if not (math.isfinite(lon) and math.isfinite(lat)):
        raise Unprocessable(f"`{field}` must be finite numbers.", extra={"field": field})
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise Unprocessable(
            f"`{field}` is out of range: longitude must be within [-180, 180] and latitude "
            "within [-90, 90] (GeoJSON order is lon,lat).",
            extra={"field": field},
        )
    return NearPoint(round(lon, 6), round(lat, 6))
