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
    DateTime,
    Float,
    Select,
    Uuid,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    not_,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.pagination import PageParams
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
    return and_(
        or_(Geofence.active_from.is_(None), Geofence.active_from <= at),
        or_(Geofence.active_until.is_(None), Geofence.active_until > at),
    )


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


def _build_resolve(with_window: bool) -> Select[Any]:
    """The resolve statement, built once per variant with bound parameters.

    Built once (not per call) because constructing and cache-keying a statement of this size
    costs more Python time than PostgreSQL needs to answer it (≈ 0.3 ms at 100,000 places).
    """
    organisation_id = bindparam("org", type_=Uuid())
    accuracy_m = bindparam("acc", type_=Float())
    point = func.ST_SetSRID(
        func.ST_MakePoint(bindparam("lon", type_=Float()), bindparam("lat", type_=Float())), 4326
    )
    point_geog = cast(point, Geography(srid=4326))
    live = and_(Geofence.organisation_id == organisation_id, Geofence.deleted_at.is_(None))
    max_trigger = (
        select(func.coalesce(func.max(Geofence.trigger_distance_m), 0.0))
        .where(live)
        .scalar_subquery()
    )
    center_geog = cast(Geofence.center, Geography(srid=4326))
    inside = case(
        (
            Geofence.radius_m.is_not(None),
            func.ST_DWithin(center_geog, point_geog, Geofence.radius_m),
        ),
        else_=func.ST_Intersects(Geofence.geom, point),
    )
    distance = case(
        (
            Geofence.radius_m.is_not(None),
            func.greatest(
                literal(0.0), func.ST_Distance(center_geog, point_geog) - Geofence.radius_m
            ),
        ),
        (func.ST_Intersects(Geofence.geom, point), literal(0.0)),
        else_=func.ST_Distance(Geofence.geog, point_geog),
    )
    candidates = select(
        Geofence.id.label("id"),
        distance.label("distance_m"),
        inside.label("inside"),
    ).where(
        live,
        # Planar containment (RFC 7946: edges are straight lines in lon/lat) OR the metric
        # search; PostgreSQL answers each side from its own GiST index (BitmapOr).
        or_(
            func.ST_Intersects(Geofence.geom, point),
            func.ST_DWithin(Geofence.geog, point_geog, max_trigger + accuracy_m),
        ),
    )
    if with_window:
        candidates = candidates.where(active_at(bindparam("at", type_=DateTime(timezone=True))))
    sub = candidates.subquery()
    return (
        select(Geofence, sub.c.distance_m, sub.c.inside)
        .join(sub, sub.c.id == Geofence.id)
        .where(or_(sub.c.inside, sub.c.distance_m <= Geofence.trigger_distance_m + accuracy_m))
        .order_by(sub.c.distance_m, Geofence.id)
    )


_RESOLVE = {True: _build_resolve(True), False: _build_resolve(False)}


async def resolve(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    lon: float,
    lat: float,
    accuracy_m: float,
    at: datetime | None,
) -> list[tuple[Geofence, float, bool]]:
    """Places containing the point or within trigger distance + accuracy, nearest first.

    One statement. The GiST index on `geog` is searched with a constant radius — the
    organisation's largest trigger distance plus the accuracy (an index-only max() on
    ix_geofences_org_trigger, evaluated once as an InitPlan) — and each candidate is then held to
    its own trigger distance. Circles are measured exactly from their centre; polygons with
    ST_Intersects on geometry (edges count as inside) and geodesic ST_Distance on geography.
    `at=None` skips the active-window filter.
    """
    params: dict[str, object] = {"org": organisation_id, "lon": lon, "lat": lat, "acc": accuracy_m}
    if at is not None:
        params["at"] = at
    rows = (await session.execute(_RESOLVE[at is not None], params)).all()
    return [(row[0], float(row[1]), bool(row[2])) for row in rows]


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
