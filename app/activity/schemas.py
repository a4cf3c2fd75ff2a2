"""The activity feed's items: one shape for every kind of event."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field


class ActivityKind(StrEnum):
    """What the feed is filtered by (the console's words, one per event source)."""

    presence = "presence"  # entered, left, stayed at, passed near or through a place (pings)
    checkin = "checkin"
    task = "task"  # created and every transition
    redemption = "redemption"  # a resident redeemed an offer
    broadcast = "broadcast"
    report = "report"  # an Open311 report was filed


# event source (app.events.types.Source) → kind
KIND_OF_SOURCE: dict[str, ActivityKind] = {
    "ping": ActivityKind.presence,
    "checkin": ActivityKind.checkin,
    "task": ActivityKind.task,
    "offer": ActivityKind.redemption,
    "broadcast": ActivityKind.broadcast,
    "report": ActivityKind.report,
}
SOURCE_OF_KIND = {kind: source for source, kind in KIND_OF_SOURCE.items()}


class Actor(BaseModel):
    """Who the event is about or who acted: a resident (never named) or a staff member."""

    kind: Literal["resident", "staff"]
    id: uuid.UUID
    name: str | None = Field(default=None, description="Staff members only.")
    role: str | None = Field(default=None, description="Staff members only.")


class ActivityItem(BaseModel):
    id: uuid.UUID
    kind: ActivityKind
    type: str = Field(description="The public event type (as webhooks name it), e.g. task.done.")
    occurred_at: datetime
    geofence_id: uuid.UUID | None = None
    actor: Actor | None = None
    data: dict[str, Any] = Field(
        default_factory=dict,
        description="The type's own fields: a task's title and statuses, an offer's title, a "
        "broadcast's title and number of recipients, a report's service code.",
    )
    explanation: dict[str, Any] = Field(
        default_factory=dict, description="Presence and check-ins: why the event fired."
    )
