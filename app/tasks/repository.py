"""All SQL for tasks. Every query is scoped by the caller's `organisation_id`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from geoalchemy2 import Geography
from sqlalchemy import (
    Boolean,
    ColumnElement,
    DateTime,
    Select,
    Uuid,
    and_,
    case,
    cast,
    delete,
    exists,
    func,
    not_,
    or_,
    select,
    tuple_,
    union,
    update,
)
from sqlalchemy import column as sa_column
from sqlalchemy import table as sa_table
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer, selectinload

from app.accounts.models import Role, StaffUser
from app.core.near import NearPoint
from app.core.pagination import PageParams
from app.geofences.models import Geofence
from app.presence.models import Presence, PresenceState, PresenceSubject, SubjectKind
from app.tasks.models import (
    CLOSED_TASK_STATUSES,
    Priority,
    Task,
    TaskAssignee,
    TaskPhoto,
    TaskStatus,
    TaskTransition,
)

_Sel = TypeVar("_Sel", bound=Select[*tuple[Any, ...]])

# The check-ins table, read-only: a visit is proved by a check-in (the check-ins domain imports
# tasks, so tasks names the columns it reads rather than importing its model)
_CHECKINS = sa_table(
    "checkins",
    sa_column("id", Uuid()),
    sa_column("organisation_id", Uuid()),
    sa_column("staff_user_id", Uuid()),
    sa_column("geofence_id", Uuid()),
    sa_column("recorded_at", DateTime(timezone=True)),
    sa_column("implausible_jump", Boolean()),
)


def _with_assignees(stmt: _Sel) -> _Sel:
    return stmt.options(selectinload(Task.assignee_links))


def assigned_to(worker_id: uuid.UUID) -> ColumnElement[bool]:
    return exists().where(TaskAssignee.task_id == Task.id, TaskAssignee.staff_user_id == worker_id)


def in_pool() -> ColumnElement[bool]:
    """Unassigned open tasks any field worker of the organisation may claim."""
    return and_(
        Task.status == TaskStatus.open.value,
        not_(exists().where(TaskAssignee.task_id == Task.id)),
    )


def visible_to_worker(worker_id: uuid.UUID) -> ColumnElement[bool]:
    return or_(assigned_to(worker_id), in_pool())


async def add(session: AsyncSession, row: Task | TaskTransition | TaskPhoto) -> None:
    session.add(row)
    await session.flush()


async def get_task(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    task_id: uuid.UUID,
    *,
    worker_id: uuid.UUID | None = None,
    lock: bool = False,
) -> Task | None:
    """The task, or None if it is not in the organisation (or, for a field worker, not theirs)."""
    stmt = select(Task).where(Task.id == task_id, Task.organisation_id == organisation_id)
    if worker_id is not None:
        stmt = stmt.where(visible_to_worker(worker_id))
    if lock:
        # Serialises concurrent changes (two workers claiming the same pool task).
        stmt = stmt.with_for_update(of=Task)
    return (await session.execute(_with_assignees(stmt))).scalar_one_or_none()


async def reload(session: AsyncSession, task: Task) -> Task:
    stmt = _with_assignees(select(Task).where(Task.id == task.id)).execution_options(
        populate_existing=True
    )
    return (await session.execute(stmt)).scalar_one()


async def transitions(session: AsyncSession, task_id: uuid.UUID) -> list[TaskTransition]:
    stmt = (
        select(TaskTransition)
        .where(TaskTransition.task_id == task_id)
        .order_by(TaskTransition.at, TaskTransition.id)
    )
    return list((await session.execute(stmt)).scalars())


async def live_geofence(
    session: AsyncSession, organisation_id: uuid.UUID, geofence_id: uuid.UUID
) -> bool:
    stmt = select(Geofence.id).where(
        Geofence.id == geofence_id,
        Geofence.organisation_id == organisation_id,
        Geofence.deleted_at.is_(None),
    )
    return (await session.execute(stmt)).scalar_one_or_none() is not None


async def field_worker_ids(
    session: AsyncSession, organisation_id: uuid.UUID, ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    """Those of `ids` that are active field workers of this organisation."""
    if not ids:
        return set()
    stmt = select(StaffUser.id).where(
        StaffUser.id.in_(list(ids)),
        StaffUser.organisation_id == organisation_id,
        StaffUser.role == Role.field_worker,
        StaffUser.is_active.is_(True),
    )
    return set((await session.execute(stmt)).scalars())


async def list_tasks(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    page: PageParams,
    *,
    worker_id: uuid.UUID | None = None,
    status: str | None = None,
    geofence_id: uuid.UUID | None = None,
    assignee_id: uuid.UUID | None = None,
    priority: str | None = None,
    unassigned: bool | None = None,
) -> list[Task]:
    stmt = select(Task).where(Task.organisation_id == organisation_id)
    if worker_id is not None:
        stmt = stmt.where(visible_to_worker(worker_id))
    if status is not None:
        stmt = stmt.where(Task.status == status)
    if geofence_id is not None:
        stmt = stmt.where(Task.geofence_id == geofence_id)
    if assignee_id is not None:
        stmt = stmt.where(assigned_to(assignee_id))
    if priority is not None:
        stmt = stmt.where(Task.priority == priority)
    if unassigned is not None:
        has_any = exists().where(TaskAssignee.task_id == Task.id)
        stmt = stmt.where(not_(has_any) if unassigned else has_any)
    if page.cursor is not None:
        stmt = stmt.where(
            tuple_(Task.created_at, Task.id) > (page.cursor.created_at, page.cursor.id)
        )
    stmt = _with_assignees(stmt.order_by(Task.created_at, Task.id).limit(page.limit + 1))
    return list((await session.execute(stmt)).scalars())


_STATUS_RANK = case(
    (Task.status == TaskStatus.in_progress.value, 0),
    (Task.status == TaskStatus.assigned.value, 1),
    (Task.status == TaskStatus.open.value, 2),
    else_=3,
)
_PRIORITY_RANK = case(
    (Task.priority == Priority.urgent.value, 0),
    (Task.priority == Priority.high.value, 1),
    (Task.priority == Priority.normal.value, 2),
    else_=3,
)


def _ids_for_worker(
    organisation_id: uuid.UUID, worker_id: uuid.UUID, include_pool: bool
) -> ColumnElement[bool]:
    """The worker's task ids (and the pool's) as index lookups, not a per-row OR of EXISTS."""
    own = select(TaskAssignee.task_id).where(TaskAssignee.staff_user_id == worker_id)
    if not include_pool:
        return Task.id.in_(own)
    pool = select(Task.id).where(
        Task.organisation_id == organisation_id,
        Task.status == TaskStatus.open.value,
        not_(exists().where(TaskAssignee.task_id == Task.id)),
    )
    return Task.id.in_(union(own, pool))


async def tasks_for_worker(
    session: AsyncSession,
    *,
    organisation_id: uuid.UUID,
    worker_id: uuid.UUID,
    near: NearPoint | None,
    within_m: float | None,
    include_pool: bool,
    include_closed: bool,
    limit: int,
) -> list[tuple[Task, float | None]]:
    """The worker's tasks (and optionally the pool): open work first, then nearest first."""
    closed = Task.status.in_(CLOSED_TASK_STATUSES)
    # Pick the worker's (and pool) task ids first, materialised, so distances are computed only
    # for those rows and never for the whole organisation's tasks.
    picked = select(Task.id.label("id")).where(
        Task.organisation_id == organisation_id,
        _ids_for_worker(organisation_id, worker_id, include_pool),
    )
    if not include_closed:
        picked = picked.where(not_(closed))
    order: list[Any] = [case((closed, 1), else_=0)]
    if near is not None:
        point = cast(func.ST_SetSRID(func.ST_MakePoint(near.lon, near.lat), 4326), Geography)
        picked = picked.join(Geofence, Geofence.id == Task.geofence_id).add_columns(
            func.ST_Distance(Geofence.geog, point).label("distance_m")
        )
        if within_m is not None:
            picked = picked.where(func.ST_DWithin(Geofence.geog, point, within_m))
    # Materialised: the worker's (and pool) rows are chosen first and distances computed only
    # for them; otherwise the planner may compute distances for the whole organisation's tasks.
    candidates = picked.cte("candidates").prefix_with("MATERIALIZED")
    stmt = select(Task).join(candidates, candidates.c.id == Task.id)
    if near is not None:
        stmt = stmt.add_columns(candidates.c.distance_m)
        order.append(candidates.c.distance_m)
    order += [_STATUS_RANK, _PRIORITY_RANK, Task.due_at.asc().nulls_last(), Task.created_at]
    stmt = _with_assignees(stmt.order_by(*order, Task.id).limit(limit))
    rows: list[Any] = list((await session.execute(stmt)).all())
    if near is None:
        return [(row[0], None) for row in rows]
    return [(row[0], float(row[1])) for row in rows]


