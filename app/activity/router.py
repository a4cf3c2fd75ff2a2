"""GET /v1/activity: the organisation's events of every kind, newest first."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from app.accounts.dependencies import CurrentStaff
from app.activity import service
from app.activity.schemas import ActivityItem, ActivityKind
from app.core.db import Session
from app.core.pagination import Page, Pagination, trim_page
from app.geofences import service as geofence_service

router = APIRouter(prefix="/v1", tags=["pings and events"])


@router.get("/activity", response_model=Page[ActivityItem])
async def list_activity(
    *,
    session: Session,
    staff: CurrentStaff,
    page: Pagination,
    kind: Annotated[
        list[ActivityKind] | None, Query(description="Only these kinds (repeat the parameter).")
    ] = None,
    geofence_id: Annotated[uuid.UUID | None, Query(description="Only this place.")] = None,
) -> Page[ActivityItem]:
    """Staff: presence, check-ins, task transitions, redemptions, broadcasts and reports (other
    staff members' presence and check-ins are not shown)."""
    if geofence_id is not None:  # another organisation's place is not found (404)
        await geofence_service.get_geofence(session, staff.organisation_id, geofence_id)
    items = await service.feed(
        session,
        staff.organisation_id,
        kinds=kind,
        geofence_id=geofence_id,
        after=(page.cursor.created_at, page.cursor.id) if page.cursor else None,
        limit=page.limit + 1,
        viewer_id=staff.id,  # other staff members' presence is their location history
    )
    rows, next_cursor = trim_page(items, page, "occurred_at")
    return Page[ActivityItem](items=rows, next_cursor=next_cursor)
