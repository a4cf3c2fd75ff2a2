"""All SQL for check-ins, including the PostGIS resolution of a point against places."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Float, and_, func, literal, or_, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.checkins.models import CheckIn
from app.core.pagination import PageParams
from app.geofences.models import Geofence


@dataclass
class Candidate:
    geofence: Geofence
    inside: bool
    distance_m: float
    area_m2: float


def _point(lon: float, lat: float) -> Any:
    return func.ST_SetSRID(func.ST_MakePoint(lon, lat), 4326)


def _active(at: datetime) -> Any:
    return and_(
        Geofence.deleted_at.is_(None),
        or_(Geofence.active_from.is_(None), Geofence.active_from <= at),
        or_(Geofence.active_until.is_(None), Geofence.active_until > at),
    )


async def candidates(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    lon: float,
    lat: float,
    *,
    max_reach_m: float,
    at: datetime,
    geofence_id: uuid.UUID | None = None,
    limit: int = 10,
) -> list[Candidate]:
    """Places the point is in or within `max_reach_m` of, nearest first (GiST on geog)."""
    pt = _point(lon, lat)
    gpt = func.Geography(pt)
    distance = func.ST_Distance(Geofence.geog, gpt).label("distance_m")
    inside = func.ST_Intersects(Geofence.geom, pt).label("inside")
    area = func.ST_Area(Geofence.geog).label("area_m2")
    stmt = (
        select(Geofence, inside, distance, area)
        .where(Geofence.organisation_id == organisation_id, _active(at))
        .where(func.ST_DWithin(Geofence.geog, gpt, literal(max_reach_m, Float)))
        .order_by(distance, area)
        .limit(limit)
    )
    if geofence_id is not None:
        stmt = stmt.where(Geofence.id == geofence_id)
    rows = (await session.execute(stmt)).all()
    return [Candidate(r[0], bool(r[1]), float(r[2]), float(r[3])) for r in rows]


async def distance_to(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    geofence_id: uuid.UUID,
    lon: float,
    lat: float,
    at: datetime,
) -> Candidate | None:
    """One named place with the point's distance to it, or None if it is not an active place."""
    pt = _point(lon, lat)
    stmt = select(
        Geofence,
        func.ST_Intersects(Geofence.geom, pt),
        func.ST_Distance(Geofence.geog, func.Geography(pt)),
        func.ST_Area(Geofence.geog),
    ).where(Geofence.id == geofence_id, Geofence.organisation_id == organisation_id, _active(at))
    row = (await session.execute(stmt)).first()
    if row is None:
        return None
    return Candidate(row[0], bool(row[1]), float(row[2]), float(row[3]))


def _subject(device_id: uuid.UUID | None, staff_user_id: uuid.UUID | None) -> Any:
    if device_id is not None:
        return CheckIn.device_id == device_id
    return CheckIn.staff_user_id == staff_user_id


