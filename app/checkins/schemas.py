from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.core.types import BoundedAwareDatetime
from app.offers.schemas import OfferPublic
from app.tasks.schemas import TaskRead


class CheckInCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lon: float = Field(ge=-180, le=180, allow_inf_nan=False, description="WGS 84 longitude")
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False, description="WGS 84 latitude")
    accuracy_m: float = Field(
        gt=0, le=100_000, allow_inf_nan=False, description="Reported horizontal accuracy (m)"
    )
    geofence_id: uuid.UUID | None = Field(
        default=None, description="The place the person says they are at (verified)."
    )
    recorded_at: BoundedAwareDatetime | None = Field(
        default=None, description="When the fix was taken (RFC 3339 with offset); default now."
    )

    @model_validator(mode="after")
    def _not_null_island(self) -> CheckInCreate:
        if self.lon == 0 and self.lat == 0:
            raise ValueError("(0, 0) is not a real position: the device has no fix")
        return self


class PlaceSummary(BaseModel):
    id: uuid.UUID
    name: str
    category: str
    distance_m: float = Field(description="0 when inside the place")
    inside: bool
    open: bool


class CheckInRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    geofence_id: uuid.UUID
    device_id: uuid.UUID | None
    staff_user_id: uuid.UUID | None
    lon: float
    lat: float
    accuracy_m: float
    recorded_at: datetime
    distance_m: float
    inside: bool
    place_open: bool
    implausible_jump: bool
    created_at: datetime


class CheckInStaffRead(CheckInRead):
    explanation: dict[str, Any]


class QueuedNotification(BaseModel):
    id: uuid.UUID
    title: str
    kind: str


class CheckInResult(BaseModel):
    checkin: CheckInRead
    repeated: bool = Field(
        description="True when this repeats a check-in at the same place within the cooldown; "
        "the earlier check-in is returned and nothing new is recorded."
    )
    place: PlaceSummary
    offers: list[OfferPublic] = Field(description="Offers here for this resident now")
    tasks: list[TaskRead] = Field(
        description="For field workers: their tasks here and the unassigned pool tasks here"
    )
    proof_of_visit_for: list[uuid.UUID] = Field(
        description="Tasks whose required visit this check-in proves"
    )
    notifications_queued: list[QueuedNotification]


class Candidate(BaseModel):
    id: uuid.UUID
    name: str
    category: str
    distance_m: float
    inside: bool


class StatsBucket(BaseModel):
    start: datetime
    residents_checkins: int | None = Field(
        description="null when suppressed (fewer people than min_cell_size, default 10)"
    )
    residents_distinct: int | None
    staff_checkins: int | None = Field(
        description="null when suppressed: staff cells follow the same threshold as residents'"
    )
    staff_distinct: int | None


class CheckInStats(BaseModel):
    geofence_id: uuid.UUID
    bucket: str
    time_zone: str
    min_cell_size: int
    buckets: list[StatsBucket]


class Regulars(BaseModel):
    geofence_id: uuid.UUID
    window_days: int
    min_checkins: int
    regulars: int = Field(description="How many residents are regulars (shown only as a count)")
