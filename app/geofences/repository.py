"""All SQL for geofences. Every query is scoped by `organisation_id` and skips soft-deleted rows."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from geoalchemy2 import Geography
from sqlalchemy import (
    ColumnElement,
    and_,
    cast,
    func,
    literal_column,
    not_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import driver_connection, render_sql
from app.core.pagination import PageParams
from app.geofences import predicates
from app.geofences.models import Geofence


@dataclass(frozen=True)
class ListFilters:
    bbox: tuple[float, float, float, float] | None = None
    near: tuple[float, float] | None = None
    within_m: float | None = None
    category: str | None = None
    tag: str | None = None
    active: bool | None = None
    at: datetime | None = None


def _live(organisation_id: uuid.UUID) -> ColumnElement[bool]:
    return and_(Geofence.organisation_id == organisation_id, Geofence.deleted_at.is_(None))


def active_at(at: datetime | ColumnElement[datetime]) -> ColumnElement[bool]:
    return predicates.active_at(Geofence.active_from, Geofence.active_until, at)


def _point(lon: float, lat: float) -> ColumnElement[bytes]:
    return func.ST_SetSRID(func.ST_MakePoint(lon, lat), 4326)


async def add(session: AsyncSession, row: Geofence) -> Geofence:
    session.add(row)
    await session.flush()
    return row


async def get(
    session: AsyncSession, organisation_id: uuid.UUID, geofence_id: uuid.UUID
) -> Geofence | None:
    stmt = select(Geofence).where(_live(organisation_id), Geofence.id == geofence_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def external_id_taken(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    external_id: str,
    exclude_id: uuid.UUID | None = None,
) -> bool:
    stmt = select(Geofence.id).where(_live(organisation_id), Geofence.external_id == external_id)
    if exclude_id is not None:
        stmt = stmt.where(Geofence.id != exclude_id)
    return (await session.execute(stmt.limit(1))).first() is not None


async def count_live(session: AsyncSession, organisation_id: uuid.UUID) -> int:
    """Live (not deleted) places of one organisation."""
    stmt = (
        select(func.count())
        .select_from(Geofence)
        .where(Geofence.organisation_id == organisation_id, Geofence.deleted_at.is_(None))
    )
    return int((await session.execute(stmt)).scalar_one())


async def by_external_ids(
    session: AsyncSession, organisation_id: uuid.UUID, external_ids: Sequence[str]
) -> dict[str, Geofence]:
    if not external_ids:
        return {}
    stmt = select(Geofence).where(
        _live(organisation_id), Geofence.external_id.in_(list(external_ids))
    )
    return {g.external_id: g for g in (await session.execute(stmt)).scalars() if g.external_id}


async def list_geofences(
    session: AsyncSession, organisation_id: uuid.UUID, page: PageParams, filters: ListFilters
) -> list[Geofence]:
    stmt = select(Geofence).where(_live(organisation_id))
    if filters.bbox is not None:
        envelope = func.ST_MakeEnvelope(*filters.bbox, 4326)
        stmt = stmt.where(func.ST_Intersects(Geofence.geom, envelope))
    if filters.near is not None and filters.within_m is not None:
        point = cast(_point(*filters.near), Geography(srid=4326))
        stmt = stmt.where(func.ST_DWithin(Geofence.geog, point, filters.within_m))
    if filters.category is not None:
        stmt = stmt.where(Geofence.category == filters.category)
    if filters.tag is not None:
        stmt = stmt.where(Geofence.tags.contains([filters.tag]))
    if filters.active is not None and filters.at is not None:
        window = active_at(filters.at)
        stmt = stmt.where(window if filters.active else not_(window))
    if page.cursor is not None:
        stmt = stmt.where(
            func.row(Geofence.created_at, Geofence.id)
            > func.row(page.cursor.created_at, page.cursor.id)
        )
    stmt = stmt.order_by(Geofence.created_at, Geofence.id).limit(page.limit + 1)
    return list((await session.execute(stmt)).scalars())


@dataclass(frozen=True)
class PlaceInfo:
    """The properties of a place that resolve answers with (never its geometry)."""

    id: uuid.UUID
    name: str
    category: str
    tags: list[str]
    trigger_distance_m: float
    opening_hours: dict[str, Any] | None


_PT = "ST_SetSRID(ST_MakePoint($1::float8, $2::float8), 4326)"
_RESOLVE_SQL = f"""
SELECT c.id, c.name, c.category, c.tags, c.trigger_distance_m, c.opening_hours,
       c.distance_m, c.inside
