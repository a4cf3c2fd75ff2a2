"""Test helpers for pings: places created directly via the ORM, tracks in local metres."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from geoalchemy2 import Geography, Geometry
from sqlalchemy import cast, func, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.geofences.models import Geofence
from app.presence import service

# A town centre somewhere in England; tracks are built in metres east/north of it.
ORIGIN = (-1.5491, 53.8008)
M_PER_DEG_LAT = 111_320.0


def at(east_m: float, north_m: float, origin: tuple[float, float] = ORIGIN) -> tuple[float, float]:
    lon0, lat0 = origin
    lat = lat0 + north_m / M_PER_DEG_LAT
    lon = lon0 + east_m / (M_PER_DEG_LAT * math.cos(math.radians(lat0)))
    return (lon, lat)


async def create_circle(
    db: AsyncSession,
    organisation_id: uuid.UUID,
    east_m: float,
    north_m: float,
    radius_m: float,
    *,
    name: str = "Central Library",
    category: str = "library",
    trigger_distance_m: float = 50.0,
    dwell_s: int = 300,
    active_from: datetime | None = None,
    active_until: datetime | None = None,
) -> uuid.UUID:
    lon, lat = at(east_m, north_m)
    centre = func.ST_SetSRID(func.ST_MakePoint(lon, lat), 4326)
    g = Geofence(
        organisation_id=organisation_id,
        name=name,
        category=category,
        shape_kind="circle",
        radius_m=radius_m,
        center=centre,
        geom=cast(func.ST_Buffer(cast(centre, Geography), radius_m, "quad_segs=16"), Geometry),
        trigger_distance_m=trigger_distance_m,
        dwell_s=dwell_s,
        active_from=active_from,
        active_until=active_until,
    )
    db.add(g)
    await db.flush()
    return g.id


async def create_rectangle(
    db: AsyncSession,
    organisation_id: uuid.UUID,
    west_m: float,
    south_m: float,
    east_m: float,
    north_m: float,
    *,
    name: str = "Park",
    category: str = "park",
    trigger_distance_m: float = 30.0,
    dwell_s: int = 300,
) -> uuid.UUID:
    corners = [at(west_m, south_m), at(east_m, south_m), at(east_m, north_m), at(west_m, north_m)]
    ring = ", ".join(f"{lon} {lat}" for lon, lat in [*corners, corners[0]])
    g = Geofence(
        organisation_id=organisation_id,
        name=name,
        category=category,
        shape_kind="polygon",
        geom=func.ST_GeomFromText(f"POLYGON(({ring}))", 4326),
        trigger_distance_m=trigger_distance_m,
        dwell_s=dwell_s,
    )
    db.add(g)
    await db.flush()
    return g.id


T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


@dataclass
class P:
    """A fix in local metres; `ping()` turns it into the JSON a phone sends."""

    id: str
    east: float
    north: float
    t: datetime
    acc: float | None = 10.0
    speed: float | None = None  # the phone's own (Doppler) speed, m/s, if it reports one

    def ping(self) -> dict[str, Any]:
        lon, lat = at(self.east, self.north)
        out: dict[str, Any] = {
            "id": self.id,
            "lon": lon,
            "lat": lat,
            "recorded_at": self.t.isoformat(),
        }
        if self.acc is not None:
            out["accuracy_m"] = self.acc
        if self.speed is not None:
            out["speed_mps"] = self.speed
        return out


async def send(
    client: httpx.AsyncClient, headers: dict[str, str], pings: list[dict[str, Any]]
) -> dict[str, Any]:
    r = await client.post("/v1/pings?mode=sync", json={"pings": pings}, headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def seq(events: list[dict[str, Any]], names: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """Events as (type, place) pairs, in the order returned."""
    names = names or {}
    return [(e["type"], names.get(e["geofence_id"], e["geofence_id"])) for e in events]


async def remove_committed(
    engine: AsyncEngine, org_id: uuid.UUID, subjects: list[uuid.UUID]
) -> None:
    """What a test committed: its subjects' presence data (pings have no foreign key to their
    subject), then its organisation, which takes every other row of it along."""
    async with AsyncSession(engine) as s, s.begin():
        for sid in subjects:
            await service.erase_subject(s, sid)
        await s.execute(text("DELETE FROM organisations WHERE id = :o"), {"o": org_id})
