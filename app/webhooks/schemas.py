"""Webhook endpoints in and out, the delivery log, replays."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.core.types import BoundedAwareDatetime, Flag
from app.events.types import EventType

PREFIXES = sorted({t.value.split(".", 1)[0] for t in EventType})
SUBSCRIBABLE = sorted([t.value for t in EventType] + [f"{p}.*" for p in PREFIXES] + ["*"])


def _check_types(value: list[str]) -> list[str]:
    bad = [t for t in value if t not in SUBSCRIBABLE]
    if bad:
        raise ValueError(f"unknown event types {bad}; known: {', '.join(SUBSCRIBABLE)}")
    return sorted(set(value))


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2048, description="https URL the events are POSTed to")
    description: str = Field(default="", max_length=200)
    event_types: list[str] = Field(min_length=1, max_length=40)
    geofence_ids: list[uuid.UUID] | None = Field(default=None, max_length=200)
    categories: list[str] | None = Field(default=None, max_length=40)
    include_person_ids: Flag = False

    _types = field_validator("event_types")(_check_types)

    @field_validator("categories")
    @classmethod
    def _categories(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(not 1 <= len(c) <= 40 for c in value):
            raise ValueError("a category has 1 to 40 characters")
        return value


class EndpointUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(default=None, max_length=200)
    event_types: list[str] | None = Field(default=None, min_length=1, max_length=40)
    geofence_ids: list[uuid.UUID] | None = Field(default=None, max_length=200)
    categories: list[str] | None = Field(default=None, max_length=40)
    include_person_ids: Flag | None = None
    enabled: Flag | None = Field(default=None, description="true re-enables a disabled endpoint")

    @field_validator("event_types")
    @classmethod
    def _types(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _check_types(value)


class EndpointRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    url: str
    description: str
    event_types: list[str]
    geofence_ids: list[uuid.UUID] | None
    categories: list[str] | None
    include_person_ids: bool
    status: str
    disabled_reason: str | None
    disabled_at: datetime | None
    failing_since: datetime | None
    previous_secret_until: datetime | None
    created_at: datetime


class EndpointCreated(EndpointRead):
    secret: str = Field(description="the signing secret (whsec_…): shown only this once")


class SecretRotated(BaseModel):
    secret: str
    previous_secret_valid_until: datetime


class MessageRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    msg_id: str
    event_type: str
    occurred_at: datetime
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    replay_of: uuid.UUID | None
    created_at: datetime
    finished_at: datetime | None


class AttemptRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    message_id: uuid.UUID
    msg_id: str
    attempt: int
    attempted_at: datetime
    status: str
    http_status: int | None
    latency_ms: float | None
    error: str | None


class ReplayRequest(BaseModel):
    """Either one message (`message_id`) or the messages of events in [`since`, `until`)."""

    model_config = ConfigDict(extra="forbid")

    message_id: uuid.UUID | None = None
    since: BoundedAwareDatetime | None = None
    until: BoundedAwareDatetime | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ReplayRequest:
        if self.message_id is not None:
            if self.since is not None or self.until is not None:
                raise ValueError("give either message_id or since/until, not both")
        elif self.since is None or self.until is None:
            raise ValueError("give message_id, or both since and until")
        elif self.since >= self.until:
            raise ValueError("since must be before until")
        return self


class Replayed(BaseModel):
    replayed: int
    message_ids: list[uuid.UUID]
