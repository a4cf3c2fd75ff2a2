"""All SQL of the ingest domain: ingest keys, waypoint anchors, and the places near a fix.

`nearest_places` reads the geofences table (read only, scoped by organisation, live places active
now by `app.geofences.predicates.active_at`) because the OwnTracks answer needs each place as a
circle, which no geofence query returns.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, literal_column, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import render_sql
from app.core.subject import SubjectRef
from app.geofences import predicates
from app.geofences.models import Geofence
from app.ingest.models import IngestKey, WaypointAnchor


async def add_key(session: AsyncSession, key: IngestKey) -> IngestKey:
    session.add(key)
    await session.flush()
    return key


async def key_by_hash(session: AsyncSession, key_hash: str) -> IngestKey | None:
    stmt = select(IngestKey).where(IngestKey.key_hash == key_hash)
    return (await session.execute(stmt)).scalar_one_or_none()


async def keys_of(session: AsyncSession, subject_id: uuid.UUID) -> list[IngestKey]:
    stmt = (
        select(IngestKey)
        .where((IngestKey.device_id == subject_id) | (IngestKey.staff_user_id == subject_id))
        .order_by(IngestKey.created_at.desc(), IngestKey.id)
    )
    return list((await session.scalars(stmt)).all())


async def delete_key(session: AsyncSession, subject_id: uuid.UUID, key_id: uuid.UUID) -> str | None:
    """Delete one of the subject's keys; its hash, or None if it has no such key."""
    stmt = (
        delete(IngestKey)
        .where(
            IngestKey.id == key_id,
            (IngestKey.device_id == subject_id) | (IngestKey.staff_user_id == subject_id),
        )
        .returning(IngestKey.key_hash)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def anchor_of(session: AsyncSession, subject_id: uuid.UUID) -> WaypointAnchor | None:
    stmt = select(WaypointAnchor).where(WaypointAnchor.subject_id == subject_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def set_anchor(
    session: AsyncSession, subject: SubjectRef, *, lon: float, lat: float, at: datetime
) -> None:
    stmt = insert(WaypointAnchor).values(
        subject_id=subject.id, **subject.owner_columns(), lon=lon, lat=lat, sent_at=at
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[WaypointAnchor.subject_id],
        set_={"lon": lon, "lat": lat, "sent_at": at},
    )
    await session.execute(stmt)


@dataclass(frozen=True)
class PlaceCircle:
    id: uuid.UUID
    name: str
    lon: float
    lat: float
    radius_m: float  # the shape's reach: its radius (or furthest vertex) plus trigger distance
    distance_m: float


_G = Geofence.__table__.alias("g")
_NEAREST_SQL = text(
    """
WITH p AS (SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) AS pt)
SELECT n.id, n.name, ST_X(n.c) AS lon, ST_Y(n.c) AS lat,
       n.trigger_distance_m + CASE
           WHEN n.radius_m IS NOT NULL THEN n.radius_m
           ELSE (SELECT coalesce(max(ST_Distance(n.c::geography, d.geom::geography)), 0.0)
                 FROM ST_DumpPoints(n.geom) AS d) END AS radius_m,
       n.distance_m
FROM (
    SELECT g.id, g.name, g.radius_m, g.trigger_distance_m, g.geom,
           coalesce(g.center, ST_PointOnSurface(g.geom)) AS c,
           ST_Distance(g.geog, (SELECT pt FROM p)::geography) AS distance_m
    FROM geofences g
    WHERE g.organisation_id = :org AND g.deleted_at IS NULL
      AND {active}
    -- the distance alone, no tie-break: `, g.id` here stops PostgreSQL walking the GiST index
    -- in distance order and makes it compute every place's distance (a seq scan); the outer
    -- ORDER BY makes the answer's order stable
    ORDER BY g.geog <-> (SELECT pt FROM p)::geography
    LIMIT :limit
) n
ORDER BY n.distance_m, n.id
""".format(
        active=render_sql(
            predicates.active_at(_G.c.active_from, _G.c.active_until, literal_column(":at")), _G
        )
    )
)


async def nearest_places(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    lon: float,
    lat: float,
    at: datetime,
    limit: int,
) -> list[PlaceCircle]:
    """The organisation's `limit` live, active places nearest the point (GiST KNN on `geog`)."""
    rows = await session.execute(
        _NEAREST_SQL, {"lon": lon, "lat": lat, "org": organisation_id, "at": at, "limit": limit}
    )
    return [
        PlaceCircle(r.id, r.name, float(r.lon), float(r.lat), float(r.radius_m), r.distance_m)
        for r in rows
    ]
