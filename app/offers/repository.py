"""All SQL for offers. Every query is scoped by the caller's `organisation_id`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from geoalchemy2 import Geography
from sqlalchemy import (
    ColumnElement,
    Float,
    Select,
    and_,
    cast,
    func,
    null,
    or_,
    select,
    tuple_,
    union,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app.core.near import NearPoint
from app.core.pagination import PageParams
from app.geofences.models import Geofence
from app.geofences.predicates import active_at
from app.offers import predicates
from app.offers.models import Offer, OfferGeofence, OfferRedemption

_OFFERS = Offer.__table__

_Sel = TypeVar("_Sel", bound=Select[*tuple[Any, ...]])


def _with_links(stmt: _Sel) -> _Sel:
    return stmt.options(selectinload(Offer.geofence_links))


async def add(session: AsyncSession, row: Offer | OfferRedemption) -> None:
    session.add(row)
    await session.flush()


async def get_offer(
    session: AsyncSession, organisation_id: uuid.UUID, offer_id: uuid.UUID, *, lock: bool = False
) -> Offer | None:
    stmt = _with_links(
        select(Offer).where(
            Offer.id == offer_id,
            Offer.organisation_id == organisation_id,
            Offer.deleted_at.is_(None),
        )
    )
    if lock:
        # Serialises redemptions of one offer so per-person and total caps hold under concurrency.
        stmt = stmt.with_for_update(of=Offer)
    return (await session.execute(stmt)).scalar_one_or_none()


async def reload(session: AsyncSession, offer: Offer) -> Offer:
    stmt = _with_links(select(Offer).where(Offer.id == offer.id)).execution_options(
        populate_existing=True
    )
    return (await session.execute(stmt)).scalar_one()


async def live_geofence_ids(
    session: AsyncSession, organisation_id: uuid.UUID, ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    """Those of `ids` that are places of this organisation and not deleted."""
    if not ids:
        return set()
    stmt = select(Geofence.id).where(
        Geofence.id.in_(list(ids)),
        Geofence.organisation_id == organisation_id,
        Geofence.deleted_at.is_(None),
    )
    return set((await session.execute(stmt)).scalars())


async def get_geofence(
    session: AsyncSession, organisation_id: uuid.UUID, geofence_id: uuid.UUID
) -> Geofence | None:
    stmt = select(Geofence).where(
        Geofence.id == geofence_id,
        Geofence.organisation_id == organisation_id,
        Geofence.deleted_at.is_(None),
    )
    return (await session.execute(stmt)).scalar_one_or_none()


def _offer_ids_at_place(
    organisation_id: uuid.UUID, geofence_id: uuid.UUID, category: str
) -> ColumnElement[bool]:
    """Offers listed for the place or for its category, as a union of two index lookups."""
    ids = union(
        select(OfferGeofence.offer_id).where(OfferGeofence.geofence_id == geofence_id),
        select(Offer.id).where(
            Offer.organisation_id == organisation_id, Offer.category == category
        ),
    )
    return Offer.id.in_(ids)


def _not_exhausted() -> ColumnElement[bool]:
    used = (
        select(func.count())
        .select_from(OfferRedemption)
        .where(OfferRedemption.offer_id == Offer.id)
        .scalar_subquery()
    )
    return or_(Offer.max_total.is_(None), used < Offer.max_total)


def _live(organisation_id: uuid.UUID, audiences: Sequence[str]) -> list[ColumnElement[bool]]:
    return [
        Offer.organisation_id == organisation_id,
        predicates.standing(_OFFERS),
        Offer.audience.in_(list(audiences)),
        _not_exhausted(),
    ]


async def matching_offers(
    session: AsyncSession,
    *,
    organisation_id: uuid.UUID,
    geofence_id: uuid.UUID,
    category: str,
    trigger: str,
    at: datetime,
    audiences: Sequence[str],
    place_open: bool,
) -> list[Offer]:
    stmt = select(Offer).where(
        *_live(organisation_id, audiences),
        _offer_ids_at_place(organisation_id, geofence_id, category),
        Offer.triggers.contains([trigger]),
        predicates.valid_at(_OFFERS, at),
        predicates.in_daily_window(_OFFERS, at),
    )
    if not place_open:
        stmt = stmt.where(Offer.outside_opening_hours_ok.is_(True))
    stmt = _with_links(stmt.order_by(Offer.created_at, Offer.id))
    return list((await session.execute(stmt)).scalars())


async def public_offers_near(
    session: AsyncSession,
    *,
    organisation_id: uuid.UUID,
    audiences: Sequence[str],
    at: datetime,
    limit: int,
    geofence_id: uuid.UUID | None = None,
    near: NearPoint | None = None,
    within_m: float = 0.0,
) -> list[tuple[Offer, float | None]]:
    """Live offers at one place, or at the places within `within_m` of a point, nearest first."""
    place_filter: list[ColumnElement[bool]] = [
        Geofence.organisation_id == organisation_id,
        Geofence.deleted_at.is_(None),
        active_at(Geofence.active_from, Geofence.active_until, at),
    ]
    if geofence_id is not None:
        place_filter.append(Geofence.id == geofence_id)
    if near is not None:
        point = cast(func.ST_SetSRID(func.ST_MakePoint(near.lon, near.lat), 4326), Geography)
        distance: ColumnElement[Any] = func.ST_Distance(Geofence.geog, point)
        place_filter.append(func.ST_DWithin(Geofence.geog, point, within_m))
    else:
        distance = cast(null(), Float)
    # Materialised so each nearby place's distance is computed once, not once per joined offer.
    places = (
        select(
            Geofence.id.label("id"),
            Geofence.category.label("category"),
            distance.label("distance_m"),
        )
        .where(*place_filter)
        .cte("places")
        .prefix_with("MATERIALIZED")
    )
    categories = (
        select(places.c.category, func.min(places.c.distance_m).label("distance_m"))
        .group_by(places.c.category)
        .subquery()
    )
    # Two index-friendly joins instead of one OR-join: offers linked to a nearby place, and
    # category offers whose category is that of a nearby place.
    linked = select(OfferGeofence.offer_id.label("offer_id"), places.c.distance_m).join(
        places, OfferGeofence.geofence_id == places.c.id
    )
    by_category = select(Offer.id.label("offer_id"), categories.c.distance_m).join(
        categories,
        and_(Offer.organisation_id == organisation_id, Offer.category == categories.c.category),
    )
    candidates = union_all(linked, by_category).subquery()
    nearest = func.min(candidates.c.distance_m)
    stmt = _with_links(
        select(Offer, nearest)
        .join(candidates, candidates.c.offer_id == Offer.id)
        .where(*_live(organisation_id, audiences), predicates.valid_at(_OFFERS, at))
        .group_by(Offer.id)
        .order_by(nearest.asc().nulls_last(), Offer.created_at, Offer.id)
        .limit(limit)
    )
    rows = (await session.execute(stmt)).all()
    return [(row[0], None if row[1] is None else float(row[1])) for row in rows]


async def list_offers(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    page: PageParams,
    *,
    status: str | None = None,
    category: str | None = None,
    geofence: Geofence | None = None,
    audience: str | None = None,
) -> list[Offer]:
    stmt = select(Offer).where(Offer.organisation_id == organisation_id, Offer.deleted_at.is_(None))
    if status is not None:
        stmt = stmt.where(Offer.status == status)
    if category is not None:
        stmt = stmt.where(Offer.category == category)
    if audience is not None:
        stmt = stmt.where(Offer.audience == audience)
    if geofence is not None:
        stmt = stmt.where(predicates.applies_at_place(_OFFERS, geofence.id, geofence.category))
    if page.cursor is not None:
        stmt = stmt.where(
            tuple_(Offer.created_at, Offer.id) > (page.cursor.created_at, page.cursor.id)
        )
    stmt = _with_links(stmt.order_by(Offer.created_at, Offer.id).limit(page.limit + 1))
    return list((await session.execute(stmt)).scalars())


async def redemption_by_code(
    session: AsyncSession, organisation_id: uuid.UUID, code: str, *, lock: bool = False
) -> OfferRedemption | None:
    stmt = select(OfferRedemption).where(
        OfferRedemption.organisation_id == organisation_id, OfferRedemption.code == code
    )
    if lock:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def count_redemptions(
    session: AsyncSession, offer_id: uuid.UUID, device_id: uuid.UUID | None = None
) -> int:
    stmt = (
        select(func.count())
        .select_from(OfferRedemption)
        .where(OfferRedemption.offer_id == offer_id)
    )
    if device_id is not None:
        stmt = stmt.where(OfferRedemption.device_id == device_id)
    return int((await session.execute(stmt)).scalar_one())


async def redemption_stats(session: AsyncSession, offer_id: uuid.UUID) -> tuple[int, int]:
    stmt = select(func.count(), func.count(func.distinct(OfferRedemption.device_id))).where(
        OfferRedemption.offer_id == offer_id
    )
    total, people = (await session.execute(stmt)).one()
    return int(total), int(people)


async def offer_titled(session: AsyncSession, organisation_id: uuid.UUID, title: str) -> bool:
    stmt = select(Offer.id).where(
        Offer.organisation_id == organisation_id, Offer.title == title, Offer.deleted_at.is_(None)
    )
    return (await session.execute(stmt.limit(1))).scalar_one_or_none() is not None
