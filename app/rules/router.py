"""HTTP for notification preferences, field workers' shifts and place broadcasts."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from app.accounts.dependencies import CurrentPrincipal, CurrentStaff, EditorUser
from app.core.db import Session
from app.core.deps import AppSettings
from app.rules import service
from app.rules.schemas import (
    BroadcastCreate,
    BroadcastRead,
    PreferencesRead,
    PreferencesUpdate,
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


@router.put("/staff/{staff_id}/shift", response_model=ShiftRead)
async def put_shift(
    session: Session,
    settings: AppSettings,
    staff: CurrentStaff,
    staff_id: uuid.UUID,
    body: ShiftWindow,
) -> ShiftRead:
    """Set a field worker's shift: the worker themself, or an admin/editor."""
    return ShiftRead.model_validate(
        await service.set_shift(session, settings, staff, staff_id, body)
    )


@router.delete("/staff/{staff_id}/shift", response_model=ShiftRead)
async def delete_shift(
    session: Session, settings: AppSettings, staff: CurrentStaff, staff_id: uuid.UUID
) -> ShiftRead:
    """Clear a field worker's shift (always on shift again)."""
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
