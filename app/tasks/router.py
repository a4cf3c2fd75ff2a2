"""Tasks for field workers at places. Status changes go through PATCH with `status` + `note`."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from app.audit import service as audit_service
from app.core.db import Session
from app.core.deps import AppSettings
from app.core.near import parse_near
from app.core.pagination import Page, Pagination
from app.tasks import service
from app.tasks.dependencies import CurrentStaff, EditorUser
from app.tasks.models import Priority, TaskStatus
from app.tasks.schemas import TaskCreate, TaskRead, TaskUpdate, task_read

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])
me_router = APIRouter(prefix="/v1/me", tags=["tasks"])


@router.post("", response_model=TaskRead, status_code=status.HTTP_201_CREATED)
async def create_task(session: Session, editor: EditorUser, body: TaskCreate) -> TaskRead:
    """Editor: create a task at a place, assigned to field workers or left in the team pool."""
    task = await service.create_task(session, editor, body)
    await audit_service.record(
        session, editor, "task.create", "task", task.id, {"title": task.title}
    )
    return task_read(task, transitions=await service.transitions(session, task))


@router.get("", response_model=Page[TaskRead])
async def list_tasks(
    *,
    session: Session,
    staff: CurrentStaff,
    page: Pagination,
    status_: Annotated[TaskStatus | None, Query(alias="status")] = None,
    geofence_id: Annotated[uuid.UUID | None, Query()] = None,
    assignee_id: Annotated[uuid.UUID | None, Query()] = None,
    priority: Annotated[Priority | None, Query()] = None,
    unassigned: Annotated[bool | None, Query(description="true: the team pool only.")] = None,
) -> Page[TaskRead]:
    """Staff: the organisation's tasks (field workers: their own plus the unassigned pool)."""
    rows, next_cursor = await service.list_tasks(
        session,
        staff,
        page,
        status=status_.value if status_ else None,
        geofence_id=geofence_id,
        assignee_id=assignee_id,
        priority=priority.value if priority else None,
        unassigned=unassigned,
    )
    return Page[TaskRead](items=[task_read(t) for t in rows], next_cursor=next_cursor)


@router.get("/{task_id}", response_model=TaskRead)
async def get_task(session: Session, staff: CurrentStaff, task_id: uuid.UUID) -> TaskRead:
    """Staff: one task with its transition history (field workers: own or pool tasks only)."""
    task = await service.get_task(session, staff, task_id)
    return task_read(task, transitions=await service.transitions(session, task))


@router.patch("/{task_id}", response_model=TaskRead)
async def update_task(
    session: Session,
    settings: AppSettings,
    staff: CurrentStaff,
    task_id: uuid.UUID,
    body: TaskUpdate,
) -> TaskRead:
    """Change a task; `status` (+ `note`) moves it through the workflow and is recorded."""
    window = timedelta(minutes=settings.task_visit_window_min)
    task = await service.update_task(session, staff, task_id, body, visit_window=window)
    details: dict[str, Any] = {"fields": sorted(body.model_dump(exclude_unset=True))}
    if body.status is not None:
        details["status"] = task.status
    await audit_service.record(session, staff, "task.update", "task", task_id, details)
    return task_read(task, transitions=await service.transitions(session, task))


@me_router.get("/tasks", response_model=Page[TaskRead])
async def my_tasks(
    *,
    session: Session,
    staff: CurrentStaff,
    near: Annotated[
        str | None,
        Query(max_length=64, description="`lon,lat`: nearest first + distance_m."),
    ] = None,
    within_m: Annotated[float | None, Query(gt=0, le=100_000)] = None,
    include_pool: Annotated[bool, Query(description="Also the unassigned pool tasks.")] = False,
    include_closed: Annotated[bool, Query(description="Also done and cancelled tasks.")] = False,
    limit: Annotated[int, Query(description="Values above 500 are clamped.")] = 100,
) -> Page[TaskRead]:
    """The caller's own tasks: open work first, nearest first when `near=lon,lat` is given."""
    rows = await service.tasks_near_for_worker(
        session,
        organisation_id=staff.organisation_id,
        worker_id=staff.id,
        near=parse_near(near) if near is not None else None,
        within_m=within_m,
        include_pool=include_pool,
        include_closed=include_closed,
        limit=max(1, min(limit, 500)),
    )
    return Page[TaskRead](items=[task_read(t, distance_m=d) for t, d in rows])
