"""The demo town gets places, then offers and tasks at them; loading twice changes nothing."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import service as accounts_service
from app.demo import load_demo
from app.geofences.models import Geofence
from app.offers.demo import load_demo_offers
from app.offers.models import Offer
from app.tasks.demo import load_demo_tasks
from app.tasks.models import Task, TaskAssignee


async def count(db: AsyncSession, model: type[Offer] | type[Task]) -> int:
    return int((await db.execute(select(func.count()).select_from(model))).scalar_one())


async def test_offers_and_tasks_are_skipped_for_an_organisation_without_places(
    db: AsyncSession,
) -> None:
    org = await accounts_service.get_or_create_organisation(db, "placeless", "Placeless")
    lines = await load_demo_offers(db, org) + await load_demo_tasks(db, org)
    assert any("offer skipped" in line for line in lines), lines
    assert any("tasks skipped" in line or "task skipped" in line for line in lines), lines


async def test_demo_offers_and_tasks_attach_to_demo_places_idempotently(db: AsyncSession) -> None:
    offers_before, tasks_before = await count(db, Offer), await count(db, Task)
    lines = await load_demo(db)
    assert not any("skipped" in line for line in lines)
    offers_after, tasks_after = await count(db, Offer), await count(db, Task)
    assert offers_after - offers_before >= 2
    assert tasks_after - tasks_before >= 2
    library_id = (
        await db.execute(select(Geofence.id).where(Geofence.external_id == "DEMO-LIB-CENTRAL"))
    ).scalar_one()
    stock = (
        await db.execute(select(Task).where(Task.title.startswith("Library stock check")))
    ).scalar_one()
    assert stock.geofence_id == library_id
    assert stock.status == "assigned"
    worker = (
        await db.execute(select(TaskAssignee.staff_user_id).where(TaskAssignee.task_id == stock.id))
    ).scalar_one()
    assert worker is not None

    await load_demo(db)
    assert (await count(db, Offer), await count(db, Task)) == (offers_after, tasks_after)
