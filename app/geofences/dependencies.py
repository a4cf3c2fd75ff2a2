"""Load-or-404 for a geofence of the caller's organisation."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends

from app.accounts.dependencies import CurrentPrincipal
from app.core.db import Session
from app.geofences import service
from app.geofences.models import Geofence


async def geofence_for_caller(
    session: Session, principal: CurrentPrincipal, geofence_id: uuid.UUID
) -> Geofence:
    geofence = await service.get_geofence(session, principal.organisation_id, geofence_id)
    if principal.kind == "device" and not service.is_active(geofence):
        # Residents only see active places; an inactive one does not exist for them.
        raise service.GeofenceNotFound()
    return geofence


VisibleGeofence = Annotated[Geofence, Depends(geofence_for_caller)]