FROM (
    SELECT g.id, g.name, g.category, g.tags, g.trigger_distance_m, g.opening_hours,
           CASE WHEN g.radius_m IS NOT NULL
                THEN greatest(0.0, ST_Distance(g.center::geography, {_PT}::geography) - g.radius_m)
                WHEN ST_Intersects(g.geom, {_PT}) THEN 0.0
                ELSE ST_Distance(g.geog, {_PT}::geography) END AS distance_m,
           CASE WHEN g.radius_m IS NOT NULL
                THEN ST_DWithin(g.center::geography, {_PT}::geography, g.radius_m)
                ELSE ST_Intersects(g.geom, {_PT}) END AS inside
    FROM geofences g
    WHERE g.organisation_id = $3::uuid AND g.deleted_at IS NULL {{window}}
      -- planar containment (RFC 7946: edges are straight lines in lon/lat) OR the metric search;
      -- PostgreSQL answers each side from its own GiST index (BitmapOr)
      AND (ST_Intersects(g.geom, {_PT})
           OR ST_DWithin(g.geog, {_PT}::geography,
                         (SELECT coalesce(max(m.trigger_distance_m), 0.0) FROM geofences m
                          WHERE m.organisation_id = $3::uuid AND m.deleted_at IS NULL)
                         + $4::float8))
    OFFSET 0  -- a fence: each candidate's distance is computed once, not once per use
) c
WHERE c.inside OR c.distance_m <= c.trigger_distance_m + $4::float8
ORDER BY c.distance_m, c.id
"""
_G = Geofence.__table__.alias("g")
RESOLVE_SQL = {
    True: _RESOLVE_SQL.format(
        window="AND "
        + render_sql(
            predicates.active_at(
                _G.c.active_from, _G.c.active_until, literal_column("$5::timestamptz")
            )
        )
    ),
    False: _RESOLVE_SQL.format(window=""),
}


async def resolve(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    lon: float,
    lat: float,
    accuracy_m: float,
    at: datetime | None,
) -> list[tuple[PlaceInfo, float, bool]]:
    """Places containing the point or within trigger distance + accuracy, nearest first.

    One statement, on the request's asyncpg connection (prepared once per connection; outside a
    transaction unless the caller has begun one). The GiST
    index on `geog` is searched with a constant radius — the organisation's largest trigger
    distance plus the accuracy (an index-only max() on ix_geofences_org_trigger, evaluated once
    as an InitPlan) — and each candidate is then held to its own trigger distance. Circles are
    measured exactly from their centre; polygons with ST_Intersects on geometry (edges count as
    inside) and geodesic ST_Distance on geography. Only the properties the answer needs are read:
    loading the whole row shipped every candidate's polygon (and decoded it) for nothing.
    `at=None` skips the active-window filter.
    """
    driver = await driver_connection(session, transaction=False)  # a read: no BEGIN/COMMIT
    args: list[Any] = [lon, lat, organisation_id, accuracy_m]
    if at is not None:
        args.append(at)
    rows = await driver.fetch(RESOLVE_SQL[at is not None], *args)
    return [
        (PlaceInfo(r[0], r[1], r[2], list(r[3]), r[4], r[5]), float(r[6]), bool(r[7])) for r in rows
    ]


async def find_place(
    session: AsyncSession, organisation_id: uuid.UUID, external_id: str, category: str
) -> Geofence | None:
    """A live place by external id, else the oldest live place of that category (demo data)."""
    for condition in (Geofence.external_id == external_id, Geofence.category == category):
        stmt = (
            select(Geofence)
            .where(
                Geofence.organisation_id == organisation_id,
                Geofence.deleted_at.is_(None),
                condition,
            )
            .order_by(Geofence.created_at, Geofence.id)
            .limit(1)
        )
        place = (await session.execute(stmt)).scalar_one_or_none()
        if place is not None:
            return place
    return None
