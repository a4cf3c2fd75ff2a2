"""The service functions the check-ins domain calls: `tasks_for_checkin` and `record_visit`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Role
from app.accounts.principal import Principal
from app.tasks import service
from app.tasks.schemas import TaskCreate, TaskUpdate
from tests.offers.helpers import Town

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


def editor(town: Town) -> Principal:
    return Principal("staff", town.editor.id, town.org_id, Role.editor)


async def make(db: AsyncSession, town: Town, title: str, **fields: Any) -> uuid.UUID:
    data: dict[str, Any] = {"title": title, "geofence_id": town.park}
    data.update(fields)
    task = await service.create_task(db, editor(town), TaskCreate(**data))
    return task.id


async def set_status(db: AsyncSession, town: Town, task_id: uuid.UUID, *steps: str) -> None:
    for step in steps:
        await service.update_task(db, editor(town), task_id, TaskUpdate(status=step))


async def test_tasks_for_checkin_are_the_workers_open_tasks_and_the_pool_there(
    db: AsyncSession, town: Town
) -> None:
    me = [town.worker.id]
    mine = await make(db, town, "Mine", assignee_ids=me)
    started = await make(db, town, "Started", assignee_ids=me, priority="urgent")
    await set_status(db, town, started, "in_progress")
    pool = await make(db, town, "Pool")
    done = await make(db, town, "Done", assignee_ids=me)
    await set_status(db, town, done, "in_progress", "done")
    cancelled = await make(db, town, "Cancelled pool")
    await set_status(db, town, cancelled, "cancelled")
    await make(db, town, "Someone else's", assignee_ids=[town.worker2.id])
    await make(db, town, "Elsewhere", assignee_ids=me, geofence_id=town.library)

    found = await service.tasks_for_checkin(
        db, organisation_id=town.org_id, geofence_id=town.park, worker_id=town.worker.id
    )
    assert [t.id for t in found] == [started, mine, pool]
    other_org = await service.tasks_for_checkin(
        db,
        organisation_id=town.other_worker.organisation_id,
        geofence_id=town.park,
        worker_id=town.other_worker.id,
    )
    assert other_org == []


async def test_record_visit_proves_only_the_workers_open_visit_tasks_at_that_place(
    db: AsyncSession, town: Town
) -> None:
    me = [town.worker.id]
    target = await make(db, town, "Needs visit", assignee_ids=me, requires_visit=True)
    shared = await make(
        db, town, "Shared", assignee_ids=[town.worker.id, town.worker2.id], requires_visit=True
    )
    await make(db, town, "No visit needed", assignee_ids=me)
    await make(db, town, "Pool visit", requires_visit=True)
    await make(db, town, "Theirs", assignee_ids=[town.worker2.id], requires_visit=True)
    await make(
        db, town, "Elsewhere", assignee_ids=me, requires_visit=True, geofence_id=town.library
    )
    cancelled = await make(db, town, "Cancelled", assignee_ids=me, requires_visit=True)
    await set_status(db, town, cancelled, "cancelled")

    checkin = uuid.uuid4()
    ids = await service.record_visit(
        db,
        organisation_id=town.org_id,
        worker_id=town.worker.id,
        geofence_id=town.park,
        checkin_id=checkin,
        at=NOW,
    )
    assert sorted(ids) == sorted([target, shared])
    task = await service.get_task(db, editor(town), target)
    assert task.proof_checkin_id == checkin
    assert task.proof_recorded_at == NOW
    wrong_org = await service.record_visit(
        db,
        organisation_id=town.other_worker.organisation_id,
        worker_id=town.worker.id,
        geofence_id=town.park,
        checkin_id=uuid.uuid4(),
        at=NOW,
    )
    assert wrong_org == []


async def test_record_visit_refuses_naive_times(db: AsyncSession, town: Town) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await service.record_visit(
            db,
            organisation_id=town.org_id,
            worker_id=town.worker.id,
            geofence_id=town.park,
            checkin_id=uuid.uuid4(),
            at=datetime(2026, 1, 1),
        )


async def test_tasks_near_for_worker_orders_priority_within_the_same_place(
    db: AsyncSession, town: Town
) -> None:
    me = [town.worker.id]
    low = await make(db, town, "Low", assignee_ids=me, priority="low")
    urgent = await make(db, town, "Urgent", assignee_ids=me, priority="urgent")
    rows = await service.tasks_near_for_worker(
        db, organisation_id=town.org_id, worker_id=town.worker.id
    )
    assert [t.id for t, _ in rows] == [urgent, low]
