"""Test places built directly as rows, with shapes laid out in metres around a reference point."""

from __future__ import annotations

import math
import uuid
from typing import Any

from geoalchemy2.elements import WKTElement
from sqlalchemy.ext.asyncio import AsyncSession

from app.geofences.models import Geofence

# Brighton Jubilee Library, roughly
REF_LON, REF_LAT = -0.1390, 50.8240
M_PER_DEG_LAT = 111_320.0


def offset(
    dx_m: float, dy_m: float, lon: float = REF_LON, lat: float = REF_LAT
) -> tuple[float, float]:
    """The point dx metres east and dy metres north of (lon, lat) (small-distance approximation)."""
    return (
        lon + dx_m / (M_PER_DEG_LAT * math.cos(math.radians(lat))),
        lat + dy_m / M_PER_DEG_LAT,
    )


def square_ring(cx_m: float, cy_m: float, half_m: float) -> list[tuple[float, float]]:
    pts = [(-half_m, -half_m), (half_m, -half_m), (half_m, half_m), (-half_m, half_m)]
    ring = [offset(cx_m + x, cy_m + y) for x, y in pts]
    return [*ring, ring[0]]


def _wkt_ring(ring: list[tuple[float, float]]) -> str:
    return "(" + ", ".join(f"{x:.9f} {y:.9f}" for x, y in ring) + ")"


async def add_square(
    db: AsyncSession,
    organisation_id: uuid.UUID,
    *,
    name: str = "Library",
    cx_m: float = 0,
    cy_m: float = 0,
    half_m: float = 20,
    hole_half_m: float | None = None,
    category: str = "library",
    trigger_distance_m: float = 50,
    **kwargs: Any,
) -> Geofence:
    rings = [_wkt_ring(square_ring(cx_m, cy_m, half_m))]
    if hole_half_m:
        rings.append(_wkt_ring(list(reversed(square_ring(cx_m, cy_m, hole_half_m)))))
    geofence = Geofence(
        organisation_id=organisation_id,
        name=name,
        category=category,
        shape_kind="polygon",
        geom=WKTElement(f"POLYGON({', '.join(rings)})", srid=4326),
        trigger_distance_m=trigger_distance_m,
        dwell_s=300,
        tags=[],
        extra_metadata={},
        **kwargs,
    )
    db.add(geofence)
    await db.flush()
    return geofence
