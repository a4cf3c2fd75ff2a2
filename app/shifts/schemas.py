"""Request and response bodies for ad-hoc shifts, pauses and a worker's current place."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ShiftStart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hours: float | None = Field(
        default=None,
        gt=0,
        le=24,
        description="How long the ad-hoc shift lasts at most; default and upper limit: "
        "STAFF_ADHOC_SHIFT_MAX_H (12). It ends by itself then, or earlier with "
        "POST /v1/me/shift/end.",
    )


class NoBody(BaseModel):
    """These actions take no fields (an empty body or `{}`)."""

    model_config = ConfigDict(extra="forbid")


class PeriodRead(BaseModel):
    id: uuid.UUID
    kind: Literal["shift", "pause"]
    started_at: datetime
    ends_by: datetime | None = Field(description="Ad-hoc shifts: when it ends by itself.")
    ended_at: datetime | None = Field(description="Null while it lasts.")
    end_reason: Literal["worker", "auto"] | None = Field(
        description="`worker`: ended or resumed by the worker; `auto`: reached its length."
    )
    open: bool


class ShiftWindowNow(BaseModel):
    start: str
    end: str
    days: list[int] | None
    time_zone: str


class TrackingRead(BaseModel):
    on_shift: bool = Field(description="Whether your location is taken now.")
    reason: Literal["paused", "ad-hoc-shift", "shift", "no-shift-set", "outside-shift"]
    shift: ShiftWindowNow | None = Field(
        description="Your shift window (PUT /v1/staff/{id}/shift); null: always on shift."
    )
    adhoc_shift: PeriodRead | None
    paused_since: datetime | None


class PlaceNow(BaseModel):
    geofence_id: uuid.UUID
    name: str
    category: str
    state: str
    since: datetime


class CurrentPlaceRead(BaseModel):
    staff_id: uuid.UUID
    on_shift: bool
    places: list[PlaceNow] = Field(
        description="Places the worker is inside or near from a fix at most 15 minutes old; "
        "always empty off shift."
    )
    last_fix_at: datetime | None
