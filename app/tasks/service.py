"""Task rules: who may see and change which task, the status workflow and proof of visit.

Workflow (every change is a `TaskTransition` row with who, when, from, to and an optional note):

    open ──▶ assigned ──▶ in_progress ──▶ done
      │        │  ▲            │
      │        ▼  └────────────┘ (pause)
      │       open (back to the pool)
      └────────┴───────────────┴──▶ cancelled
    done / cancelled ──▶ open       (reopen: editors and admins only)

Field workers see their own tasks plus the unassigned pool; they claim a pool task
(open → assigned, adding themselves), start it, pause it and complete it. A `requires_visit`
task reaches done only once the check-ins domain has recorded a visit (`record_visit`).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Role
from app.accounts.principal import Principal
from app.core.near import NearPoint
from app.core.pagination import PageParams, trim_page
from app.core.subject import SubjectRef
from app.events import service as events_service
from app.events.types import Event, Source, task_type
from app.tasks import repository
from app.tasks.errors import (
    IllegalTransition,
    InvalidTaskChange,
    PhotoNotFound,
    TaskNotFound,
    TooManyPhotos,
    TransitionForbidden,
    UnknownAssignee,
    UnknownGeofence,
    VisitRequired,
)
from app.tasks.models import (
    CLOSED_TASK_STATUSES,
    Task,
    TaskAssignee,
    TaskPhoto,
    TaskStatus,
    TaskTransition,
)
from app.tasks.photos import MAX_PHOTOS_PER_TASK, clean_photo
from app.tasks.schemas import TaskCreate, TaskUpdate

S = TaskStatus
ALLOWED: dict[TaskStatus, frozenset[TaskStatus]] = {
    S.open: frozenset({S.assigned, S.cancelled}),
    S.assigned: frozenset({S.in_progress, S.open, S.cancelled}),
    S.in_progress: frozenset({S.done, S.assigned, S.cancelled}),
    S.done: frozenset({S.open}),
    S.cancelled: frozenset({S.open}),
}
# What a field worker may do to a task assigned to them (claiming the pool is handled apart).
WORKER_MOVES: frozenset[tuple[TaskStatus, TaskStatus]] = frozenset(
    {
        (S.open, S.assigned),
        (S.assigned, S.in_progress),
        (S.in_progress, S.done),
        (S.in_progress, S.assigned),
    }
)
WORKER_FIELDS = frozenset({"status", "note"})
# A check-in at the place proves a visit for tasks completed within this long of it.
DEFAULT_VISIT_WINDOW = timedelta(minutes=120)
# Presence proves a visit while the worker is inside the place with a fix at most this old.
PRESENCE_FRESH = timedelta(minutes=15)


def is_manager(principal: Principal) -> bool:
    return principal.role in (Role.admin, Role.editor)


def _worker_scope(principal: Principal) -> uuid.UUID | None:
    """Field workers only ever load their own tasks and the pool; managers load everything."""
    return None if is_manager(principal) else principal.id


async def _check_geofence(
    session: AsyncSession, organisation_id: uuid.UUID, geofence_id: uuid.UUID
) -> None:
    if not await repository.live_geofence(session, organisation_id, geofence_id):
        raise UnknownGeofence(
            f"No such place in your organisation: {geofence_id}.", extra={"field": "geofence_id"}
        )


async def _check_assignees(
    session: AsyncSession, organisation_id: uuid.UUID, ids: list[uuid.UUID]
) -> None:
    found = await repository.field_worker_ids(session, organisation_id, ids)
    missing = [str(i) for i in ids if i not in found]
    if missing:
        raise UnknownAssignee(
            "Tasks can only be assigned to active field workers of your organisation; "
            f"not: {', '.join(missing)}.",
            extra={"field": "assignee_ids", "unknown": missing},
        )


# Called in the same transaction after every status transition (task, from, to, note): other
# domains follow tasks without the tasks domain knowing them (Open311 reports, app/open311).
TransitionHook = Callable[[AsyncSession, Task, str | None, str, str | None], Awaitable[None]]
_transition_hooks: list[TransitionHook] = []


def register_transition_hook(hook: TransitionHook) -> None:
    """Run `hook` after every task status transition (idempotent)."""
    if hook not in _transition_hooks:
        _transition_hooks.append(hook)


async def _record(
    session: AsyncSession,
    task: Task,
    actor_id: uuid.UUID | None,
    from_status: str | None,
    to_status: str,
    note: str | None,
) -> None:
    task.status = to_status
    at = datetime.now(UTC)
    await repository.add(
        session,
        TaskTransition(
            organisation_id=task.organisation_id,
            task_id=task.id,
            actor_id=actor_id,
            from_status=from_status,
            to_status=to_status,
            note=note,
            at=at,
        ),
    )
    for hook in _transition_hooks:
        await hook(session, task, from_status, to_status, note)
    kind = task_type(from_status, to_status)
    await events_service.record(
        session,
        [
            Event(
                id=uuid.uuid4(),
                organisation_id=task.organisation_id,
                type=kind,
                source=Source.task,
                occurred_at=at,
                subject=None
                if actor_id is None
                else SubjectRef("staff", actor_id, task.organisation_id),
                geofence_id=task.geofence_id,
                data={
                    "task_id": str(task.id),
                    "title": task.title,
                    "from_status": from_status,
                    "to_status": to_status,
                },
            )
        ],
    )


async def create_task(session: AsyncSession, principal: Principal, data: TaskCreate) -> Task:
    return await create_task_for(session, principal.organisation_id, principal.id, data)


async def create_task_for(
    session: AsyncSession, org: uuid.UUID, actor_id: uuid.UUID | None, data: TaskCreate
) -> Task:
    """`create_task` on behalf of an organisation; `actor_id` None = no staff member (a report
    filed through Open311 becomes a task by itself)."""
    await _check_geofence(session, org, data.geofence_id)
    await _check_assignees(session, org, data.assignee_ids)
    status = S.assigned if data.assignee_ids else S.open
    task = Task(
        organisation_id=org,
        geofence_id=data.geofence_id,
        title=data.title,
        description=data.description,
        priority=data.priority.value,
        due_at=data.due_at,
        status=status.value,
        requires_visit=data.requires_visit,
        expected_duration_min=data.expected_duration_min,
        created_by=actor_id,
        created_at=datetime.now(UTC),
        assignee_links=[TaskAssignee(staff_user_id=w) for w in data.assignee_ids],
    )
    await repository.add(session, task)
    await _record(session, task, actor_id, None, status.value, data.note)
    return await repository.reload(session, task)


async def get_task(session: AsyncSession, principal: Principal, task_id: uuid.UUID) -> Task:
    task = await repository.get_task(
        session, principal.organisation_id, task_id, worker_id=_worker_scope(principal)
    )
    if task is None:
        raise TaskNotFound()
    return task


async def transitions(session: AsyncSession, task: Task) -> list[TaskTransition]:
    return await repository.transitions(session, task.id)


def _set_assignees(task: Task, ids: list[uuid.UUID]) -> None:
    current = {link.staff_user_id: link for link in task.assignee_links}
    task.assignee_links = [
        current.get(w) or TaskAssignee(task_id=task.id, staff_user_id=w) for w in ids
    ]


async def _prove_visit(session: AsyncSession, task: Task, window: timedelta) -> bool:
    """Record proof of visit from a check-in within `window` or presence inside the place.

    A visit is proof for every task at that place completed within it, whether the task was
    assigned before the visit or taken from the pool afterwards.
    """
    now = datetime.now(UTC)
    found = await repository.visit_checkin(
        session,
        organisation_id=task.organisation_id,
        worker_ids=task.assignee_ids,
        geofence_id=task.geofence_id,
        since=now - window,
    )
    if found is not None:
        task.proof_checkin_id, task.proof_recorded_at = found
        task.proof_source = "checkin"
        return True
    if await repository.present_inside(
        session,
        organisation_id=task.organisation_id,
        worker_ids=task.assignee_ids,
        geofence_id=task.geofence_id,
        fix_since=now - PRESENCE_FRESH,
    ):
        task.proof_recorded_at = now
        task.proof_source = "presence"
        return True
    return False


async def _transition(
    session: AsyncSession,
    principal: Principal,
    task: Task,
    target: TaskStatus,
    note: str | None,
    visit_window: timedelta = DEFAULT_VISIT_WINDOW,
) -> None:
    current = TaskStatus(task.status)
    if target == current:
        raise IllegalTransition(
            f"The task is already {current.value}.",
            extra={"from": current.value, "to": target.value},
        )
    if target not in ALLOWED[current]:
        hint = " Reopen it first (editors and admins)." if current in (S.done, S.cancelled) else ""
        raise IllegalTransition(
            f"A task cannot go from {current.value} to {target.value}.{hint}",
            extra={
                "from": current.value,
                "to": target.value,
                "allowed": sorted(s.value for s in ALLOWED[current]),
            },
        )
    manager = is_manager(principal)
    mine = principal.id in task.assignee_ids
    claim = current == S.open and target == S.assigned and not task.assignee_ids
    if not manager:
        if claim:
            _set_assignees(task, [principal.id])
        elif not (mine and (current, target) in WORKER_MOVES):
            raise TransitionForbidden(
                f"Field workers cannot move a task from {current.value} to {target.value}"
                + ("" if mine else " unless it is assigned to them")
                + ".",
                extra={"from": current.value, "to": target.value},
            )
    if target == S.assigned and not task.assignee_ids:
        raise IllegalTransition(
            "Assign someone first: set assignee_ids in the same request.",
            extra={"from": current.value, "to": target.value},
        )
    if (
        target == S.done
        and task.requires_visit
        and task.proof_recorded_at is None
        and not await _prove_visit(session, task, visit_window)
    ):
        minutes = int(visit_window.total_seconds() // 60)
        raise VisitRequired(
            "This task needs a visit: check in at its place (a check-in in the last "
            f"{minutes} minutes counts) before marking it done.",
            extra={
                "from": current.value,
                "to": target.value,
                "requires_visit": True,
                "visit_window_min": minutes,
            },
        )
    if target == S.open and current == S.assigned:
        _set_assignees(task, [])  # back to the team pool
    if current in (S.done, S.cancelled):
        # A reopened task needs a fresh visit.
        task.proof_checkin_id = None
        task.proof_recorded_at = None
        task.proof_source = None
    await _record(session, task, principal.id, current.value, target.value, note)


async def update_task(
    session: AsyncSession,
    principal: Principal,
    task_id: uuid.UUID,
    data: TaskUpdate,
    *,
    visit_window: timedelta = DEFAULT_VISIT_WINDOW,
) -> Task:
    org = principal.organisation_id
    task = await repository.get_task(
        session, org, task_id, worker_id=_worker_scope(principal), lock=True
    )
    if task is None:
        raise TaskNotFound()
    fields = set(data.model_fields_set)
    if not is_manager(principal) and fields - WORKER_FIELDS:
        extra_fields = ", ".join(sorted(fields - WORKER_FIELDS))
        raise TransitionForbidden(
            f"Field workers may only change a task's status (not {extra_fields})."
        )
    changes: dict[str, Any] = {k: getattr(data, k) for k in fields - {"status", "note"}}
    note = data.note
    auto_status: TaskStatus | None = None
    if "geofence_id" in changes and changes["geofence_id"] != task.geofence_id:
        await _check_geofence(session, org, changes["geofence_id"])
        task.proof_checkin_id = None  # a visit elsewhere proves nothing here
        task.proof_recorded_at = None
        task.proof_source = None
    if "assignee_ids" in changes:
        ids: list[uuid.UUID] = changes.pop("assignee_ids")
        await _check_assignees(session, org, ids)
        status = TaskStatus(task.status)
        if not ids and status == S.in_progress:
            raise IllegalTransition(
                "A task in progress needs an assignee; move it back to assigned or cancel it.",
                extra={"field": "assignee_ids"},
            )
        _set_assignees(task, ids)
        if ids and status == S.open:
            auto_status = S.assigned
        elif not ids and status == S.assigned:
            auto_status = S.open
    for name, value in changes.items():
        setattr(task, name, value.value if hasattr(value, "value") else value)
    if auto_status is not None:
        await _record(session, task, principal.id, task.status, auto_status.value, note)
        note = None
    if data.status is not None and data.status != auto_status:
        await _transition(session, principal, task, data.status, note or data.note, visit_window)
        note = None
    if note is not None and "note" in fields:
        raise InvalidTaskChange(
            "A note is recorded with a status change; send it together with `status`.",
            extra={"field": "note"},
        )
    task.updated_at = datetime.now(UTC)
    await session.flush()
    return await repository.reload(session, task)


async def list_tasks(
    session: AsyncSession,
    principal: Principal,
    page: PageParams,
    **filters: Any,
) -> tuple[list[Task], str | None]:
    rows = await repository.list_tasks(
        session, principal.organisation_id, page, worker_id=_worker_scope(principal), **filters
    )
    return trim_page(rows, page)


async def tasks_near_for_worker(
    session: AsyncSession,
    *,
    organisation_id: uuid.UUID,
    worker_id: uuid.UUID,
    near: NearPoint | None = None,
    within_m: float | None = None,
    include_pool: bool = False,
    include_closed: bool = False,
    limit: int = 50,
) -> list[tuple[Task, float | None]]:
    """A worker's tasks, open work first, then nearest first (geodesic metres to the place).

    Used by `GET /v1/me/tasks` and by the notification rules for "tasks near me" pushes.
    """
    return await repository.tasks_for_worker(
        session,
        organisation_id=organisation_id,
        worker_id=worker_id,
        near=near,
        within_m=within_m,
        include_pool=include_pool,
        include_closed=include_closed,
        limit=limit,
    )


async def tasks_for_checkin(
    session: AsyncSession,
    *,
    organisation_id: uuid.UUID,
    geofence_id: uuid.UUID,
    worker_id: uuid.UUID,
) -> list[Task]:
    """The worker's open/assigned/in-progress tasks at this place plus the pool tasks there."""
    return await repository.tasks_at_place_for_worker(
        session, organisation_id=organisation_id, geofence_id=geofence_id, worker_id=worker_id
    )


