"""The demo town gets offers and tasks at its places; loading twice changes nothing."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import service as accounts_service
from app.demo import DEMO_ORG_NAME, DEMO_ORG_SLUG, load_demo
from app.offers.models import Offer
from app.tasks.models import Task, TaskAssignee
from tests.offers.helpers import create_geofence


async def count(db: AsyncSession, model: type[Offer] | type[Task]) -> int:
    return int((await db.execute(select(func.count()).select_from(model))).scalar_one())


async def test_demo_without_places_skips_offers_and_tasks(db: AsyncSession) -> None:
    lines = await load_demo(db)
    assert any("offer skipped" in line for line in lines)
    assert any("task skipped" in line for line in lines)


async def test_demo_offers_and_tasks_attach_to_demo_places_idempotently(db: AsyncSession) -> None:
    org = await accounts_service.get_or_create_organisation(db, DEMO_ORG_SLUG, DEMO_ORG_NAME)
    library = await create_geofence(
        db, org.id, name="Central", category="library", external_id="DEMO-LIB-CENTRAL"
    )
    await create_geofence(db, org.id, lon=-1.24, name="Pool", category="leisure_centre")
    park = await create_geofence(db, org.id, lon=-1.23, name="Riverside", category="park")
    offers_before, tasks_before = await count(db, Offer), await count(db, Task)

    lines = await load_demo(db)
    assert await count(db, Offer) == offers_before + 3
    assert await count(db, Task) == tasks_before + 2
    assert not any("skipped" in line for line in lines)
    stock = (
        await db.execute(select(Task).where(Task.title.startswith("Library stock check")))
    ).scalar_one()
    assert stock.geofence_id == library.id
    assert stock.status == "assigned"
    worker = (
        await db.execute(select(TaskAssignee.staff_user_id).where(TaskAssignee.task_id == stock.id))
    ).scalar_one()
    assert worker is not None
    inspection = (
        await db.execute(select(Task).where(Task.title == "Weekly playground inspection"))
    ).scalar_one()
    assert (inspection.geofence_id, inspection.status) == (park.id, "open")

    await load_demo(db)
    assert await count(db, Offer) == offers_before + 3
    assert await count(db, Task) == tasks_before + 2