async def previous_checkin(
    session: AsyncSession,
    *,
    device_id: uuid.UUID | None,
    staff_user_id: uuid.UUID | None,
    before: datetime,
) -> CheckIn | None:
    stmt = (
        select(CheckIn)
        .where(_subject(device_id, staff_user_id), CheckIn.recorded_at <= before)
        .order_by(CheckIn.recorded_at.desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def recent_at_place(
    session: AsyncSession,
    *,
    device_id: uuid.UUID | None,
    staff_user_id: uuid.UUID | None,
    geofence_id: uuid.UUID,
    since: datetime,
) -> CheckIn | None:
    stmt = (
        select(CheckIn)
        .where(
            _subject(device_id, staff_user_id),
            CheckIn.geofence_id == geofence_id,
            CheckIn.recorded_at >= since,
        )
        .order_by(CheckIn.recorded_at.desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def add(session: AsyncSession, checkin: CheckIn) -> None:
    session.add(checkin)
    await session.flush()


async def get(
    session: AsyncSession, organisation_id: uuid.UUID, checkin_id: uuid.UUID
) -> CheckIn | None:
    stmt = select(CheckIn).where(
        CheckIn.id == checkin_id, CheckIn.organisation_id == organisation_id
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_for_subject(
    session: AsyncSession,
    *,
    device_id: uuid.UUID | None,
    staff_user_id: uuid.UUID | None,
    page: PageParams,
) -> list[CheckIn]:
    stmt = select(CheckIn).where(_subject(device_id, staff_user_id))
    if page.cursor is not None:
        stmt = stmt.where(
            tuple_(CheckIn.created_at, CheckIn.id) < (page.cursor.created_at, page.cursor.id)
        )
    stmt = stmt.order_by(CheckIn.created_at.desc(), CheckIn.id.desc()).limit(page.limit + 1)
    return list((await session.execute(stmt)).scalars())


async def stats(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    geofence_id: uuid.UUID,
    *,
    bucket: str,
    since: datetime,
    until: datetime,
    tz: str,
) -> list[tuple[datetime, int, int, int, int]]:
    """Per bucket: (start, resident check-ins, distinct residents, staff check-ins, distinct
    staff)."""
    local = func.timezone(tz, CheckIn.recorded_at)
    start = func.timezone(tz, func.date_trunc(bucket, local)).label("bucket")
    stmt = (
        select(
            start,
            func.count(CheckIn.device_id),
            func.count(func.distinct(CheckIn.device_id)),
            func.count(CheckIn.staff_user_id),
            func.count(func.distinct(CheckIn.staff_user_id)),
        )
        .where(
            CheckIn.organisation_id == organisation_id,
            CheckIn.geofence_id == geofence_id,
            CheckIn.recorded_at >= since,
            CheckIn.recorded_at < until,
        )
        .group_by(start)
        .order_by(start)
    )
    live = {r[0]: [r[1], r[2], r[3], r[4]] for r in (await session.execute(stmt)).all()}
    # Check-ins past their identifiable period survive as hourly counts (privacy purge). An hour
    # is either aggregated or not, so adding is exact for hour buckets; for day buckets the
    # busiest hour's people is used (a lower bound: suppression stays on the safe side).
    aggregated = await session.execute(
        text(
            "SELECT timezone(:tz, date_trunc(:bucket, timezone(:tz, hour))) AS b, "
            "sum(checkins) FILTER (WHERE subject_kind = 'device'), "
            "max(people) FILTER (WHERE subject_kind = 'device'), "
            "sum(checkins) FILTER (WHERE subject_kind = 'staff'), "
            "max(people) FILTER (WHERE subject_kind = 'staff') "
            "FROM checkin_counts WHERE organisation_id = :o AND geofence_id = :g "
            "AND hour >= :since AND hour < :until GROUP BY 1"
        ),
        {"tz": tz, "bucket": bucket, "o": organisation_id, "g": geofence_id}
        | {"since": since, "until": until},
    )
    for b, *counts in aggregated.all():
        row = live.setdefault(b, [0, 0, 0, 0])
        for i, value in enumerate(counts):
            row[i] += int(value or 0)
    return [(b, r[0], r[1], r[2], r[3]) for b, r in sorted(live.items())]


async def regulars(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    geofence_id: uuid.UUID,
    *,
    since: datetime,
    min_checkins: int,
) -> list[tuple[uuid.UUID | None, int]]:
    """Devices with at least `min_checkins` check-ins at the place since `since`, most first."""
    n = func.count().label("n")
    stmt = (
        select(CheckIn.device_id, n)
        .where(
            CheckIn.organisation_id == organisation_id,
            CheckIn.geofence_id == geofence_id,
            CheckIn.device_id.is_not(None),
            CheckIn.recorded_at >= since,
        )
        .group_by(CheckIn.device_id)
        .having(func.count() >= min_checkins)
        .order_by(n.desc())
    )
    return [(r[0], int(r[1])) for r in (await session.execute(stmt)).all()]
