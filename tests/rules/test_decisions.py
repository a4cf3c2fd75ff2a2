"""Decisions straight from ping batches (rolled-back database, no push): dedup across places,
told_max (max_reached), expired and closed, each recorded with its reason."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Organisation
from app.core.config import Settings
from app.offers.models import Offer, OfferGeofence
from app.presence import service as presence_service
from app.presence.models import SubjectKind
from app.rules import service as rules_service
from app.rules.models import NotificationPreference
from tests.factories import create_organisation, create_resident
from tests.presence.helpers import at, create_circle


async def resident_without_quiet_hours(db: AsyncSession, org: Organisation) -> uuid.UUID:
    res = await create_resident(db, org)
    db.add(
        NotificationPreference(
            organisation_id=org.id, device_id=res.id, time_zone="Europe/London", max_per_day=50
        )
    )
    await db.flush()
    return res.id


async def walk(
    db: AsyncSession,
    settings: Settings,
    org: Organisation,
    who: uuid.UUID,
    east_to: float,
    tag: str,
    *,
    ago_s: float = 0.0,
) -> None:
    end = datetime.now(UTC) - timedelta(seconds=ago_s)
    steps = int((east_to + 100.0) / 15.0) + 1
    fixes = [
        presence_service.PingInput(
            id=f"{tag}-{k}",
            lon=at(-100.0 + 15.0 * k, 0.0)[0],
            lat=at(-100.0 + 15.0 * k, 0.0)[1],
            recorded_at=end - timedelta(seconds=2 * (steps - k)),
            accuracy_m=5.0,
        )
        for k in range(steps)
    ]
    subject = presence_service.Subject(SubjectKind.device, who, org.id)
    await presence_service.ingest_ping_batch(
        db, settings, subject, fixes, on_events=rules_service.event_hook(settings)
    )


async def decisions(db: AsyncSession, who: uuid.UUID) -> list[tuple[Any, ...]]:
    rows = await db.execute(
        text(
            "SELECT o.title, d.decision, d.reason FROM notification_decisions d "
            "JOIN offers o ON o.id = d.offer_id WHERE d.subject_id = :s "
            "ORDER BY d.created_at, o.title"
        ),
        {"s": who},
    )
    return [tuple(r) for r in rows]


def offer(org: Organisation, title: str, places: list[uuid.UUID], **kw: Any) -> Offer:
    fields: dict[str, Any] = {
        "organisation_id": org.id,
        "title": title,
        "body": "b",
        "triggers": ["enter"],
        "status": "active",
        "cooldown_s": 3600,
        "max_per_person": 5,
        "geofence_links": [OfferGeofence(geofence_id=g) for g in places],
    }
    fields.update(kw)
    return Offer(**fields)


async def test_same_offer_at_two_places_in_one_walk_is_queued_once(
    db: AsyncSession, settings: Settings
) -> None:
    org = await create_organisation(db)
    a = await create_circle(db, org.id, 0.0, 0.0, 20.0, name="A")
    b = await create_circle(db, org.id, 300.0, 0.0, 20.0, name="B")
    db.add(offer(org, "Both", [a, b]))
    await db.flush()
    who = await resident_without_quiet_hours(db, org)
    await walk(db, settings, org, who, 400.0, "w")
    assert await decisions(db, who) == [
        ("Both", "queued", None),
        ("Both", "suppressed", "cooldown"),
    ]


async def test_told_max_expired_and_closed_are_explained(
    db: AsyncSession, settings: Settings
) -> None:
    org = await create_organisation(db)
    lib = await create_circle(db, org.id, 0.0, 0.0, 20.0, name="Lib")
    shut = await create_circle(db, org.id, 300.0, 0.0, 20.0, name="Shut")
    await db.execute(
        text("UPDATE geofences SET opening_hours = CAST(:oh AS jsonb) WHERE id = :g"),
        {"oh": '{"time_zone": "Europe/London", "weekly": {}}', "g": shut},
    )
    now = datetime.now(UTC)
    db.add(offer(org, "Once", [lib], cooldown_s=0, told_max=1))
    db.add(offer(org, "Gone", [lib], valid_until=now - timedelta(hours=1), cooldown_s=0))
    db.add(offer(org, "Shut", [shut], cooldown_s=0))
    await db.flush()
    who = await resident_without_quiet_hours(db, org)
    await walk(db, settings, org, who, 50.0, "first", ago_s=300.0)
    await walk(db, settings, org, who, 400.0, "second")
    got = await decisions(db, who)
    assert ("Once", "queued", None) in got
    assert ("Once", "suppressed", "max_reached") in got
    assert ("Gone", "suppressed", "expired") in got
    assert ("Shut", "suppressed", "closed") in got
    assert sum(g[0] == "Once" and g[1] == "queued" for g in got) == 1
