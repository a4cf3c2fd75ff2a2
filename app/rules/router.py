"""HTTP for notification preferences, field workers' shifts, place broadcasts and the event log
with its decisions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request

from app.accounts.dependencies import CurrentPrincipal, CurrentStaff, EditorUser
from app.core.db import Session, after_commit
from app.core.deps import AppSettings
from app.core.pagination import Page, Pagination, trim_page
from app.core.types import BoundedDatetime, require_offset
from app.geofences import service as geofence_service
from app.offers import service as offers_service
from app.presence import service as presence_service
from app.presence.models import EventType
from app.presence.schemas import EventRead
from app.rules import funnel, service
from app.rules.schemas import (
    BroadcastCreate,
    BroadcastRead,
    OfferFunnelRead,
    PreferencesRead,
    PreferencesUpdate,
    PreviewItem,
    ShiftRead,
    ShiftWindow,
)

router = APIRouter(prefix="/v1", tags=["notification rules"])


@router.get("/me/preferences", response_model=PreferencesRead)
async def get_preferences(
    session: Session, settings: AppSettings, principal: CurrentPrincipal
) -> PreferencesRead:
    """Your notification preferences (defaults until you change them)."""
    return PreferencesRead.model_validate(
        await service.read_preferences(session, settings, principal)
    )


@router.put("/me/preferences", response_model=PreferencesRead)
async def put_preferences(
    session: Session, settings: AppSettings, principal: CurrentPrincipal, body: PreferencesUpdate
) -> PreferencesRead:
    """Change quiet hours, opt-outs, the daily maximum, background location or your shift."""
    return PreferencesRead.model_validate(
        await service.update_preferences(session, settings, principal, body)
    )


def _forget_shift_rules(request: Request, session: Session, staff_id: uuid.UUID) -> None:
    """The shift gate's cache of this process drops the worker's rules at the commit (the other
    processes when the trigger's notification arrives: app/shifts/cache.py)."""
    cache = getattr(request.app.state, "shift_rules", None)
    if cache is not None:
        after_commit(session, lambda: cache.forget(staff_id))


@router.put("/staff/{staff_id}/shift", response_model=ShiftRead)
async def put_shift(
    *,
    request: Request,
    session: Session,
    settings: AppSettings,
    staff: CurrentStaff,
    staff_id: uuid.UUID,
    body: ShiftWindow,
) -> ShiftRead:
    """Set a field worker's shift: the worker themself, or an admin/editor."""
    _forget_shift_rules(request, session, staff_id)
    return ShiftRead.model_validate(
        await service.set_shift(session, settings, staff, staff_id, body)
    )


@router.delete("/staff/{staff_id}/shift", response_model=ShiftRead)
async def delete_shift(
    request: Request,
    session: Session,
    settings: AppSettings,
    staff: CurrentStaff,
    staff_id: uuid.UUID,
) -> ShiftRead:
    """Clear a field worker's shift (always on shift again)."""
    _forget_shift_rules(request, session, staff_id)
    return ShiftRead.model_validate(
        await service.set_shift(session, settings, staff, staff_id, None)
    )


@router.post("/geofences/{geofence_id}/broadcast", response_model=BroadcastRead)
async def post_broadcast(
    session: Session,
    settings: AppSettings,
    editor: EditorUser,
    geofence_id: uuid.UUID,
    body: BroadcastCreate,
) -> BroadcastRead:
    """Editors/admins: message everyone at or near this place now (or checked in recently)."""
    return BroadcastRead.model_validate(
        await service.broadcast(session, settings, editor, geofence_id, body)
    )


# The event log is presence's; its explanations (the decisions) are the rules', so the rules
# serve the page that joins them and presence never imports rules.
@router.get("/events", response_model=Page[EventRead], tags=["pings and events"])
async def list_events(
    *,
    session: Session,
    staff: CurrentStaff,
    page: Pagination,
    geofence_id: Annotated[uuid.UUID | None, Query(description="Only this place.")] = None,
    type: Annotated[list[EventType] | None, Query(description="Event types.")] = None,  # noqa: A002
    since: Annotated[BoundedDatetime | None, Query(description="occurred_at ≥ since")] = None,
    until: Annotated[BoundedDatetime | None, Query(description="occurred_at < until")] = None,
    include_suppressed: bool = False,
) -> Page[EventRead]:
    """Staff: the organisation's geofence events with their explanation, newest first (other
    staff members' events are not shown)."""
    rows = await presence_service.list_events(
        session,
        staff.organisation_id,
        geofence_id=geofence_id,
        types=[t.value for t in type] if type else None,
        since=require_offset("since", since),
        until=require_offset("until", until),
        include_suppressed=include_suppressed,
        after=(page.cursor.created_at, page.cursor.id) if page.cursor else None,
        limit=page.limit + 1,
        viewer_id=staff.id,  # other staff members' events are their location history
    )
    rows, next_cursor = trim_page(rows, page, "occurred_at")
    items = [EventRead.from_row(r) for r in rows]
    decisions = await service.decisions_for_events(
        session, staff.organisation_id, [e.id for e in items]
    )
    for item in items:
        item.decisions = decisions.get(item.id, [])
    return Page[EventRead](items=items, next_cursor=next_cursor)


@router.get("/offers/{offer_id}/funnel", response_model=OfferFunnelRead, tags=["offers"])
async def get_offer_funnel(
    session: Session, editor: EditorUser, offer_id: uuid.UUID
) -> OfferFunnelRead:
    """Editors: every time the offer was a candidate, queued or held back with each reason
    counted, and what became of the queued pushes."""
    await offers_service.get_offer(session, editor.organisation_id, offer_id)  # 404 if not ours
    return OfferFunnelRead.model_validate(
        await funnel.offer_funnel(session, editor.organisation_id, offer_id, datetime.now(UTC))
    )


@router.get("/geofences/{geofence_id}/preview", response_model=list[PreviewItem], tags=["offers"])
async def get_checkin_preview(
    session: Session, settings: AppSettings, editor: EditorUser, geofence_id: uuid.UUID
) -> list[PreviewItem]:
    """Editors: if a resident with default settings checked in here now, what each live offer
    would do and why. A dry run: nothing is stored or sent."""
    await geofence_service.get_geofence(session, editor.organisation_id, geofence_id)
    items = await funnel.preview_checkin(
        session, settings, organisation_id=editor.organisation_id, geofence_id=geofence_id
    )
    return [PreviewItem.model_validate(i) for i in items]
