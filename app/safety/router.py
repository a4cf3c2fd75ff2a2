"""Lone working: the worker's visits, "I need help", alerts and their acknowledgement, the
on-call list and the visit length of each place category (docs/tasks.md, "Lone working")."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from app.audit import service as audit_service
from app.core.db import Session
from app.core.deps import AppSettings
from app.safety import service
from app.safety.dependencies import AdminUser, CurrentStaff, EditorUser
from app.safety.models import SafetyAlert
from app.safety.schemas import (
    AcknowledgeBody,
    AlertRead,
    CategoryLength,
    CategoryLengthRead,
    ExtendBody,
    HelpBody,
    OnCallEntry,
    OnCallList,
    VisitRead,
)

router = APIRouter(tags=["lone working"])
CategoryName = Annotated[str, Path(min_length=1, max_length=40)]


def alert_read(alert: SafetyAlert, worker_name: str | None) -> AlertRead:
    read = AlertRead.model_validate(alert)
    read.worker_name = worker_name
    return read


@router.get("/v1/me/visits", response_model=list[VisitRead])
async def my_visits(session: Session, staff: CurrentStaff) -> list[VisitRead]:
    """Staff: the caller's live visits (inside a place for a task), newest first."""
    return [VisitRead.model_validate(v) for v in await service.my_visits(session, staff)]


@router.post("/v1/me/visits/{visit_id}/extend", response_model=VisitRead)
async def extend_visit(
    session: Session,
    settings: AppSettings,
    staff: CurrentStaff,
    visit_id: uuid.UUID,
    body: ExtendBody,
) -> VisitRead:
    """Staff: "I'm OK": the visit should end `minutes` later (the answer to the prompt)."""
    visit = await service.extend(
        session,
        staff,
        visit_id,
        body.minutes,
        now=datetime.now(UTC),
        max_min=settings.lone_working_extend_max_min,
    )
    await audit_service.record(
        session,
        staff,
        "safety.visit.extend",
        "lone_visit",
        visit.id,
        {"minutes": body.minutes, "due_at": visit.due_at.isoformat()},
    )
    return VisitRead.model_validate(visit)


@router.post("/v1/me/visits/{visit_id}/check-out", response_model=VisitRead)
async def check_out(session: Session, staff: CurrentStaff, visit_id: uuid.UUID) -> VisitRead:
    """Staff: the visit is over (the worker left or finished)."""
    visit = await service.check_out(session, staff, visit_id, now=datetime.now(UTC))
    await audit_service.record(session, staff, "safety.visit.check_out", "lone_visit", visit.id)
    return VisitRead.model_validate(visit)


@router.post("/v1/me/help", response_model=AlertRead, status_code=status.HTTP_201_CREATED)
async def need_help(
    session: Session, settings: AppSettings, staff: CurrentStaff, body: HelpBody
) -> AlertRead:
    """Staff: "I need help": alerts the on-call list at once, re-sent until acknowledged."""
    alert = await service.need_help(session, settings, staff, body, datetime.now(UTC))
    await audit_service.record(session, staff, "safety.help", "safety_alert", alert.id)
    return alert_read(alert, None)


@router.get("/v1/safety/alerts", response_model=list[AlertRead])
async def list_alerts(
    session: Session,
    staff: CurrentStaff,
    open_only: Annotated[bool, Query(alias="open", description="Only unacknowledged.")] = True,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[AlertRead]:
    """Admins, editors, the on-call list: alerts, newest first."""
    rows = await service.list_alerts(session, staff, open_only=open_only, limit=limit)
    return [alert_read(a, n) for a, n in rows]


@router.get("/v1/safety/alerts/{alert_id}", response_model=AlertRead)
async def get_alert(session: Session, staff: CurrentStaff, alert_id: uuid.UUID) -> AlertRead:
    """Admins, editors, the on-call list: one alert."""
    alert, name = await service.get_alert(session, staff, alert_id)
    return alert_read(alert, name)


@router.post("/v1/safety/alerts/{alert_id}/acknowledge", response_model=AlertRead)
async def acknowledge(
    session: Session, staff: CurrentStaff, alert_id: uuid.UUID, body: AcknowledgeBody
) -> AlertRead:
    """Admins, editors, the on-call list: "I've got this": the re-sends stop. Audited."""
    alert = await service.acknowledge(session, staff, alert_id, body.note, now=datetime.now(UTC))
    await audit_service.record(
        session,
        staff,
        "safety.alert.acknowledge",
        "safety_alert",
        alert.id,
        {
            "acknowledged_at": alert.acknowledged_at.isoformat() if alert.acknowledged_at else None,
            "level": alert.level,
            "note": body.note,
        },
    )
    alert_, name = await service.get_alert(session, staff, alert.id)
    return alert_read(alert_, name)


@router.get("/v1/safety/on-call", response_model=OnCallList)
async def get_on_call(session: Session, editor: EditorUser) -> OnCallList:
    """Admins, editors: who is called when an alarm is raised, by rank."""
    rows = await service.on_call(session, editor.organisation_id)
    return OnCallList(contacts=[OnCallEntry(staff_id=s, rank=r) for s, r in rows])


@router.put("/v1/safety/on-call", response_model=OnCallList)
async def put_on_call(session: Session, admin: AdminUser, body: OnCallList) -> OnCallList:
    """Admin: replace the on-call list (rank 1 is called first, the next rank at each re-send,
    then the admins)."""
    rows = await service.set_on_call(session, admin.organisation_id, body.contacts)
    await audit_service.record(
        session,
        admin,
        "safety.on_call.update",
        "organisation",
        admin.organisation_id,
        {"contacts": [{"staff_id": str(s), "rank": r} for s, r in rows]},
    )
    return OnCallList(contacts=[OnCallEntry(staff_id=s, rank=r) for s, r in rows])


@router.get("/v1/safety/visit-lengths", response_model=list[CategoryLengthRead])
async def visit_lengths(session: Session, editor: EditorUser) -> list[CategoryLengthRead]:
    """Admins, editors: the expected visit length of each place category that has one."""
    rows = await service.category_lengths(session, editor.organisation_id)
    return [CategoryLengthRead.model_validate(r) for r in rows]


@router.put("/v1/safety/visit-lengths/{category}", response_model=CategoryLengthRead)
async def put_visit_length(
    session: Session,
    settings: AppSettings,
    admin: AdminUser,
    category: CategoryName,
    body: CategoryLength,
) -> CategoryLengthRead:
    """Admin: a place category's expected visit length (tasks without their own)."""
    await service.set_category_length(
        session, settings, admin.organisation_id, category, body.expected_duration_min
    )
    await audit_service.record(
        session,
        admin,
        "safety.visit_length.set",
        "organisation",
        admin.organisation_id,
        {"category": category, "minutes": body.expected_duration_min},
    )
    return CategoryLengthRead(category=category, expected_duration_min=body.expected_duration_min)


@router.delete("/v1/safety/visit-lengths/{category}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_visit_length(session: Session, admin: AdminUser, category: CategoryName) -> None:
    """Admin: remove a category's visit length (back to the organisation's default)."""
    await service.delete_category_length(session, admin.organisation_id, category)
    await audit_service.record(
        session,
        admin,
        "safety.visit_length.delete",
        "organisation",
        admin.organisation_id,
        {"category": category},
    )
