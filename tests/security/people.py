"""A resident with data of every kind: settings, pings, presence, events, a check-in, a push
subscription, notifications (inbox + outbox + delivery log) and an offer redemption."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Organisation, Role
from app.core.config import Settings
from app.notifications import service as notifications_service
from app.notifications.models import Delivery
from app.notifications.schemas import NotificationPayload, Recipient
from tests import factories
from tests.notifications.test_api import subscription_json
from tests.offers.helpers import create_geofence, quick_staff

LON, LAT = -1.2577, 51.752
# tables that hold something about a device, and the column naming it
PERSONAL = {
    "devices": "id",
    "device_settings": "device_id",
    "pings": "subject_id",
    "presence": "subject_id",
    "presence_subjects": "subject_id",
    "presence_events": "device_id",
    "checkins": "device_id",
    "push_subscriptions": "device_id",
    "notifications": "device_id",
    "offer_redemptions": "device_id",
}


@dataclass
class Person:
    resident: factories.Resident
    place_id: uuid.UUID
    notification_id: uuid.UUID


async def ok(r: httpx.Response) -> None:
    assert r.status_code < 300, r.text


async def person_with_everything(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, org: Organisation
) -> Person:
    place = await create_geofence(db, org.id, lon=LON, lat=LAT, name="Central Library")
    place_id = place.id
    resident = await factories.create_resident(db, org)
    editor = await quick_staff(db, settings, org, Role.editor)
    await db.commit()
    h = resident.headers
    await ok(await client.put("/v1/me/background-location", json={"enabled": True}, headers=h))
    now = datetime.now(UTC)
    pings = [
        {
            "id": f"p{i}",
            "lon": LON + (0.01 if i == 0 else 0.0),
            "lat": LAT,
            "accuracy_m": 8,
            "recorded_at": (now - timedelta(minutes=10 - i)).isoformat(),
        }
        for i in range(3)
    ]
    await ok(await client.post("/v1/pings", json={"pings": pings}, headers=h))
    await ok(
        await client.post(
            "/v1/checkins",
            json={"lon": LON, "lat": LAT, "accuracy_m": 5, "geofence_id": str(place_id)},
            headers=h,
        )
    )
    await ok(await client.post("/v1/push/subscriptions", json=subscription_json(), headers=h))
    offer = await client.post(
        "/v1/offers",
        json={
            "title": "Story time",
            "body": "Saturdays",
            "geofence_ids": [str(place_id)],
            "triggers": ["checkin"],
            "status": "active",
        },
        headers=editor.headers,
    )
    await ok(offer)
    await ok(await client.post(f"/v1/offers/{offer.json()['id']}/redeem", json={}, headers=h))
    note = await notifications_service.enqueue(
        db,
        recipient=Recipient("device", resident.id, org.id),
        payload=NotificationPayload(title="Hello"),
    )
    note_id = note.id
    db.add(
        Delivery(
            organisation_id=org.id,
            notification_id=note_id,
            attempt=1,
            attempted_at=now,
            push_origin="https://fcm.googleapis.com",
            status="delivered",
            http_status=201,
        )
    )
    await db.commit()
    return Person(resident, place_id, note_id)


async def holdings(db: AsyncSession, device_id: uuid.UUID) -> dict[str, int]:
    """How many rows each personal table holds about the device (plus outbox and deliveries)."""
    out = {}
    for table, column in PERSONAL.items():
        out[table] = int(
            (
                await db.execute(
                    text(f"SELECT count(*) FROM {table} WHERE {column} = :d"), {"d": device_id}
                )
            ).scalar_one()
        )
    for table in ("outbox", "push_deliveries"):
        out[table] = int(
            (
                await db.execute(
                    text(
                        f"SELECT count(*) FROM {table} t JOIN notifications n "
                        "ON n.id = t.notification_id WHERE n.device_id = :d"
                    ),
                    {"d": device_id},
                )
            ).scalar_one()
        )
    return out
