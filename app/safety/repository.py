"""All SQL for lone working. Every request-path query is scoped by `organisation_id`; the
scheduled job's scans cover every organisation and claim rows with FOR UPDATE SKIP LOCKED.

Read-only, in the statements that need them: `tasks` and `task_assignees` (the worker's open
tasks at a place), `geofences` (the place's name and category), `presence_subjects` (the
worker's last fix) and `staff_users` (who is called). It writes only its own tables.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import case, delete, exists, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Role, StaffUser
from app.geofences.models import Geofence
from app.presence.models import PresenceSubject, SubjectKind
from app.safety.models import (
    CategoryVisitLength,
    LoneVisit,
    OnCallContact,
    SafetyAlert,
    VisitState,
)
from app.tasks.models import CLOSED_TASK_STATUSES, Task, TaskAssignee

ACTIVE = VisitState.active.value


# --- visits ------------------------------------------------------------------------------------


async def worker_task_at(
    session: AsyncSession, organisation_id: uuid.UUID, worker_id: uuid.UUID, geofence_id: uuid.UUID
) -> tuple[uuid.UUID, int | None] | None:
    """The worker's open task at this place that the visit is for (in progress first, then the
    most urgent), with its expected duration; None when they have none there."""
    stmt = (
        select(Task.id, Task.expected_duration_min)
        .join(TaskAssignee, TaskAssignee.task_id == Task.id)
        .where(
            Task.organisation_id == organisation_id,
            Task.geofence_id == geofence_id,
            TaskAssignee.staff_user_id == worker_id,
            Task.status.not_in(CLOSED_TASK_STATUSES),
        )
        .order_by(
            case((Task.status == "in_progress", 0), else_=1),
            case(
                (Task.priority == "urgent", 0),
                (Task.priority == "high", 1),
                (Task.priority == "normal", 2),
                else_=3,
            ),
            Task.created_at,
        )
        .limit(1)
    )
    row = (await session.execute(stmt)).first()
    return None if row is None else (row[0], row[1])


async def place_length(
    session: AsyncSession, organisation_id: uuid.UUID, geofence_id: uuid.UUID
) -> tuple[str, int | None] | None:
    """The place's name and its category's expected visit length (None: no default set)."""
    stmt = (
        select(Geofence.name, CategoryVisitLength.expected_duration_min)
        .outerjoin(
            CategoryVisitLength,
            (CategoryVisitLength.organisation_id == Geofence.organisation_id)
            & (CategoryVisitLength.category == Geofence.category),
        )
        .where(Geofence.organisation_id == organisation_id, Geofence.id == geofence_id)
    )
    row = (await session.execute(stmt)).first()
    return None if row is None else (row[0], row[1])


async def place_name(session: AsyncSession, geofence_id: uuid.UUID) -> str | None:
    stmt = select(Geofence.name).where(Geofence.id == geofence_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def start_visit(session: AsyncSession, values: dict[str, object]) -> uuid.UUID | None:
    """Insert a live visit unless the worker already has one at this place (then None)."""
    stmt = (
        insert(LoneVisit)
        .values(**values)
        .on_conflict_do_nothing(
            index_elements=["worker_id", "geofence_id"], index_where=text("state = 'active'")
        )
        .returning(LoneVisit.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def end_visits(
    session: AsyncSession,
    *,
    organisation_id: uuid.UUID,
    worker_id: uuid.UUID,
    geofence_id: uuid.UUID,
    at: datetime,
    reason: str,
) -> list[uuid.UUID]:
    stmt = (
        update(LoneVisit)
        .where(
            LoneVisit.organisation_id == organisation_id,
            LoneVisit.worker_id == worker_id,
            LoneVisit.geofence_id == geofence_id,
            LoneVisit.state == ACTIVE,
        )
        .values(state=VisitState.ended.value, ended_at=at, end_reason=reason)
        .returning(LoneVisit.id)
    )
    return list((await session.execute(stmt)).scalars())


async def own_visit(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    worker_id: uuid.UUID,
    visit_id: uuid.UUID,
    *,
    lock: bool = False,
) -> LoneVisit | None:
    stmt = select(LoneVisit).where(
        LoneVisit.organisation_id == organisation_id,
        LoneVisit.worker_id == worker_id,
        LoneVisit.id == visit_id,
    )
    if lock:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def active_visits(
    session: AsyncSession, organisation_id: uuid.UUID, worker_id: uuid.UUID
) -> list[LoneVisit]:
    stmt = (
        select(LoneVisit)
        .where(
            LoneVisit.organisation_id == organisation_id,
            LoneVisit.worker_id == worker_id,
            LoneVisit.state == ACTIVE,
        )
        .order_by(LoneVisit.started_at.desc())
    )
    return list((await session.execute(stmt)).scalars())


# --- the scheduled job's claims ---------------------------------------------------------------


async def claim_due_prompts(
    session: AsyncSession, due_before: datetime, limit: int
) -> list[LoneVisit]:
    """Live visits due before `due_before` whose worker has not been asked yet, locked; rows
    another process holds are skipped (it is asking)."""
    stmt = (
        select(LoneVisit)
        .where(
            LoneVisit.state == ACTIVE,
            LoneVisit.prompted_at.is_(None),
            LoneVisit.due_at <= due_before,
        )
        .order_by(LoneVisit.due_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list((await session.execute(stmt)).scalars())


async def claim_due_alarms(
    session: AsyncSession, prompted_before: datetime, limit: int
) -> list[LoneVisit]:
    """Live visits whose worker was asked before `prompted_before` and which have no alert
    yet, locked (SKIP LOCKED)."""
    stmt = (
        select(LoneVisit)
        .where(
            LoneVisit.state == ACTIVE,
            LoneVisit.prompted_at <= prompted_before,
            ~exists().where(SafetyAlert.visit_id == LoneVisit.id),
        )
        .order_by(LoneVisit.prompted_at)
        .limit(limit)
        .with_for_update(of=LoneVisit, skip_locked=True)
    )
    return list((await session.execute(stmt)).scalars())


async def insert_alert(session: AsyncSession, values: dict[str, object]) -> uuid.UUID | None:
    """The alert, unless its visit already has one (the unique index; then None)."""
    stmt = (
        insert(SafetyAlert)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["visit_id"])
        .returning(SafetyAlert.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def claim_due_resends(session: AsyncSession, now: datetime, limit: int) -> list[SafetyAlert]:
    stmt = (
        select(SafetyAlert)
        .where(SafetyAlert.acknowledged_at.is_(None), SafetyAlert.next_send_at <= now)
        .order_by(SafetyAlert.next_send_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list((await session.execute(stmt)).scalars())


# --- people -----------------------------------------------------------------------------------


async def last_fix(
    session: AsyncSession, organisation_id: uuid.UUID, worker_id: uuid.UUID
) -> tuple[datetime, float, float] | None:
    stmt = select(
        PresenceSubject.last_fix_at, PresenceSubject.last_lon, PresenceSubject.last_lat
    ).where(
        PresenceSubject.organisation_id == organisation_id,
        PresenceSubject.subject_kind == SubjectKind.staff.value,
        PresenceSubject.subject_id == worker_id,
    )
    row = (await session.execute(stmt)).first()
    if row is None or row[0] is None or row[1] is None or row[2] is None:
        return None
    return row[0], row[1], row[2]


async def staff_name(session: AsyncSession, staff_id: uuid.UUID) -> str | None:
    stmt = select(StaffUser.full_name).where(StaffUser.id == staff_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def on_call(session: AsyncSession, organisation_id: uuid.UUID) -> list[tuple[uuid.UUID, int]]:
    """The on-call list of active staff: (staff id, rank), rank order."""
    stmt = (
        select(OnCallContact.staff_user_id, OnCallContact.rank)
        .join(StaffUser, StaffUser.id == OnCallContact.staff_user_id)
        .where(OnCallContact.organisation_id == organisation_id, StaffUser.is_active)
        .order_by(OnCallContact.rank, OnCallContact.staff_user_id)
    )
    return [(r[0], r[1]) for r in (await session.execute(stmt)).all()]


async def is_on_call(
    session: AsyncSession, organisation_id: uuid.UUID, staff_id: uuid.UUID
) -> bool:
    stmt = select(OnCallContact.rank).where(
        OnCallContact.organisation_id == organisation_id,
        OnCallContact.staff_user_id == staff_id,
    )
    return (await session.execute(stmt)).first() is not None


async def admins(session: AsyncSession, organisation_id: uuid.UUID) -> list[uuid.UUID]:
    stmt = (
        select(StaffUser.id)
        .where(
            StaffUser.organisation_id == organisation_id,
            StaffUser.role == Role.admin,
            StaffUser.is_active,
        )
        .order_by(StaffUser.id)
    )
    return list((await session.execute(stmt)).scalars())


async def active_staff_ids(
    session: AsyncSession, organisation_id: uuid.UUID, ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    if not ids:
        return set()
    stmt = select(StaffUser.id).where(
        StaffUser.organisation_id == organisation_id,
        StaffUser.id.in_(list(ids)),
        StaffUser.is_active,
    )
    return set((await session.execute(stmt)).scalars())


async def replace_on_call(
    session: AsyncSession, organisation_id: uuid.UUID, contacts: list[tuple[uuid.UUID, int]]
) -> None:
    await session.execute(
        delete(OnCallContact).where(OnCallContact.organisation_id == organisation_id)
    )
    if contacts:
        await session.execute(
            insert(OnCallContact).values(
                [
                    {"organisation_id": organisation_id, "staff_user_id": s, "rank": r}
                    for s, r in contacts
                ]
            )
        )


# --- alerts -----------------------------------------------------------------------------------


async def list_alerts(
    session: AsyncSession, organisation_id: uuid.UUID, *, open_only: bool, limit: int
) -> list[SafetyAlert]:
    stmt = select(SafetyAlert).where(SafetyAlert.organisation_id == organisation_id)
    if open_only:
        stmt = stmt.where(SafetyAlert.acknowledged_at.is_(None))
    stmt = stmt.order_by(SafetyAlert.raised_at.desc(), SafetyAlert.id).limit(limit)
    return list((await session.execute(stmt)).scalars())


async def get_alert(
    session: AsyncSession, organisation_id: uuid.UUID, alert_id: uuid.UUID, *, lock: bool = False
) -> SafetyAlert | None:
    stmt = select(SafetyAlert).where(
        SafetyAlert.organisation_id == organisation_id, SafetyAlert.id == alert_id
    )
    if lock:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


# --- category lengths -------------------------------------------------------------------------


async def category_lengths(
    session: AsyncSession, organisation_id: uuid.UUID
) -> list[CategoryVisitLength]:
    stmt = (
        select(CategoryVisitLength)
        .where(CategoryVisitLength.organisation_id == organisation_id)
        .order_by(CategoryVisitLength.category)
    )
    return list((await session.execute(stmt)).scalars())


async def set_category_length(
    session: AsyncSession, organisation_id: uuid.UUID, category: str, minutes: int
) -> None:
    stmt = (
        insert(CategoryVisitLength)
        .values(organisation_id=organisation_id, category=category, expected_duration_min=minutes)
        .on_conflict_do_update(
            index_elements=["organisation_id", "category"],
            set_={"expected_duration_min": minutes},
        )
    )
    await session.execute(stmt)


async def delete_category_length(
    session: AsyncSession, organisation_id: uuid.UUID, category: str
) -> bool:
    stmt = (
        delete(CategoryVisitLength)
        .where(
            CategoryVisitLength.organisation_id == organisation_id,
            CategoryVisitLength.category == category,
        )
        .returning(CategoryVisitLength.category)
    )
    return (await session.execute(stmt)).first() is not None


async def purge(
    session: AsyncSession, *, visits_ended_before: datetime, alerts_acknowledged_before: datetime
) -> tuple[int, int]:
    """Delete ended visits and acknowledged alerts older than the cut-offs; (visits, alerts)."""
    alerts = await session.execute(
        delete(SafetyAlert)
        .where(SafetyAlert.acknowledged_at < alerts_acknowledged_before)
        .returning(SafetyAlert.id)
    )
    visits = await session.execute(
        delete(LoneVisit)
        .where(LoneVisit.state == VisitState.ended.value, LoneVisit.ended_at < visits_ended_before)
        .returning(LoneVisit.id)
    )
    return len(visits.all()), len(alerts.all())


async def count_alerts(session: AsyncSession, organisation_id: uuid.UUID) -> int:
    stmt = select(func.count()).where(SafetyAlert.organisation_id == organisation_id)
    return int((await session.execute(stmt.select_from(SafetyAlert))).scalar_one())
