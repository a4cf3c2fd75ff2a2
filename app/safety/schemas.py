"""Lone working payloads. Inputs forbid unknown fields."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.safety.models import AlertKind

Note = Annotated[str, Field(min_length=1, max_length=500)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class VisitRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    worker_id: uuid.UUID
    geofence_id: uuid.UUID
    task_id: uuid.UUID | None
    started_at: datetime
    started_by: str = Field(description="`checkin` or `presence` (entered the place).")
    expected_min: int
    expected_from: str = Field(description="`task`, `category` or `default`.")
    due_at: datetime = Field(description="When the visit should end (start + length + extensions).")
    extended_count: int
    prompted_at: datetime | None = Field(description="When the worker was asked “Are you OK?”.")
    state: str
    ended_at: datetime | None
    end_reason: str | None = Field(description="`checkout` or `exit` (left the place).")


class ExtendBody(StrictModel):
    minutes: int = Field(
        default=30, ge=1, le=24 * 60, description="From now (or from the due time, if later)."
    )


class HelpBody(StrictModel):
    note: Note | None = None
    lon: float | None = Field(default=None, ge=-180, le=180)
    lat: float | None = Field(default=None, ge=-90, le=90)

    @model_validator(mode="after")
    def _both_or_neither(self) -> Self:
        if (self.lon is None) != (self.lat is None):
            raise ValueError("give both lon and lat, or neither")
        return self


class AlertRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    worker_id: uuid.UUID
    worker_name: str | None = None
    visit_id: uuid.UUID | None
    kind: AlertKind
    raised_at: datetime
    geofence_id: uuid.UUID | None
    place_name: str | None = Field(description="The last known place.")
    last_seen_at: datetime | None = Field(description="The worker's last location fix.")
    last_lon: float | None
    last_lat: float | None
    note: str | None
    level: int = Field(description="Rung of the escalation ladder reached (0 = first send).")
    sends: int
    next_send_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: uuid.UUID | None
    ack_note: str | None


class AcknowledgeBody(StrictModel):
    note: Note | None = None


class OnCallEntry(StrictModel):
    staff_id: uuid.UUID
    rank: int = Field(ge=1, le=9, description="1 is called first; the next rank at each re-send.")


class OnCallList(StrictModel):
    contacts: list[OnCallEntry] = Field(max_length=50)


class CategoryLength(StrictModel):
    expected_duration_min: int = Field(ge=1, le=24 * 60)


class CategoryLengthRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    category: str
    expected_duration_min: int
