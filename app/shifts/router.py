"""HTTP for a field worker's shifts and tracking, and the supervisors' current-place view."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, status

from app.accounts.dependencies import EditorUser, FieldWorker
from app.core.db import Session, after_commit
from app.core.deps import AppSettings
from app.core.pagination import Page, Pagination
from app.core.ratelimit import rate_limited
from app.shifts import service
from app.shifts.models import PeriodKind, StaffPeriod
from app.shifts.schemas import (
    CurrentPlaceRead,
    NoBody,
    PeriodRead,
    PlaceNow,
    ShiftStart,
    ShiftWindowNow,
    TrackingRead,
)

router = APIRouter(prefix="/v1", tags=["shifts and tracking"])


def _forget_rules_on_commit(request: Request, session: Session, worker: FieldWorker) -> None:
    """This process drops the worker's cached shift rules as soon as the change commits (the
    others when its notification arrives: app/shifts/cache.py), so their next fix here is
    judged by the new rules even if it comes before the notification."""
    cache = getattr(request.app.state, "shift_rules", None)
    if cache is not None:
        after_commit(session, lambda: cache.forget(worker.id))


# starts, ends, pauses and resumes each write an audit entry: `shifts` scope (30 a minute)
_LIMITED = [Depends(rate_limited("shifts")), Depends(_forget_rules_on_commit)]
_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"description": "Not possible in the current state (problem type says why)"}
}


def _period(p: StaffPeriod) -> PeriodRead:
    return PeriodRead.model_validate(service.period_dict(p))


@router.get("/me/tracking", response_model=TrackingRead)
async def my_tracking(session: Session, settings: AppSettings, worker: FieldWorker) -> TrackingRead:
    """Field worker: whether your location is taken now, and why (shift, ad-hoc shift, pause)."""
    s = await service.status(session, settings, worker)
    shift = None
    if s.prefs.shift_start is not None and s.prefs.shift_end is not None:
        shift = ShiftWindowNow(
            start=f"{s.prefs.shift_start:%H:%M}",
            end=f"{s.prefs.shift_end:%H:%M}",
            days=list(s.prefs.shift_days) if s.prefs.shift_days else None,
            time_zone=s.prefs.time_zone,
        )
    return TrackingRead(
        on_shift=s.on_shift,
        reason=s.reason,
        shift=shift,
        adhoc_shift=_period(s.adhoc_shift) if s.adhoc_shift else None,
        paused_since=s.paused_since,
    )


@router.post(
    "/me/shift/start",
    response_model=PeriodRead,
    status_code=status.HTTP_201_CREATED,
    responses=_CONFLICT,
    dependencies=_LIMITED,
)
async def start_shift(
    session: Session,
    settings: AppSettings,
    worker: FieldWorker,
    body: Annotated[ShiftStart | None, Body()] = None,
) -> PeriodRead:
    """Field worker: start an ad-hoc shift now (audited); it counts as on shift."""
    hours = body.hours if body else None
    return _period(await service.start_shift(session, settings, worker, hours))


@router.post("/me/shift/end", response_model=PeriodRead, responses=_CONFLICT, dependencies=_LIMITED)
async def end_shift(
    session: Session, worker: FieldWorker, body: Annotated[NoBody | None, Body()] = None
) -> PeriodRead:
    """Field worker: end your running ad-hoc shift now (audited)."""
    return _period(await service.end_shift(session, worker))


@router.post(
    "/me/tracking/pause",
    response_model=PeriodRead,
    status_code=status.HTTP_201_CREATED,
    responses=_CONFLICT,
    dependencies=_LIMITED,
)
async def pause_tracking(
    session: Session, worker: FieldWorker, body: Annotated[NoBody | None, Body()] = None
) -> PeriodRead:
    """Field worker: stop being located until you resume (audited)."""
    return _period(await service.pause(session, worker))


@router.post(
    "/me/tracking/resume", response_model=PeriodRead, responses=_CONFLICT, dependencies=_LIMITED
)
async def resume_tracking(
    session: Session, worker: FieldWorker, body: Annotated[NoBody | None, Body()] = None
) -> PeriodRead:
    """Field worker: be located again (during your shift; audited)."""
    return _period(await service.resume(session, worker))


@router.get("/me/shifts", response_model=Page[PeriodRead])
async def my_shifts(
    session: Session,
    worker: FieldWorker,
    page: Pagination,
    kind: Annotated[PeriodKind | None, Query(description="`shift` or `pause`.")] = None,
) -> Page[PeriodRead]:
    """Field worker: your ad-hoc shifts and pauses, newest first."""
    rows, next_cursor = await service.list_periods(session, worker, page, kind)
    return Page[PeriodRead](items=[_period(p) for p in rows], next_cursor=next_cursor)


@router.get(
    "/staff/{staff_id}/current-place",
    response_model=CurrentPlaceRead,
    responses={404: {"description": "No field worker of this organisation"}},
)
async def current_place(
    session: Session, settings: AppSettings, supervisor: EditorUser, staff_id: uuid.UUID
) -> CurrentPlaceRead:
    """Admin or editor: where a field worker is now, only while on shift; never their history."""
    found = await service.current_place(session, settings, supervisor, staff_id)
    return CurrentPlaceRead(
        staff_id=found.staff_id,
        on_shift=found.on_shift,
        places=[PlaceNow(**p) for p in found.places],
        last_fix_at=found.last_fix_at,
    )
