"""Offer payloads. Inputs forbid unknown fields; `OfferPublic` is what residents may see."""

from __future__ import annotations

import uuid
from datetime import datetime, time
from typing import Annotated, Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)

from app.core.types import BoundedAwareDatetime, Flag, SafeUrl
from app.offers.models import (
    BODY_MAX,
    TITLE_MAX,
    TOLD_COOLDOWN_DEFAULT_S,
    URL_MAX,
    Audience,
    Offer,
    OfferStatus,
    QuietHoursPolicy,
    Trigger,
)


def _time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("must be an IANA time zone name such as Europe/London") from exc
    return value


def _unique_triggers(value: list[Trigger]) -> list[Trigger]:
    seen: list[Trigger] = []
    for t in value:
        if t not in seen:
            seen.append(t)
    return seen


def _unique_ids(value: list[uuid.UUID]) -> list[uuid.UUID]:
    return list(dict.fromkeys(value))


HttpsUrl = Annotated[SafeUrl, Field(max_length=URL_MAX)]
TimeZoneName = Annotated[str, Field(max_length=64), AfterValidator(_time_zone)]
Title = Annotated[str, Field(min_length=1, max_length=TITLE_MAX)]
Body = Annotated[str, Field(min_length=1, max_length=BODY_MAX)]
CategoryName = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[a-z0-9_]+$")]
Triggers = Annotated[
    list[Trigger], Field(min_length=1, max_length=4), AfterValidator(_unique_triggers)
]
GeofenceIds = Annotated[list[uuid.UUID], Field(max_length=200), AfterValidator(_unique_ids)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class TimeWindow(StrictModel):
    """Local wall-clock hours when the offer applies; `end` before `start` crosses midnight."""

    start: time = Field(examples=["17:00"])
    end: time = Field(examples=["20:00"])
    time_zone: TimeZoneName = Field(examples=["Europe/London"])

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("start and end are local times without an offset; use time_zone")
        if self.start == self.end:
            raise ValueError("start and end must differ")
        return self


class OfferCreate(StrictModel):
    title: Title
    body: Body = Field(description=f"Notification text, at most {BODY_MAX} characters.")
    url: HttpsUrl | None = None
    image_url: HttpsUrl | None = None
    geofence_ids: GeofenceIds = Field(default_factory=list)
    category: CategoryName | None = Field(
        default=None, description="Applies at every place of this category, e.g. `library`."
    )
    triggers: Triggers
    valid_from: BoundedAwareDatetime | None = None
    valid_until: BoundedAwareDatetime | None = None
    time_window: TimeWindow | None = None
    outside_opening_hours_ok: Flag = False
    cooldown_s: int = Field(
        default=TOLD_COOLDOWN_DEFAULT_S,
        ge=0,
        le=31_536_000,
        description="Told: at least this long between two pushes of it to one person.",
    )
    told_max: int | None = Field(
        default=None, ge=1, le=1000, description="Told: at most this many pushes per person."
    )
    max_per_person: int = Field(
        default=1, ge=1, le=1000, description="Redeem: at most this many redemptions per device."
    )
    max_total: int | None = Field(default=None, ge=1, le=10_000_000)
    priority: int = Field(
        default=0,
        ge=-100,
        le=100,
        description="Among equally specific offers at a place, the higher wins the push.",
    )
    audience: Audience = Audience.residents
    status: OfferStatus = OfferStatus.draft
    quiet_hours_policy: QuietHoursPolicy = QuietHoursPolicy.drop

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if not self.geofence_ids and self.category is None:
            raise ValueError("say where the offer applies: geofence_ids and/or category")
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        return self


class OfferUpdate(StrictModel):
    """Every field optional; `null` clears optional ones. The result is validated as a whole."""

    title: Title | None = None
    body: Body | None = None
    url: HttpsUrl | None = None
    image_url: HttpsUrl | None = None
    geofence_ids: GeofenceIds | None = None
    category: CategoryName | None = None
    triggers: Triggers | None = None
    valid_from: BoundedAwareDatetime | None = None
    valid_until: BoundedAwareDatetime | None = None
    time_window: TimeWindow | None = None
    outside_opening_hours_ok: Flag | None = None
    cooldown_s: int | None = Field(default=None, ge=0, le=31_536_000)
    told_max: int | None = Field(default=None, ge=1, le=1000)
    max_per_person: int | None = Field(default=None, ge=1, le=1000)
    max_total: int | None = Field(default=None, ge=1, le=10_000_000)
    priority: int | None = Field(default=None, ge=-100, le=100)
    audience: Audience | None = None
    status: OfferStatus | None = None
    quiet_hours_policy: QuietHoursPolicy | None = None

    @model_validator(mode="after")
    def _required_not_null(self) -> Self:
        for name in (
            "title",
            "body",
            "geofence_ids",
            "triggers",
            "outside_opening_hours_ok",
            "cooldown_s",
            "max_per_person",
            "priority",
            "audience",
            "status",
            "quiet_hours_policy",
        ):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


LOCAL_TIME = Field(
    pattern=r"^[0-2][0-9]:[0-5][0-9]:[0-5][0-9]$",
    examples=["17:00:00"],
    description="Local wall-clock time (HH:MM:SS, no offset: see time_zone).",
)


class TimeWindowRead(BaseModel):
    """`start`/`end` are local times without an offset, so they are not `format: time` (RFC 3339
    times carry one): a pattern describes them instead."""

    start: str = LOCAL_TIME
    end: str = LOCAL_TIME
    time_zone: str


class OfferPublic(BaseModel):
    """What a resident (or a field worker, for staff offers) sees."""

    id: uuid.UUID
    title: str
    body: str
    url: str | None
    image_url: str | None
    geofence_ids: list[uuid.UUID]
    category: str | None
    valid_from: datetime | None
    valid_until: datetime | None
    time_window: TimeWindowRead | None
    distance_m: float | None = Field(
        default=None, description="Distance to the nearest place it applies at (with `near=`)."
    )


class OfferRead(BaseModel):
    id: uuid.UUID
    organisation_id: uuid.UUID
    title: str
    body: str
    url: str | None
    image_url: str | None
    geofence_ids: list[uuid.UUID]
    category: str | None
    triggers: list[Trigger]
    valid_from: datetime | None
    valid_until: datetime | None
    time_window: TimeWindowRead | None
    outside_opening_hours_ok: bool
    cooldown_s: int
    told_max: int | None
    max_per_person: int
    max_total: int | None
    priority: int
    audience: Audience
    status: OfferStatus
    quiet_hours_policy: QuietHoursPolicy
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class RedemptionRead(BaseModel):
    id: uuid.UUID
    offer_id: uuid.UUID
    redeemed_at: datetime
    redemptions_by_you: int
    remaining_for_you: int
    code: str = Field(description="Show this at the desk: it works once, while the offer is valid.")


class CodeCheck(BaseModel):
    """What the desk sees for a redemption code."""

    code: str
    offer_id: uuid.UUID
    offer_title: str
    redeemed_at: datetime
    used_at: datetime | None
    valid_now: bool = Field(description="Not used yet and the offer still valid: accept it.")


class RedeemRequest(StrictModel):
    geofence_id: uuid.UUID | None = Field(
        default=None, description="Where it was redeemed, if known (for staff statistics)."
    )


class OfferStats(BaseModel):
    offer_id: uuid.UUID
    redeemed: int = Field(description="Redemptions recorded.")
    redeemed_people: int = Field(description="Distinct devices that redeemed.")
    remaining_total: int | None = Field(description="Redemptions left under max_total.")
    sent: int | None = Field(
        default=None,
        description="Notifications queued for sending about this offer (notification rules).",
    )
    opened: int | None = Field(
        default=None,
        description="Of those, how many the person opened (POST /v1/me/notifications/{id}/opened).",
    )


def _window(offer: Offer) -> TimeWindowRead | None:
    if offer.window_start is None or offer.window_end is None or offer.time_zone is None:
        return None
    return TimeWindowRead(
        start=offer.window_start.isoformat(timespec="seconds"),
        end=offer.window_end.isoformat(timespec="seconds"),
        time_zone=offer.time_zone,
    )


def _public_fields(offer: Offer) -> dict[str, Any]:
    """What residents see of an offer; staff see these and more (`offer_read`)."""
    return {
        "id": offer.id,
        "title": offer.title,
        "body": offer.body,
        "url": offer.url,
        "image_url": offer.image_url,
        "geofence_ids": offer.geofence_ids,
        "category": offer.category,
        "valid_from": offer.valid_from,
        "valid_until": offer.valid_until,
        "time_window": _window(offer),
    }


def offer_read(offer: Offer) -> OfferRead:
    return OfferRead(
        **_public_fields(offer),
        organisation_id=offer.organisation_id,
        triggers=[Trigger(t) for t in offer.triggers],
        outside_opening_hours_ok=offer.outside_opening_hours_ok,
        cooldown_s=offer.cooldown_s,
        told_max=offer.told_max,
        max_per_person=offer.max_per_person,
        max_total=offer.max_total,
        priority=offer.priority,
        audience=Audience(offer.audience),
        status=OfferStatus(offer.status),
        quiet_hours_policy=QuietHoursPolicy(offer.quiet_hours_policy),
        created_by=offer.created_by,
        created_at=offer.created_at,
        updated_at=offer.updated_at,
    )


def offer_public(offer: Offer, distance_m: float | None = None) -> OfferPublic:
    return OfferPublic(
        **_public_fields(offer),
        distance_m=None if distance_m is None else round(distance_m, 1),
    )
