"""Offer rules: where and when an offer applies, who may see it, and redemption caps.

Services flush, never commit. The notification rules (enter/dwell/nearby) and check-ins call
`matching_offers` / `offers_for_checkin`; per-person cooldowns and sent counts belong to them.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.near import NearPoint
from app.core.pagination import PageParams, trim_page
from app.core.subject import SubjectRef
from app.events import service as events_service
from app.events.types import Event, EventType, Source
from app.geofences.models import Geofence
from app.notifications import service as notifications_service
from app.offers import repository
from app.offers.errors import (
    CodeNotFound,
    CodeUsed,
    InvalidOffer,
    OfferEnded,
    OfferExhausted,
    OfferNotAvailable,
    OfferNotFound,
    RedemptionLimitReached,
    UnknownGeofence,
)
from app.offers.models import Audience, Offer, OfferGeofence, OfferRedemption, OfferStatus, Trigger
from app.offers.schemas import OfferCreate, OfferStats, OfferUpdate, TimeWindow

NEAR_DEFAULT_M = 500.0
NEAR_MAX_M = 5000.0


def audiences_for(audience: str) -> list[str]:
    """An offer for `all` reaches residents and staff; `residents`/`staff` only that group."""
    if audience == Audience.all.value:
        return [Audience.residents.value, Audience.staff.value, Audience.all.value]
    return [audience, Audience.all.value]


async def matching_offers(
    session: AsyncSession,
    *,
    organisation_id: uuid.UUID,
    geofence: Geofence,
    trigger: str,
    at: datetime,
    audience: str,
    place_open: bool,
) -> list[Offer]:
    """Active offers for this place (listed or by category) and trigger, live at `at`.

    Checks status, validity window, local time-of-day window (in the offer's time zone, across
    midnight and DST), audience, `max_total`, and — when the place is closed — only offers marked
    `outside_opening_hours_ok`. Per-person cooldown / `max_per_person` are for the caller.
    """
    if trigger not in {t.value for t in Trigger}:
        raise ValueError(f"unknown trigger {trigger!r}")
    if at.tzinfo is None:
        raise ValueError("`at` must be timezone-aware")
    return await repository.matching_offers(
        session,
        organisation_id=organisation_id,
        geofence_id=geofence.id,
        category=geofence.category,
        trigger=trigger,
        at=at,
        audiences=audiences_for(audience),
        place_open=place_open,
    )


async def offers_for_checkin(
    session: AsyncSession,
    *,
    organisation_id: uuid.UUID,
    geofence: Geofence,
    at: datetime,
    audience: str,
    place_open: bool,
) -> list[Offer]:
    """The offers to show someone who has just checked in at `geofence`."""
    return await matching_offers(
        session,
        organisation_id=organisation_id,
        geofence=geofence,
        trigger=Trigger.checkin.value,
        at=at,
        audience=audience,
        place_open=place_open,
    )


async def _check_geofences(
    session: AsyncSession, organisation_id: uuid.UUID, ids: list[uuid.UUID]
) -> None:
    found = await repository.live_geofence_ids(session, organisation_id, ids)
    missing = [str(i) for i in ids if i not in found]
    if missing:
        raise UnknownGeofence(
            f"No such place in your organisation: {', '.join(missing)}.",
            extra={"field": "geofence_ids", "unknown": missing},
        )


def _apply_window(offer: Offer, window: TimeWindow | None) -> None:
    offer.window_start = window.start if window else None
    offer.window_end = window.end if window else None
    offer.time_zone = window.time_zone if window else None


async def create_offer(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    author_id: uuid.UUID | None,
    data: OfferCreate,
) -> Offer:
    await _check_geofences(session, organisation_id, data.geofence_ids)
    offer = Offer(
        organisation_id=organisation_id,
        title=data.title,
        body=data.body,
        url=data.url,
        image_url=data.image_url,
        category=data.category,
        triggers=[t.value for t in data.triggers],
        valid_from=data.valid_from,
        valid_until=data.valid_until,
        outside_opening_hours_ok=data.outside_opening_hours_ok,
        cooldown_s=data.cooldown_s,
        told_max=data.told_max,
        max_per_person=data.max_per_person,
        priority=data.priority,
        max_total=data.max_total,
        audience=data.audience.value,
        status=data.status.value,
        quiet_hours_policy=data.quiet_hours_policy.value,
        created_by=author_id,
        # wall-clock, not transaction time: keeps list order = creation order within a transaction
        created_at=datetime.now(UTC),
        geofence_links=[OfferGeofence(geofence_id=g) for g in data.geofence_ids],
    )
    _apply_window(offer, data.time_window)
    await repository.add(session, offer)
    return await repository.reload(session, offer)


async def get_offer(
    session: AsyncSession, organisation_id: uuid.UUID, offer_id: uuid.UUID
) -> Offer:
    offer = await repository.get_offer(session, organisation_id, offer_id)
    if offer is None:
        raise OfferNotFound()
    return offer


def is_visible_to(offer: Offer, audience: str, at: datetime) -> bool:
    """Whether a resident (or field worker) may see this offer now."""
    return (
        offer.status == OfferStatus.active.value
        and offer.audience in audiences_for(audience)
        and (offer.valid_from is None or offer.valid_from <= at)
        and (offer.valid_until is None or offer.valid_until > at)
    )


async def update_offer(
    session: AsyncSession, organisation_id: uuid.UUID, offer_id: uuid.UUID, data: OfferUpdate
) -> Offer:
    offer = await get_offer(session, organisation_id, offer_id)
    changes: dict[str, Any] = {k: getattr(data, k) for k in data.model_fields_set}
    if offer.status == OfferStatus.ended.value and changes.get("status") not in (None, "ended"):
        raise OfferEnded("An ended offer cannot be reopened; create a new one.")
    geofence_ids: list[uuid.UUID] = changes.pop("geofence_ids", offer.geofence_ids)
    category = changes.get("category", offer.category)
    if not geofence_ids and category is None:
        raise InvalidOffer(
            "Say where the offer applies: geofence_ids and/or category.",
            extra={"field": "geofence_ids"},
        )
    valid_from = changes.get("valid_from", offer.valid_from)
    valid_until = changes.get("valid_until", offer.valid_until)
    if valid_from is not None and valid_until is not None and valid_until <= valid_from:
        raise InvalidOffer("valid_until must be after valid_from.", extra={"field": "valid_until"})
    if "geofence_ids" in data.model_fields_set:
        await _check_geofences(session, organisation_id, geofence_ids)
        current = {link.geofence_id: link for link in offer.geofence_links}
        offer.geofence_links = [
            current.get(g) or OfferGeofence(offer_id=offer.id, geofence_id=g) for g in geofence_ids
        ]
    if "time_window" in changes:
        _apply_window(offer, changes.pop("time_window"))
    for name, value in changes.items():
        if name == "triggers":
            value = [t.value for t in value]
        elif hasattr(value, "value"):
            value = value.value
        setattr(offer, name, value)
    offer.updated_at = datetime.now(UTC)
    await session.flush()
    return await repository.reload(session, offer)


async def delete_offer(
    session: AsyncSession, organisation_id: uuid.UUID, offer_id: uuid.UUID
) -> None:
    """Soft delete: redemptions (and later deliveries) keep pointing at the row for statistics."""
    offer = await get_offer(session, organisation_id, offer_id)
    offer.deleted_at = datetime.now(UTC)
    offer.status = OfferStatus.ended.value
    await session.flush()


async def list_offers(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    page: PageParams,
    *,
    status: str | None = None,
    category: str | None = None,
    geofence_id: uuid.UUID | None = None,
    audience: str | None = None,
) -> tuple[list[Offer], str | None]:
    geofence = None
    if geofence_id is not None:
        geofence = await repository.get_geofence(session, organisation_id, geofence_id)
        if geofence is None:
            return [], None
    rows = await repository.list_offers(
        session,
        organisation_id,
        page,
        status=status,
        category=category,
        geofence=geofence,
        audience=audience,
    )
    return trim_page(rows, page)


async def public_offers(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    *,
    audience: str,
    limit: int,
    geofence_id: uuid.UUID | None = None,
    near: NearPoint | None = None,
    within_m: float | None = None,
    at: datetime | None = None,
) -> list[tuple[Offer, float | None]]:
    """Active, currently valid offers at a place or near a point, nearest first."""
    if geofence_id is None and near is None:
        raise InvalidOffer(
            "Residents list offers at a place: give `geofence_id` or `near=lon,lat`.",
            extra={"field": "near"},
        )
    radius = max(1.0, min(within_m if within_m is not None else NEAR_DEFAULT_M, NEAR_MAX_M))
    return await repository.public_offers_near(
        session,
        organisation_id=organisation_id,
        audiences=[audience, Audience.all.value],
        at=at or datetime.now(UTC),
        limit=limit,
        geofence_id=geofence_id,
        near=near,
        within_m=radius,
    )


async def redeem(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    offer_id: uuid.UUID,
    device_id: uuid.UUID,
    geofence_id: uuid.UUID | None = None,
    at: datetime | None = None,
) -> tuple[OfferRedemption, int, int]:
    """Record one redemption; returns it, this device's count so far and what it has left."""
    now = at or datetime.now(UTC)
    offer = await repository.get_offer(session, organisation_id, offer_id, lock=True)
    if offer is None or not (
        offer.audience in audiences_for(Audience.residents.value)
        and offer.status != OfferStatus.draft.value
    ):
        raise OfferNotFound()
    if not is_visible_to(offer, Audience.residents.value, now):
        raise OfferNotAvailable(
            f"This offer is {offer.status} and valid "
            f"{offer.valid_from or 'from the start'} – {offer.valid_until or 'open-ended'}; "
            "it cannot be redeemed now."
        )
    if geofence_id is not None:
        await _check_geofences(session, organisation_id, [geofence_id])
    mine = await repository.count_redemptions(session, offer.id, device_id)
    if mine >= offer.max_per_person:
        raise RedemptionLimitReached(
            f"You have already redeemed this offer {mine} time(s); "
            f"it allows {offer.max_per_person} per person.",
            extra={"redemptions_by_you": mine, "max_per_person": offer.max_per_person},
        )
    if offer.max_total is not None:
        total = await repository.count_redemptions(session, offer.id)
        if total >= offer.max_total:
            raise OfferExhausted("All redemptions of this offer have been used.")
    redemption = OfferRedemption(
        organisation_id=organisation_id,
        offer_id=offer.id,
        device_id=device_id,
        geofence_id=geofence_id,
        redeemed_at=now,
        code=new_code(),
    )
    await repository.add(session, redemption)
    await events_service.record(
        session,
        [
            Event(
                id=uuid.uuid4(),
                organisation_id=organisation_id,
                type=EventType.offer_redeemed,
                source=Source.offer,
                occurred_at=now,
                subject=SubjectRef("device", device_id, organisation_id),
                geofence_id=geofence_id,
                data={"offer_id": str(offer.id), "offer_title": offer.title},
            )
        ],
    )
    return redemption, mine + 1, offer.max_per_person - mine - 1