async def tasks_at_place_for_worker(
    session: AsyncSession,
    *,
    organisation_id: uuid.UUID,
    geofence_id: uuid.UUID,
    worker_id: uuid.UUID,
) -> list[Task]:
    stmt = select(Task).where(
        Task.organisation_id == organisation_id,
        Task.geofence_id == geofence_id,
        Task.status.not_in(CLOSED_TASK_STATUSES),
        visible_to_worker(worker_id),
    )
    stmt = _with_assignees(
        stmt.order_by(_STATUS_RANK, _PRIORITY_RANK, Task.due_at.asc().nulls_last(), Task.id)
    )
    return list((await session.execute(stmt)).scalars())


async def set_visit_proof(
    session: AsyncSession,
    *,
    organisation_id: uuid.UUID,
    worker_id: uuid.UUID,
    geofence_id: uuid.UUID,
    checkin_id: uuid.UUID,
    at: datetime,
) -> list[uuid.UUID]:
    stmt = (
        update(Task)
        .where(
            Task.organisation_id == organisation_id,
            Task.geofence_id == geofence_id,
            Task.requires_visit.is_(True),
            Task.status.not_in(CLOSED_TASK_STATUSES),
            assigned_to(worker_id),
        )
        .values(
            proof_checkin_id=checkin_id,
            proof_recorded_at=at,
            proof_source="checkin",
            updated_at=func.now(),
        )
        .returning(Task.id)
        .execution_options(synchronize_session="fetch")
    )
    return list((await session.execute(stmt)).scalars())


