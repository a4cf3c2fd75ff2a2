"""Pydantic shapes for pings, presence and events (input models forbid unknown fields)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, NotRequired

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from app.core.types import BoundedDatetime, Flag
from app.presence.models import EventType, PresenceState


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PingCreate(StrictModel):
    """One fix. Bad *values* reject only this ping (see `rejected`); bad *shapes* are a 422."""

    id: str = Field(min_length=1, max_length=64, description="Client-chosen id, unique per device.")
    lon: float = Field(description="WGS 84 longitude, -180..180.")
    lat: float = Field(description="WGS 84 latitude, -90..90.")
    accuracy_m: float | None = Field(
        default=None,
        description="Horizontal accuracy, metres. Missing, ≤ 0 or NaN: stored, never triggers.",
    )
    recorded_at: BoundedDatetime = Field(
        description="When the fix was taken (RFC 3339 with offset)."
    )
    speed_mps: float | None = Field(default=None, description="Negative/NaN means unknown.")
    heading: float | None = Field(default=None, description="Degrees 0..360; else unknown.")


class PingBatchCreate(StrictModel):
    pings: list[PingCreate] = Field(description="Up to 1,000 fixes in any order.")


# The same body as plain dicts, for `app/presence/fastpath.py`: the same fields, types and
# constraints, so exactly the same bodies pass (tests/presence/test_fast_path.py holds them
# together); no model instance per fix. Errors are never taken from it: a body it refuses goes
# to the route, whose model answers the 422.
class PingIn(TypedDict):
    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]

    id: Annotated[str, Field(min_length=1, max_length=64)]
    lon: float
    lat: float
    accuracy_m: NotRequired[float | None]
    recorded_at: BoundedDatetime
    speed_mps: NotRequired[float | None]
    heading: NotRequired[float | None]


class PingBatchIn(TypedDict):
    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]

    pings: list[PingIn]


class PingIssue(BaseModel):
    id: str
    reason: str


class GeoPoint(BaseModel):
    type: Literal["Point"] = "Point"
    coordinates: list[float] = Field(description="[lon, lat]")


class EventRead(BaseModel):
    id: uuid.UUID
    type: EventType
    source: str
    geofence_id: uuid.UUID
    occurred_at: datetime
    device_id: uuid.UUID | None = None
    staff_user_id: uuid.UUID | None = None
    ping_id: str | None = None
    checkin_id: uuid.UUID | None = None
    location: GeoPoint | None = None
    accuracy_m: float | None = None
    explanation: dict[str, Any]
    suppressed_reason: str | None = None
    created_at: datetime | None = None
    decisions: list[dict[str, Any]] | None = Field(
        default=None,
        description="Staff event log: the notifications this event led to (queued, or "
        "suppressed with the reason; see docs/rules.md).",
    )

    @classmethod
    def from_row(cls, row: Any) -> EventRead:
        data = dict(row) if isinstance(row, dict) else dict(row._mapping)
        lon, lat = data.pop("lon", None), data.pop("lat", None)
        data.pop("organisation_id", None)
        if lon is not None and lat is not None:
            data["location"] = GeoPoint(coordinates=[lon, lat])
        return cls.model_validate(data)


class PingBatchRead(BaseModel):
    accepted: int = Field(description="New pings stored by this request.")
    duplicates: int = Field(description="Pings whose id was already stored (or repeated).")
    rejected: list[PingIssue] = Field(description="Pings not stored, with the reason.")
    events: list[EventRead] = Field(description="Geofence events this batch produced.")
    flagged: list[PingIssue] = Field(
        default_factory=list,
        description="Stored pings that cannot trigger (accuracy, implausible jump, late).",
    )


class PingAck(BaseModel):
    """The 202 answer: the fixes are stored (durably); their events come moments later."""

    status: Literal["queued"] = "queued"
    accepted: int = Field(description="New pings stored by this request, to be evaluated.")
    accepted_ids: list[str] = Field(description="Their ids.")
    duplicates: int = Field(
        description="Pings whose id was already stored or queued, or repeated in the request."
    )
    duplicate_ids: list[str] = Field(description="Their ids.")
    rejected: list[PingIssue] = Field(description="Pings not stored, with the reason.")
    flagged: list[PingIssue] = Field(
        description="Stored pings that cannot trigger because of their accuracy (late fixes and "
        "implausible jumps are decided when evaluated, and kept with the ping)."
    )


class PresenceRead(BaseModel):
    geofence_id: uuid.UUID
    name: str
    category: str
    state: PresenceState
    since: datetime
    last_fix_at: datetime
    dwell_emitted: bool


class BackgroundLocation(StrictModel):
    enabled: Flag
