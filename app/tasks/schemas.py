"""Task payloads. Inputs forbid unknown fields."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from app.core.types import BoundedAwareDatetime, Flag
from app.tasks.models import CLOSED_TASK_STATUSES, Priority, Task, TaskStatus, TaskTransition

MAX_ASSIGNEES = 20


def _unique_ids(value: list[uuid.UUID]) -> list[uuid.UUID]:
    return list(dict.fromkeys(value))


AssigneeIds = Annotated[
    list[uuid.UUID], Field(max_length=MAX_ASSIGNEES), AfterValidator(_unique_ids)
]
Title = Annotated[str, Field(min_length=1, max_length=200)]
Description = Annotated[str, Field(max_length=4000)]
Note = Annotated[str, Field(min_length=1, max_length=1000)]
ExpectedMinutes = Annotated[
    int,
    Field(
        ge=1,
        le=24 * 60,
        description="Lone working: minutes a visit for this task should take (1-1440); null = "
        "the place category's default, else the organisation's.",
    ),
]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class TaskCreate(StrictModel):
    title: Title
    description: Description = ""
    geofence_id: uuid.UUID = Field(description="The place where the work is done.")
    assignee_ids: AssigneeIds = Field(
        default_factory=list,
        description="Field workers of your organisation; empty leaves it in the team pool.",
    )
    priority: Priority = Priority.normal
    due_at: BoundedAwareDatetime | None = None
    requires_visit: Flag = Field(
        default=False, description="Done only with a check-in at the place as proof of visit."
    )
    expected_duration_min: ExpectedMinutes | None = None
    note: Note | None = None


class TaskUpdate(StrictModel):
    """Editors may change anything; field workers only `status` (and `note`).

    `status` moves the task through open → assigned → in_progress → done, or cancelled;
    done/cancelled → open (reopen) is for editors and admins. Setting `assignee_ids` on an open
    task assigns it; emptying them on an assigned task returns it to the pool. A field worker
    claims a pool task with `{"status": "assigned"}`.
    """

    title: Title | None = None
    description: Description | None = None
    geofence_id: uuid.UUID | None = None
    assignee_ids: AssigneeIds | None = None
    priority: Priority | None = None
    due_at: BoundedAwareDatetime | None = None
    requires_visit: Flag | None = None
    expected_duration_min: ExpectedMinutes | None = None
    status: TaskStatus | None = None
    note: Note | None = Field(default=None, description="Recorded with the status transition.")

    @model_validator(mode="after")
    def _required_not_null(self) -> Self:
        for name in (
            "title",
            "description",
            "geofence_id",
            "assignee_ids",
            "priority",
            "requires_visit",
            "status",
        ):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class TaskTransitionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    actor_id: uuid.UUID | None
    from_status: TaskStatus | None
    to_status: TaskStatus
    note: str | None
    at: datetime


class TaskRead(BaseModel):
    id: uuid.UUID
    organisation_id: uuid.UUID
    geofence_id: uuid.UUID
    title: str
    description: str
    priority: Priority
    due_at: datetime | None
    status: TaskStatus
    assignee_ids: list[uuid.UUID]
    requires_visit: bool
    expected_duration_min: int | None = Field(
        default=None, description="Lone working: minutes a visit should take (null: defaults)."
    )
    proof_checkin_id: uuid.UUID | None
    proof_recorded_at: datetime | None
    proof_source: str | None = Field(
        default=None,
        description="How the visit was proved: `checkin` (proof_checkin_id) or `presence`.",
    )
    overdue: bool = Field(default=False, description="Past its due date and not done or cancelled.")
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    distance_m: float | None = Field(
        default=None, description="Metres to the task's place (with `near=`)."
    )
    transitions: list[TaskTransitionRead] | None = Field(
        default=None, description="Every status change, oldest first (single-task responses)."
    )


def task_read(
    task: Task,
    *,
    transitions: list[TaskTransition] | None = None,
    distance_m: float | None = None,
) -> TaskRead:
    return TaskRead(
        id=task.id,
        organisation_id=task.organisation_id,
        geofence_id=task.geofence_id,
        title=task.title,
        description=task.description,
        priority=Priority(task.priority),
        due_at=task.due_at,
        status=TaskStatus(task.status),
        assignee_ids=task.assignee_ids,
        requires_visit=task.requires_visit,
        expected_duration_min=task.expected_duration_min,
        proof_checkin_id=task.proof_checkin_id,
        proof_recorded_at=task.proof_recorded_at,
        proof_source=task.proof_source,
        overdue=task.due_at is not None
        and task.due_at < datetime.now(UTC)
        and task.status not in CLOSED_TASK_STATUSES,
        created_by=task.created_by,
        created_at=task.created_at,
        updated_at=task.updated_at,
        distance_m=None if distance_m is None else round(distance_m, 1),
        transitions=None
        if transitions is None
        else [TaskTransitionRead.model_validate(t) for t in transitions],
    )