async def staff_by_email(
    session: AsyncSession, organisation_id: uuid.UUID, email: str
) -> StaffUser | None:
    stmt = select(StaffUser).where(
        StaffUser.organisation_id == organisation_id, func.lower(StaffUser.email) == email.lower()
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def task_titled(session: AsyncSession, organisation_id: uuid.UUID, title: str) -> bool:
    stmt = select(Task.id).where(Task.organisation_id == organisation_id, Task.title == title)
    return (await session.execute(stmt.limit(1))).scalar_one_or_none() is not None


async def visit_checkin(
    session: AsyncSession,
    *,
    organisation_id: uuid.UUID,
    worker_ids: Sequence[uuid.UUID],
    geofence_id: uuid.UUID,
    since: datetime,
) -> tuple[uuid.UUID, datetime] | None:
    """The latest plausible check-in of one of these workers at the place since `since`."""
    if not worker_ids:
        return None
    stmt = (
        select(_CHECKINS.c.id, _CHECKINS.c.recorded_at)
        .where(
            _CHECKINS.c.organisation_id == organisation_id,
            _CHECKINS.c.staff_user_id.in_(list(worker_ids)),
            _CHECKINS.c.geofence_id == geofence_id,
            _CHECKINS.c.recorded_at >= since,
            _CHECKINS.c.implausible_jump.is_(False),
        )
        .order_by(_CHECKINS.c.recorded_at.desc())
        .limit(1)
    )
    row = (await session.execute(stmt)).first()
    return None if row is None else (row[0], row[1])


async def present_inside(
    session: AsyncSession,
    *,
    organisation_id: uuid.UUID,
    worker_ids: Sequence[uuid.UUID],
    geofence_id: uuid.UUID,
    fix_since: datetime,
) -> bool:
    """One of these workers is inside the place, by the presence engine, with a recent fix."""
    if not worker_ids:
        return False
    # the fix's time is the worker's last evaluated fix: a presence row is written again only
    # when its state or what is pending there changes (app/presence/models.py,
    # PRESENCE_LAST_FIX_AT)
    stmt = (
        select(Presence.subject_id)
        .join(PresenceSubject, PresenceSubject.subject_id == Presence.subject_id)
        .where(
            Presence.organisation_id == organisation_id,
            Presence.subject_kind == SubjectKind.staff.value,
            Presence.subject_id.in_(list(worker_ids)),
            PresenceSubject.subject_id.in_(list(worker_ids)),
            Presence.geofence_id == geofence_id,
            Presence.state == PresenceState.inside.value,
            PresenceSubject.last_fix_at >= fix_since,
        )
    )
    return (await session.execute(stmt.limit(1))).first() is not None


async def photo_count(session: AsyncSession, task_id: uuid.UUID) -> int:
    stmt = select(func.count()).select_from(TaskPhoto).where(TaskPhoto.task_id == task_id)
    return int((await session.execute(stmt)).scalar_one())


async def photos(session: AsyncSession, task_id: uuid.UUID) -> list[TaskPhoto]:
    """A task's photos without their bytes (deferred), oldest first."""
    stmt = (
        select(TaskPhoto)
        .where(TaskPhoto.task_id == task_id)
        .options(defer(TaskPhoto.data))
        .order_by(TaskPhoto.created_at, TaskPhoto.id)
    )
    return list((await session.execute(stmt)).scalars())


async def photo(session: AsyncSession, task_id: uuid.UUID, photo_id: uuid.UUID) -> TaskPhoto | None:
    stmt = select(TaskPhoto).where(TaskPhoto.task_id == task_id, TaskPhoto.id == photo_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def photos_by_uploader(session: AsyncSession, staff_user_id: uuid.UUID) -> list[TaskPhoto]:
    stmt = (
        select(TaskPhoto)
        .where(TaskPhoto.uploaded_by == staff_user_id)
        .order_by(TaskPhoto.created_at, TaskPhoto.id)
    )
    return list((await session.execute(stmt)).scalars())


async def delete_photos_by_uploader(session: AsyncSession, staff_user_id: uuid.UUID) -> int:
    stmt = delete(TaskPhoto).where(TaskPhoto.uploaded_by == staff_user_id).returning(TaskPhoto.id)
    return len(list((await session.execute(stmt)).scalars()))


async def delete_photo(session: AsyncSession, task_id: uuid.UUID, photo_id: uuid.UUID) -> bool:
    stmt = (
        delete(TaskPhoto)
        .where(TaskPhoto.task_id == task_id, TaskPhoto.id == photo_id)
        .returning(TaskPhoto.id)
    )
    return (await session.execute(stmt)).first() is not None


async def purge_photos(session: AsyncSession, closed_before: datetime) -> int:
    """Photos of tasks closed (done or cancelled) before `closed_before`: the task's retention."""
    closed_at = (
        select(func.max(TaskTransition.at))
        .where(TaskTransition.task_id == Task.id)
        .correlate(Task)
        .scalar_subquery()
    )
    expired = select(Task.id).where(
        Task.status.in_(CLOSED_TASK_STATUSES), closed_at < closed_before
    )
    stmt = delete(TaskPhoto).where(TaskPhoto.task_id.in_(expired)).returning(TaskPhoto.id)
    return len(list((await session.execute(stmt)).scalars()))
