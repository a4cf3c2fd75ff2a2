"""Request and response bodies for preferences, shifts and broadcasts."""

from __future__ import annotations

import uuid
from datetime import datetime, time
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.core.types import Flag, SafeUrl


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


def check_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, IsADirectoryError, OSError) as exc:
        raise ValueError(f"unknown IANA time zone {value!r}") from exc
    return value


class QuietHours(StrictModel):
    start: time = Field(description="Local time quiet hours start, e.g. 21:00.")
    end: time = Field(description="Local time they end, e.g. 08:00 (before start = overnight).")

    @model_validator(mode="after")
    def _distinct(self) -> QuietHours:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("local times without an offset; set time_zone instead")
        if self.start == self.end:
            raise ValueError("quiet hours start and end must differ")
        return self


class ShiftWindow(StrictModel):
    start: time = Field(description="Local time the shift starts.")
    end: time = Field(description="Local time it ends (before start = overnight).")
    days: list[int] | None = Field(
        default=None, description="ISO weekdays 1=Mon..7=Sun; null = every day."
    )
    time_zone: str | None = Field(default=None, description="IANA zone; default: preferences'.")

    @field_validator("days")
    @classmethod
    def _days(cls, value: list[int] | None) -> list[int] | None:
        if value is not None:
            if not value or any(d < 1 or d > 7 for d in value):
                raise ValueError("days are ISO weekdays 1..7")
            return sorted(set(value))
        return value

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else check_zone(value)

    @model_validator(mode="after")
    def _distinct(self) -> ShiftWindow:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("local times without an offset; set time_zone instead")
        if self.start == self.end:
            raise ValueError("shift start and end must differ")
        return self


class PreferencesUpdate(StrictModel):
    """Only the fields given change; `quiet_hours: null` switches quiet hours off."""

    time_zone: str | None = Field(default=None, max_length=64)
    quiet_hours: QuietHours | None = None
    categories_opted_out: list[str] | None = Field(default=None, max_length=100)
    max_per_day: int | None = Field(default=None, ge=1, le=100)
    background_location: Flag | None = None
    on_shift: ShiftWindow | None = None

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else check_zone(value)

    @field_validator("categories_opted_out")
    @classmethod
    def _categories(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if any(not c or len(c) > 40 or "\x00" in c for c in value):
            raise ValueError("categories are 1-40 characters")
        return sorted(set(value))


HHMM = Field(pattern=r"^[0-2][0-9]:[0-5][0-9]$", examples=["21:00"])


class QuietHoursRead(BaseModel):
    start: str = HHMM
    end: str = HHMM


class ShiftWindowRead(BaseModel):
    start: str = HHMM
    end: str = HHMM
    days: list[int] | None
    time_zone: str


class PreferencesRead(BaseModel):
    time_zone: str
    quiet_hours: QuietHoursRead | None
    categories_opted_out: list[str]
    max_per_day: int | None
    background_location: bool | None = Field(description="Residents only; null for staff.")
    on_shift: ShiftWindowRead | None = Field(description="Field workers: when task pushes arrive.")
    on_shift_now: bool | None = None


class BroadcastCreate(StrictModel):
    title: str = Field(min_length=1, max_length=120)
    body: str = Field(default="", max_length=240)
    url: SafeUrl | None = None
    safety_critical: Flag = Field(
        default=False,
        description="Bypasses quiet hours, opt-outs and the budget; must be set explicitly.",
    )
    audience: Literal["everyone", "residents", "staff"] = "everyone"

    @field_validator("title", "body")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("must not contain NUL")
        return value


class BroadcastRead(BaseModel):
    geofence_id: uuid.UUID
    safety_critical: bool
    recipients: int
    queued: int
    suppressed: dict[str, int]
    explanations: dict[str, str] = Field(description="Each `suppressed` reason in words for staff.")
    quiet_hours_end: datetime | None = Field(
        description="Held back for quiet hours: when the last of those people's quiet hours end "
        "(they are not told later: a broadcast is for now)."
    )
    sent_at: datetime


class ShiftRead(BaseModel):
    staff_user_id: uuid.UUID
    on_shift: ShiftWindowRead | None
    time_zone: str
    on_shift_now: bool


class HeldBack(BaseModel):
    reason: str
    count: int
    explanation: str


class PushOutcomes(BaseModel):
    delivered: int
    pending: int
    no_subscription: int
    subscription_expired: int
    push_failed: int


class OfferFunnelRead(BaseModel):
    """Every time the offer was a candidate for someone, and what became of it."""

    offer_id: uuid.UUID
    candidates: int
    queued: int
    held_back: list[HeldBack]
    push: PushOutcomes
    deferred_until: datetime | None = Field(
        description="Queued pushes waiting for quiet hours to end: the last of those ends."
    )


class PreviewItem(BaseModel):
    """One live offer at the place, as a new resident with default settings would meet it."""

    offer_id: uuid.UUID
    title: str
    specificity: Literal["place", "category", "organisation"]
    priority: int
    decision: Literal["queued", "suppressed"]
    reason: str | None
    deliver_after: datetime | None
    explanation: str
