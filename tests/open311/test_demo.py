"""`make run`'s demo town offers two report types, once however often the demo is loaded."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.demo import DEMO_ORG_SLUG, load_demo
from app.open311 import repository, service


async def test_demo_town_has_report_types_once_and_public_reading(db: AsyncSession) -> None:
    first = await load_demo(db)
    await load_demo(db)
    org = await repository.organisation_id_by_slug(db, DEMO_ORG_SLUG)
    assert org is not None
    services = await service.list_services(db, org, active_only=True)
    assert sorted(s.code for s in services) == ["fly-tipping", "pothole"]
    fly = next(s for s in services if s.code == "fly-tipping")
    assert fly.place_categories == ["park"]
    assert [a["code"] for a in fly.attributes] == ["size"]
    assert (await service.read_settings(db, org))[1] is True
    assert "    open311: report type fly-tipping" in first
