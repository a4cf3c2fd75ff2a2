"""Presence rules. `record_events` is the one way any domain adds to the shared event log."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.presence import repository
from app.presence.models import EventSource, EventType


def event_row(
    *,
    organisation_id: uuid.UUID,
    geofence_id: uuid.UUID,
    type: EventType,
    source: EventSource,
    occurred_at: datetime,
    device_id: uuid.UUID | None = None,
    staff_user_id: uuid.UUID | None = None,
    ping_id: str | None = None,
    checkin_id: uuid.UUID | None = None,
    lon: float | None = None,
    lat: float | None = None,
    accuracy_m: float | None = None,
    explanation: dict[str, Any] | None = None,
) -> dict[str, Any]:
    if (device_id is None) == (staff_user_id is None):
        raise ValueError("an event is about exactly one device or one staff user")
    return {
        "id": uuid.uuid4(),
        "organisation_id": organisation_id,
        "geofence_id": geofence_id,
        "type": type.value,
        "source": source.value,
        "occurred_at": occurred_at,
        "device_id": device_id,
        "staff_user_id": staff_user_id,
        "ping_id": ping_id,
        "checkin_id": checkin_id,
        "lon": lon,
        "lat": lat,
        "accuracy_m": accuracy_m,
        "explanation": explanation or {},
    }


async def record_events(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    await repository.insert_events(session, rows)
