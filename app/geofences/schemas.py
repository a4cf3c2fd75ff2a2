"""GeoJSON Feature in and out. Geometry is taken as raw JSON and validated by `app.core.geo`."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from functools import lru_cache
from typing import Any, Literal
from zoneinfo import ZoneInfo, available_timezones

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.core.types import BoundedAwareDatetime, GeoJsonObject, JsonObject
from app.geofences.opening_hours import DAYS, parse_hhmm

TAG_PATTERN = r"^[\w][\w .:/-]{0,63}$"
CATEGORY_PATTERN = r"^[a-z][a-z0-9_]{1,39}$"


@lru_cache(maxsize=1)
def _known_time_zones() -> frozenset[str]:
    return frozenset(available_timezones())


class OpeningHours(BaseModel):
    """Weekly schedule in the place's IANA time zone; ranges may run past midnight."""

    model_config = ConfigDict(extra="forbid")

    time_zone: str = Field(max_length=64, examples=["Europe/London"])
    weekly: dict[str, list[tuple[str, str]]] = Field(
        default_factory=dict,
        examples=[{"mon": [["09:00", "17:00"]], "fri": [["09:00", "12:30"], ["18:00", "02:00"]]}],
    )
    closed_dates: list[date] = Field(default_factory=list, max_length=366)

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        # Checked against the list, not by opening it: ZoneInfo("Europe") raises
        # IsADirectoryError and over-long keys raise OSError, which are not bad-input errors.
        if value not in _known_time_zones():
            raise ValueError(f"unknown IANA time zone {value[:64]!r}")
        ZoneInfo(value)
        return value

    @field_validator("weekly")
    @classmethod
    def _valid_days(
        cls, value: dict[str, list[tuple[str, str]]]
    ) -> dict[str, list[tuple[str, str]]]:
        for day, ranges in value.items():
            if day not in DAYS:
                raise ValueError(f"unknown day {day!r}; use {', '.join(DAYS)}")
            if len(ranges) > 12:
                raise ValueError(f"{day}: at most 12 ranges a day")
            for start, end in ranges:
                parse_hhmm(start)
                parse_hhmm(end)
        return value


def _no_nul(value: str | None) -> str | None:
    # PostgreSQL text and jsonb cannot hold U+0000; refuse it here rather than fail at COMMIT.
    if value is not None and "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


class GeofenceProperties(BaseModel):
    """Properties of a place on write. Unknown members are rejected."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(min_length=1, max_length=200)
    category: str = Field(pattern=CATEGORY_PATTERN, examples=["library"])
    external_id: str | None = Field(default=None, min_length=1, max_length=200)
    tags: list[str] = Field(default_factory=list, max_length=50)
    radius_m: float | None = Field(default=None, description="Circles only: 1–10,000 m.")
    trigger_distance_m: float | None = Field(
        default=None, ge=0, le=5000, description="Default depends on the category."
    )
    dwell_s: int = Field(default=300, ge=0, le=86_400)
    opening_hours: OpeningHours | None = None
    active_from: BoundedAwareDatetime | None = None
    active_until: BoundedAwareDatetime | None = None
    metadata: JsonObject = Field(default_factory=dict)

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        return _check_tags(value)

    @field_validator("name", "external_id")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        return _no_nul(value)

    @model_validator(mode="after")
    def _window(self) -> GeofenceProperties:
        _check_window(self.active_from, self.active_until)
        return self


class GeofenceCreate(BaseModel):
    """A GeoJSON Feature: Polygon / MultiPolygon, or Point with `properties.radius_m`."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["Feature"]
    id: str | int | None = Field(default=None, description="Ignored; ids are assigned.")
    geometry: GeoJsonObject
    properties: GeofenceProperties


class GeofencePropertiesUpdate(BaseModel):
    """Partial properties for PATCH: only members present are changed."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str | None = Field(default=None, min_length=1, max_length=200)
    category: str | None = Field(default=None, pattern=CATEGORY_PATTERN)
    external_id: str | None = Field(default=None, min_length=1, max_length=200)
    tags: list[str] | None = Field(default=None, max_length=50)
    radius_m: float | None = None
    trigger_distance_m: float | None = Field(default=None, ge=0, le=5000)
    dwell_s: int | None = Field(default=None, ge=0, le=86_400)
    opening_hours: OpeningHours | None = None
    active_from: BoundedAwareDatetime | None = None
    active_until: BoundedAwareDatetime | None = None
    metadata: JsonObject | None = None

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _check_tags(value)

    @field_validator("name", "external_id")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        return _no_nul(value)

    @model_validator(mode="after")
    def _not_null(self) -> GeofencePropertiesUpdate:
        for name in ("name", "category", "tags", "dwell_s", "metadata"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class GeofenceUpdate(BaseModel):
    """PATCH body: a partial Feature. A new geometry replaces the shape (and circle radius)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["Feature"] | None = None
    geometry: GeoJsonObject | None = None
    properties: GeofencePropertiesUpdate = Field(default_factory=GeofencePropertiesUpdate)


class GeofencePropertiesRead(BaseModel):
    name: str
    category: str
    external_id: str | None
    tags: list[str]
    radius_m: float | None
    trigger_distance_m: float
    dwell_s: int
    opening_hours: dict[str, Any] | None
    active_from: datetime | None
    active_until: datetime | None
    active: bool
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class GeofenceRead(BaseModel):
    """A place as a GeoJSON Feature (staff view)."""

    type: Literal["Feature"] = "Feature"
    id: uuid.UUID
    geometry: GeoJsonObject
    properties: GeofencePropertiesRead


class GeofencePublicProperties(BaseModel):
    name: str
    category: str
    tags: list[str]
    radius_m: float | None
    trigger_distance_m: float
    dwell_s: int
    opening_hours: dict[str, Any] | None


class GeofencePublicRead(BaseModel):
    """A place as residents see it: public properties only (no metadata, ids or windows)."""

    type: Literal["Feature"] = "Feature"
    id: uuid.UUID
    geometry: dict[str, Any]
    properties: GeofencePublicProperties


class GeofencePage(BaseModel):
    items: list[GeofenceRead | GeofencePublicRead]
    next_cursor: str | None = None


class ResolvedPlaceRead(BaseModel):
    id: uuid.UUID
    name: str
    category: str
    tags: list[str]
    distance_m: float = Field(description="0 when the point is inside the place.")
    inside: bool
    trigger_distance_m: float
    open_now: bool


class ResolveResult(BaseModel):
    lon: float
    lat: float
    accuracy_m: float
    places: list[ResolvedPlaceRead]


class ImportError_(BaseModel):
    index: int
    external_id: str | None = None
    reason: str
    field: str | None = None
    detail: str


class ImportResult(BaseModel):
    dry_run: bool
    total: int
    created: int
    updated: int
    failed: int
    errors: list[ImportError_]


def _check_tags(value: list[str]) -> list[str]:
    seen: list[str] = []
    for tag in value:
        if not re.match(TAG_PATTERN, tag):
            raise ValueError(f"tag {tag!r} must be 1-64 word characters, spaces or .:/-")
        if tag not in seen:
            seen.append(tag)
    return seen


def _check_window(start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None and end <= start:
        raise ValueError("active_until must be after active_from")
