"""The one event type every source records (`app.events.service.record`)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from app.core.subject import SubjectRef


class Source(StrEnum):
    ping = "ping"
    checkin = "checkin"
    task = "task"
    offer = "offer"
    broadcast = "broadcast"
    report = "report"


class EventType(StrEnum):
    """The public names of events (webhook `type`s)."""

    place_entered = "place.entered"
    place_exited = "place.exited"
    place_dwelled = "place.dwelled"
    place_nearby = "place.nearby"
    place_passed_through = "place.passed_through"
    checkin_created = "checkin.created"
    task_created = "task.created"
    task_assigned = "task.assigned"
    task_in_progress = "task.in_progress"
    task_done = "task.done"
    task_cancelled = "task.cancelled"
    task_reopened = "task.reopened"
    task_unassigned = "task.unassigned"
    offer_redeemed = "offer.redeemed"
    broadcast_sent = "broadcast.sent"
    report_created = "report.created"


# presence_events.type → public type
PRESENCE_TYPES: dict[str, EventType] = {
    "enter": EventType.place_entered,
    "exit": EventType.place_exited,
    "dwell": EventType.place_dwelled,
    "nearby": EventType.place_nearby,
    "passed_through": EventType.place_passed_through,
    "checkin": EventType.checkin_created,
}

# task status reached → public type (`open` is reached by creating, by reopening a closed task,
# or by handing an assigned one back to the pool: `task_type` tells them apart)
TASK_TYPES: dict[str, EventType] = {
    "assigned": EventType.task_assigned,
    "in_progress": EventType.task_in_progress,
    "done": EventType.task_done,
    "cancelled": EventType.task_cancelled,
    "open": EventType.task_reopened,
}


def task_type(from_status: str | None, to_status: str) -> EventType:
    if from_status is None:
        return EventType.task_created
    if to_status == "open" and from_status not in ("done", "cancelled"):
        return EventType.task_unassigned
    return TASK_TYPES[to_status]


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened in an organisation, about a person and/or a place.

    `data` holds the type's own fields and `explanation` why it happened (both JSON-ready).
    `presence` is the `presence_events` row (ping and check-in events), for hooks that read the
    event log's columns (the notification rules); `hints` are for hooks only, never published.
    """

    id: uuid.UUID
    organisation_id: uuid.UUID
    type: EventType
    source: Source
    occurred_at: datetime
    subject: SubjectRef | None = None
    geofence_id: uuid.UUID | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    explanation: Mapping[str, Any] = field(default_factory=dict)
    presence: dict[str, Any] | None = None
    # for hooks only, never published (e.g. whether the rules could apply to a check-in)
    hints: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_presence(cls, row: dict[str, Any], **hints: Any) -> Event:
        """From a `presence_events` row as `presence.service.event_row` builds it."""
        subject = (
            SubjectRef("device", row["device_id"], row["organisation_id"])
            if row["device_id"] is not None
            else SubjectRef("staff", row["staff_user_id"], row["organisation_id"])
        )
        data: dict[str, Any] = {}
        if row.get("checkin_id") is not None:
            data["checkin_id"] = str(row["checkin_id"])
        return cls(
            id=row["id"],
            organisation_id=row["organisation_id"],
            type=PRESENCE_TYPES[row["type"]],
            source=Source(row["source"]),
            occurred_at=row["occurred_at"],
            subject=subject,
            geofence_id=row["geofence_id"],
            data=data,
            explanation=row.get("explanation") or {},
            presence=row,
            hints=hints,
        )