# Desk codes: no 0/O, 1/I/L, 2/Z, 5/S or 8/B, so a code read aloud or off a screen is unambiguous.
CODE_ALPHABET = "ACDEFGHJKMNPQRTUVWXY34679"
CODE_LENGTH = 6  # 25^6 ≈ 244 million per organisation


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(code: str) -> str:
    return "".join(code.split()).upper()


async def check_code(
    session: AsyncSession, organisation_id: uuid.UUID, code: str, at: datetime | None = None
) -> tuple[OfferRedemption, Offer, bool]:
    """What the desk sees for a code: its redemption, its offer, and whether it may be accepted
    now (not used yet, and the offer still valid). Changes nothing. Another organisation's code
    is not found."""
    now = at or datetime.now(UTC)
    redemption = await repository.redemption_by_code(session, organisation_id, normalise_code(code))
    if redemption is None:
        raise CodeNotFound()
    offer = await repository.get_offer(session, organisation_id, redemption.offer_id)
    if offer is None:
        raise CodeNotFound()
    ok = redemption.used_at is None and is_visible_to(offer, Audience.residents.value, now)
    return redemption, offer, ok


async def use_code(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    code: str,
    staff_id: uuid.UUID,
    at: datetime | None = None,
) -> tuple[OfferRedemption, Offer]:
    """The desk accepts a code: once, in its organisation, while the offer is valid."""
    now = at or datetime.now(UTC)
    redemption = await repository.redemption_by_code(
        session, organisation_id, normalise_code(code), lock=True
    )
    if redemption is None:
        raise CodeNotFound()
    offer = await repository.get_offer(session, organisation_id, redemption.offer_id)
    if offer is None:
        raise CodeNotFound()
    if redemption.used_at is not None:
        raise CodeUsed(
            f"This code was already used on {redemption.used_at:%Y-%m-%d at %H:%M} UTC.",
            extra={"used_at": redemption.used_at.isoformat()},
        )
    if not is_visible_to(offer, Audience.residents.value, now):
        raise OfferNotAvailable("The offer of this code is no longer valid.")
    redemption.used_at = now
    redemption.used_by = staff_id
    await session.flush()
    return redemption, offer


async def stats(
    session: AsyncSession, organisation_id: uuid.UUID, offer_id: uuid.UUID
) -> OfferStats:
    offer = await get_offer(session, organisation_id, offer_id)
    total, people = await repository.redemption_stats(session, offer.id)
    sent, opened = await notifications_service.offer_counts(session, organisation_id, offer.id)
    return OfferStats(
        offer_id=offer.id,
        sent=sent,
        opened=opened,
        redeemed=total,
        redeemed_people=people,
        remaining_total=None if offer.max_total is None else max(0, offer.max_total - total),
    )