async def record_visit(
    session: AsyncSession,
    *,
    organisation_id: uuid.UUID,
    worker_id: uuid.UUID,
    geofence_id: uuid.UUID,
    checkin_id: uuid.UUID,
    at: datetime,
) -> list[uuid.UUID]:
    """Mark a check-in as proof of visit on the worker's requires_visit tasks at this place.

    Only tasks assigned to this worker that are not done or cancelled; returns their ids.
    """
    if at.tzinfo is None:
        raise ValueError("`at` must be timezone-aware")
    return await repository.set_visit_proof(
        session,
        organisation_id=organisation_id,
        worker_id=worker_id,
        geofence_id=geofence_id,
        checkin_id=checkin_id,
        at=at,
    )


# --- completion photos ---------------------------------------------------------------------


async def _task_for_photos(
    session: AsyncSession, principal: Principal, task_id: uuid.UUID, *, lock: bool = False
) -> Task:
    """The task if the caller may see its photos: managers, or a field worker assigned to it."""
    task = await repository.get_task(
        session, principal.organisation_id, task_id, worker_id=_worker_scope(principal), lock=lock
    )
    if task is None or not (is_manager(principal) or principal.id in task.assignee_ids):
        raise TaskNotFound()
    return task


async def add_photo(
    session: AsyncSession, principal: Principal, task_id: uuid.UUID, raw: bytes, max_bytes: int
) -> TaskPhoto:
    """Attach a completion photo (up to three per task) to a task that is not closed."""
    task = await _task_for_photos(session, principal, task_id, lock=True)
    if task.status in CLOSED_TASK_STATUSES:
        raise IllegalTransition(
            f"The task is {task.status}; photos are added before it is completed.",
            extra={"field": "photo"},
        )
    if await repository.photo_count(session, task.id) >= MAX_PHOTOS_PER_TASK:
        raise TooManyPhotos(
            f"A task takes at most {MAX_PHOTOS_PER_TASK} photos; remove one first.",
            extra={"field": "photo", "max_photos": MAX_PHOTOS_PER_TASK},
        )
    clean = clean_photo(raw, max_bytes)
    photo = TaskPhoto(
        organisation_id=task.organisation_id,
        task_id=task.id,
        uploaded_by=principal.id,
        content_type=clean.content_type,
        width=clean.width,
        height=clean.height,
        data=clean.data,
        created_at=datetime.now(UTC),
    )
    await repository.add(session, photo)
    return photo


