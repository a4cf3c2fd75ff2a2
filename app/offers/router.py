"""Offers: editors manage them; residents list the live ones at or near a place and redeem."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from app.accounts.dependencies import CurrentDevice, CurrentPrincipal, CurrentStaff, EditorUser
from app.accounts.models import Role
from app.audit import service as audit_service
from app.core.db import Session
from app.core.errors import Forbidden
from app.core.near import parse_near
from app.core.pagination import Page, Pagination
from app.offers import service
from app.offers.dependencies import ManagedOffer
from app.offers.errors import OfferNotFound
from app.offers.models import Audience, Offer, OfferRedemption, OfferStatus
from app.offers.schemas import (
    CodeCheck,
    OfferCreate,
    OfferPublic,
    OfferRead,
    OfferStats,
    OfferUpdate,
    RedeemRequest,
    RedemptionRead,
    offer_public,
    offer_read,
)

router = APIRouter(prefix="/v1/offers", tags=["offers"])


@router.post("", response_model=OfferRead, status_code=status.HTTP_201_CREATED)
async def create_offer(session: Session, editor: EditorUser, body: OfferCreate) -> OfferRead:
    """Editor: create an offer for places and/or a whole category of places."""
    offer = await service.create_offer(session, editor.organisation_id, editor.id, body)
    await audit_service.record(
        session, editor, "offer.create", "offer", offer.id, {"title": offer.title}
    )
    return offer_read(offer)


@router.get("", response_model=Page[OfferRead] | Page[OfferPublic])
async def list_offers(
    *,
    session: Session,
    principal: CurrentPrincipal,
    page: Pagination,
    geofence_id: Annotated[uuid.UUID | None, Query(description="Offers that apply here.")] = None,
    near: Annotated[
        str | None, Query(max_length=64, description="`lon,lat`: offers at places nearby.")
    ] = None,
    within_m: Annotated[
        float | None, Query(gt=0, description="Radius for `near` (default 500, max 5000).")
    ] = None,
    status_: Annotated[OfferStatus | None, Query(alias="status")] = None,
    category: Annotated[str | None, Query(max_length=40)] = None,
    audience: Annotated[Audience | None, Query()] = None,
) -> Page[OfferRead] | Page[OfferPublic]:
    """Editors: all offers of the organisation (filters). Residents: live offers at/near a place."""
    point = parse_near(near) if near is not None else None
    if principal.is_staff and principal.role in (Role.admin, Role.editor) and point is None:
        rows, next_cursor = await service.list_offers(
            session,
            principal.organisation_id,
            page,
            status=status_.value if status_ else None,
            category=category,
            geofence_id=geofence_id,
            audience=audience.value if audience else None,
        )
        return Page[OfferRead](items=[offer_read(o) for o in rows], next_cursor=next_cursor)
    if principal.is_staff and principal.role not in (Role.admin, Role.editor):
        if geofence_id is None and point is None:
            raise Forbidden("Field workers list the offers at a place: give geofence_id or near.")
    # Field workers see staff offers; residents (and editors previewing with near=) resident ones.
    viewer = (
        Audience.staff.value if principal.role == Role.field_worker else Audience.residents.value
    )
    found = await service.public_offers(
        session,
        principal.organisation_id,
        audience=viewer,
        limit=page.limit,
        geofence_id=geofence_id,
        near=point,
        within_m=within_m,
    )
    return Page[OfferPublic](items=[offer_public(o, d) for o, d in found])


@router.get("/{offer_id}", response_model=OfferRead | OfferPublic)
async def get_offer(
    session: Session, principal: CurrentPrincipal, offer_id: uuid.UUID
) -> OfferRead | OfferPublic:
    """One offer: the full record for editors, the public view of a live offer for others."""
    offer = await service.get_offer(session, principal.organisation_id, offer_id)
    if principal.is_staff and principal.role in (Role.admin, Role.editor):
        return offer_read(offer)
    viewer = (
        Audience.staff.value if principal.role == Role.field_worker else Audience.residents.value
    )
    if not service.is_visible_to(offer, viewer, datetime.now(UTC)):
        raise OfferNotFound()
    return offer_public(offer)


@router.patch("/{offer_id}", response_model=OfferRead)
async def update_offer(
    session: Session, editor: EditorUser, offer: ManagedOffer, body: OfferUpdate
) -> OfferRead:
    """Editor: change an offer (including its status: draft, active, paused, ended)."""
    offer_id = offer.id
    updated = await service.update_offer(session, editor.organisation_id, offer_id, body)
    details: dict[str, object] = {"fields": sorted(body.model_dump(exclude_unset=True))}
    if body.status is not None:
        details["status"] = body.status.value
    await audit_service.record(session, editor, "offer.update", "offer", offer_id, details)
    return offer_read(updated)


@router.delete("/{offer_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_offer(session: Session, editor: EditorUser, offer: ManagedOffer) -> Response:
    """Editor: delete an offer (its redemptions stay for statistics)."""
    offer_id = offer.id
    await service.delete_offer(session, editor.organisation_id, offer_id)
    await audit_service.record(session, editor, "offer.delete", "offer", offer_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{offer_id}/redeem", response_model=RedemptionRead, status_code=status.HTTP_201_CREATED
)
async def redeem_offer(
    session: Session, device: CurrentDevice, offer_id: uuid.UUID, body: RedeemRequest | None = None
) -> RedemptionRead:
    """Resident: redeem a live offer (once per person unless it allows more; 409 past the cap)."""
    body = body or RedeemRequest()
    redemption, mine, remaining = await service.redeem(
        session, device.organisation_id, offer_id, device.id, body.geofence_id
    )
    return RedemptionRead(
        id=redemption.id,
        offer_id=redemption.offer_id,
        redeemed_at=redemption.redeemed_at,
        redemptions_by_you=mine,
        remaining_for_you=remaining,
        code=redemption.code or "",
    )


CodePath = Annotated[str, Path(min_length=4, max_length=12, pattern=r"^[A-Za-z0-9 ]+$")]


@router.get("/codes/{code}", response_model=CodeCheck)
async def check_code(session: Session, staff: CurrentStaff, code: CodePath) -> CodeCheck:
    """Staff (a desk tablet): is this redemption code valid now? Changes nothing."""
    redemption, offer, ok = await service.check_code(session, staff.organisation_id, code)
    return _code_check(redemption, offer, ok)


@router.post("/codes/{code}/use", response_model=CodeCheck)
async def use_code(session: Session, staff: CurrentStaff, code: CodePath) -> CodeCheck:
    """Staff: accept the code at the desk. It works once (409 `code-used` after), only in its
    organisation (404 elsewhere), and only while the offer is valid (409)."""
    redemption, offer = await service.use_code(session, staff.organisation_id, code, staff.id)
    await audit_service.record(
        session, staff, "offer.code_used", "offer", offer.id, {"code": redemption.code}
    )
    return _code_check(redemption, offer, False)


def _code_check(redemption: OfferRedemption, offer: Offer, ok: bool) -> CodeCheck:
    return CodeCheck(
        code=redemption.code or "",
        offer_id=offer.id,
        offer_title=offer.title,
        redeemed_at=redemption.redeemed_at,
        used_at=redemption.used_at,
        valid_now=ok,
    )


@router.get("/{offer_id}/stats", response_model=OfferStats)
async def offer_stats(session: Session, editor: EditorUser, offer: ManagedOffer) -> OfferStats:
    """Editor: how the offer performed (redeemed now; sent/opened come with notifications)."""
    return await service.stats(session, editor.organisation_id, offer.id)
