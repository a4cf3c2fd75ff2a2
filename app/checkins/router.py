from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Depends, Query, Response, status

from app.accounts.dependencies import CurrentPrincipal, CurrentStaff, EditorUser
from app.checkins import service
from app.checkins.schemas import (
    CheckInCreate,
    CheckInRead,
    CheckInResult,
    CheckInStaffRead,
    CheckInStats,
    PlaceSummary,
    QueuedNotification,
    Regulars,
    StatsBucket,
)
from app.core.db import Session
from app.core.deps import AppSettings
from app.core.errors import Unprocessable
from app.core.pagination import Page, Pagination
from app.core.ratelimit import rate_limited
from app.core.types import BoundedDatetime
from app.geofences import service as geofence_service
from app.offers.schemas import offer_public
from app.tasks.schemas import task_read

router = APIRouter(prefix="/v1", tags=["check-ins"])


@router.post(
    "/checkins",
    response_model=CheckInResult,
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(rate_limited("checkins"))],
    responses={
        200: {"description": "Repeated check-in within the cooldown: the earlier one"},
        404: {"description": "geofence_id is not a place of this organisation"},
        409: {
            "description": "Several places are equally plausible: `candidates` lists them; or "
            "a field worker off shift or with tracking paused (`off-shift`, nothing stored)"
        },
        422: {"description": "Too far, accuracy too poor, bad coordinates or fix time"},
    },
)
async def create_checkin(
    session: Session,
    settings: AppSettings,
    principal: CurrentPrincipal,
    body: CheckInCreate,
    response: Response,
) -> CheckInResult:
    """Check in: resolve the place and return what is here for me (offers, or my tasks)."""
    outcome = await service.check_in(session, settings, principal, body)
    if outcome.repeated:
        response.status_code = status.HTTP_200_OK
    geofence = outcome.place.geofence
    return CheckInResult(
        checkin=CheckInRead.model_validate(outcome.checkin),
        repeated=outcome.repeated,
        place=PlaceSummary(
            id=geofence.id,
            name=geofence.name,
            category=geofence.category,
            distance_m=round(outcome.place.distance_m, 1),
            inside=outcome.place.inside,
            open=outcome.checkin.place_open,
        ),
        offers=[offer_public(o) for o in outcome.offers],
        tasks=[task_read(t) for t in outcome.tasks],
        proof_of_visit_for=outcome.proof_of_visit_for,
        notifications_queued=[QueuedNotification(**n) for n in outcome.notifications_queued],
    )


@router.get("/checkins/{checkin_id}", response_model=CheckInStaffRead | CheckInRead)
async def get_checkin(
    session: Session, principal: CurrentPrincipal, checkin_id: uuid.UUID
) -> CheckInRead:
    """One check-in: its owner; a resident's also to the organisation's editors and admins (a
    staff member's check-in is theirs alone: their location history)."""
    checkin = await service.get_checkin(session, principal, checkin_id)
    if principal.is_staff:
        return CheckInStaffRead.model_validate(checkin)
    return CheckInRead.model_validate(checkin)


@router.get("/me/checkins", response_model=Page[CheckInRead])
async def my_checkins(
    session: Session, principal: CurrentPrincipal, page: Pagination
) -> Page[CheckInRead]:
    """My own check-in history, newest first."""
    rows, next_cursor = await service.list_own(session, principal, page)
    return Page[CheckInRead](
        items=[CheckInRead.model_validate(r) for r in rows], next_cursor=next_cursor
    )


def _zone(tz: str) -> str:
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise Unprocessable(f"Unknown time zone {tz!r}.", extra={"field": "tz"}) from exc
    return tz


@router.get("/geofences/{geofence_id}/checkins/stats", response_model=CheckInStats)
async def checkin_stats(
    *,
    session: Session,
    settings: AppSettings,
    staff: EditorUser,
    geofence_id: uuid.UUID,
    bucket: Annotated[Literal["hour", "day"], Query()] = "hour",
    since: Annotated[BoundedDatetime | None, Query(description="Default: 7 days ago")] = None,
    until: Annotated[BoundedDatetime | None, Query(description="Default: now")] = None,
    tz: Annotated[str, Query(max_length=64)] = "Europe/London",
) -> CheckInStats:
    """Staff: check-ins per hour or day; resident and staff cells with fewer than 10 people
    suppressed."""
    geofence = await geofence_service.get_geofence(session, staff.organisation_id, geofence_id)
    now = datetime.now(UTC)
    until = until or now
    since = since or until - timedelta(days=7)
    if since.tzinfo is None or until.tzinfo is None:
        raise Unprocessable("since/until need a UTC offset.", extra={"field": "since"})
    if until <= since or until - since > timedelta(days=366):
        raise Unprocessable(
            "The window must be positive and at most a year.", extra={"field": "since"}
        )
    rows = await service.stats(
        session,
        settings,
        staff.organisation_id,
        geofence,
        bucket=bucket,
        since=since,
        until=until,
        tz=_zone(tz),
    )
    return CheckInStats(
        geofence_id=geofence.id,
        bucket=bucket,
        time_zone=tz,
        min_cell_size=settings.stats_min_cell_size,
        buckets=[StatsBucket(**r.__dict__) for r in rows],
    )


@router.get("/geofences/{geofence_id}/checkins/regulars", response_model=Regulars)
async def checkin_regulars(
    session: Session,
    staff: CurrentStaff,
    geofence_id: uuid.UUID,
    min_checkins: Annotated[int, Query(ge=2, le=100)] = 5,
) -> Regulars:
    """Staff: how many residents are regulars here (≥ N check-ins in 60 days) — a count only."""
    geofence = await geofence_service.get_geofence(session, staff.organisation_id, geofence_id)
    n = await service.count_regulars(
        session, staff.organisation_id, geofence, days=60, min_checkins=min_checkins
    )
    return Regulars(geofence_id=geofence.id, window_days=60, min_checkins=min_checkins, regulars=n)