async def list_photos(
    session: AsyncSession, principal: Principal, task_id: uuid.UUID
) -> list[TaskPhoto]:
    task = await _task_for_photos(session, principal, task_id)
    return await repository.photos(session, task.id)


async def get_photo(
    session: AsyncSession, principal: Principal, task_id: uuid.UUID, photo_id: uuid.UUID
) -> TaskPhoto:
    task = await _task_for_photos(session, principal, task_id)
    photo = await repository.photo(session, task.id, photo_id)
    if photo is None:
        raise PhotoNotFound()
    return photo


async def delete_photo(
    session: AsyncSession, principal: Principal, task_id: uuid.UUID, photo_id: uuid.UUID
) -> None:
    """Remove a photo from a task that is not closed (the worker's own, or any for managers)."""
    task = await _task_for_photos(session, principal, task_id, lock=True)
    photo = await repository.photo(session, task.id, photo_id)
    if photo is None:
        raise PhotoNotFound()
    if not is_manager(principal) and photo.uploaded_by != principal.id:
        raise TransitionForbidden("Field workers may only remove their own photos.")
    if task.status in CLOSED_TASK_STATUSES:
        raise IllegalTransition(f"The task is {task.status}; its photos are its record.")
    await repository.delete_photo(session, task.id, photo_id)


async def photos_of_staff(session: AsyncSession, staff_user_id: uuid.UUID) -> list[TaskPhoto]:
    """Every photo a staff member uploaded (for their data export)."""
    return await repository.photos_by_uploader(session, staff_user_id)


async def erase_photos_of_staff(session: AsyncSession, staff_user_id: uuid.UUID) -> int:
    """Delete every photo a staff member uploaded (their erasure); returns how many."""
    return await repository.delete_photos_by_uploader(session, staff_user_id)


async def purge_photos(session: AsyncSession, retention: timedelta, now: datetime) -> int:
    """Delete the photos of tasks closed longer ago than `retention`; returns how many."""
    return await repository.purge_photos(session, now - retention)
