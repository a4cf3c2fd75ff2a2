"""The rules keep the ping hot path set-based: a batch passing 2 or 12 places with offers (and
so 2 or 12 times the events and candidates) costs the same number of statements."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.core.config import Settings
from app.offers.models import Offer, OfferGeofence
from app.presence import service as presence_service
from app.presence.models import SubjectKind
from app.rules import service as rules_service
from tests.factories import create_organisation, create_resident
from tests.presence.helpers import at, create_circle
from tests.presence.test_rules import count_statements


async def test_batch_cost_does_not_grow_with_events_or_candidates(
    db: AsyncSession, engine: AsyncEngine, settings: Settings
) -> None:
    org = await create_organisation(db)
    hook = rules_service.event_hook(settings)
    counts = []
    decided = []
    events = []
    # the first round on this connection also checks the day partition and lets asyncpg learn
    # the statements' parameter types (once per process / connection): not compared
    for n, north in ((2, -5000.0), (2, 0.0), (12, 5000.0)):
        for i in range(n):
            g = await create_circle(db, org.id, 300.0 * i, north, 20.0, name=f"L{n}-{i}")
            db.add(
                Offer(
                    organisation_id=org.id,
                    title=f"Offer {i}",
                    body="b",
                    triggers=["enter", "nearby"],
                    status="active",
                    cooldown_s=0,
                    max_per_person=10,
                    geofence_links=[OfferGeofence(geofence_id=g)],
                )
            )
        await db.flush()
        res = await create_resident(db, org)
        subject = presence_service.Subject(SubjectKind.device, res.id, org.id)
        now = datetime.now(UTC)
        fixes = []
        east = -100.0
        steps = int((300.0 * n + 100.0) / 15.0)
        for k in range(steps):
            lon, lat = at(east + 15.0 * k, north)
            fixes.append(
                presence_service.PingInput(
                    id=f"{n}-{k}",
                    lon=lon,
                    lat=lat,
                    recorded_at=now - timedelta(seconds=2 * (steps - k)),
                    accuracy_m=5.0,
                )
            )
        async with count_statements(engine, db) as seen:
            result = await presence_service.ingest_ping_batch(
                db, settings, subject, fixes, now=now, on_events=hook
            )
        counts.append(len(seen))
        events.append(len(result.events))
        decided.append(
            (
                await db.execute(
                    text("SELECT count(*) FROM notification_decisions WHERE subject_id = :s"),
                    {"s": res.id},
                )
            ).scalar_one()
        )
    counts, events, decided = counts[1:], events[1:], decided[1:]
    assert events[1] > 3 * events[0]
    assert decided[1] > 3 * decided[0] > 0
    assert counts[0] == counts[1]
