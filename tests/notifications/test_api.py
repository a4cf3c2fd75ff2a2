"""HTTP API: VAPID key, subscriptions (validation, ownership, limit), inbox, delivery log."""

from __future__ import annotations

import base64
import secrets
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Role
from app.core.config import Settings
from app.notifications import service
from app.notifications.models import Delivery, OutboxJob, PushSubscription
from app.notifications.schemas import NotificationPayload, Recipient
from app.notifications.vapid import b64url, generate_private_key, public_key_raw
from tests.factories import create_organisation, create_resident, create_staff


def subscription_json(endpoint: str | None = None, **keys: Any) -> dict[str, Any]:
    key = generate_private_key()
    return {
        "endpoint": endpoint or f"https://fcm.googleapis.com/fcm/send/{secrets.token_urlsafe(24)}",
        "expirationTime": None,
        "keys": {
            "p256dh": keys.get("p256dh", b64url(public_key_raw(key.public_key()))),
            "auth": keys.get("auth", b64url(secrets.token_bytes(16))),
        },
    }


async def count(db: AsyncSession, model: type[Any]) -> int:
    return int((await db.execute(select(func.count()).select_from(model))).scalar_one())


async def test_vapid_public_key_is_an_uncompressed_p256_point(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/push/vapid-public-key")
    assert response.status_code == 200
    raw = base64.urlsafe_b64decode(response.json()["public_key"] + "==")
    assert len(raw) == 65
    assert raw[0] == 4


async def test_resident_subscribes_and_resubscribing_updates_the_same_row(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    org = await create_organisation(db)
    resident = await create_resident(db, org)
    body = subscription_json()
    first = await client.post("/v1/push/subscriptions", json=body, headers=resident.headers)
    assert first.status_code == 201, first.text
    assert first.json()["origin"] == "https://fcm.googleapis.com"
    body["keys"] = subscription_json()["keys"]
    body["expirationTime"] = 4_102_444_800_000
    again = await client.post("/v1/push/subscriptions", json=body, headers=resident.headers)
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["expiration_time"].startswith("2100-01-01")
    listed = await client.get("/v1/push/subscriptions", headers=resident.headers)
    assert [s["id"] for s in listed.json()] == [first.json()["id"]]


async def test_staff_user_can_subscribe_too(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await create_organisation(db)
    worker = await create_staff(db, settings, org, Role.field_worker)
    response = await client.post(
        "/v1/push/subscriptions", json=subscription_json(), headers=worker.headers
    )
    assert response.status_code == 201


BAD_BODIES: dict[str, dict[str, Any]] = {
    "http endpoint": subscription_json("http://fcm.googleapis.com/fcm/send/x"),
    "private ip endpoint": subscription_json("https://10.0.0.5/push"),
    "unknown host": subscription_json("https://push.evil.example/x"),
    "userinfo": subscription_json("https://a@fcm.googleapis.com/x"),
    "port": subscription_json("https://fcm.googleapis.com:444/x"),
    "p256dh not on curve": subscription_json(p256dh=b64url(b"\x04" + b"\x01" * 64)),
    "p256dh compressed": subscription_json(p256dh=b64url(b"\x02" + b"\x01" * 32)),
    "p256dh garbage": subscription_json(p256dh="!!!not-base64!!!"),
    "auth 15 bytes": subscription_json(auth=b64url(b"a" * 15)),
    "auth 17 bytes": subscription_json(auth=b64url(b"a" * 17)),
    "missing keys": {"endpoint": "https://fcm.googleapis.com/fcm/send/x"},
    "extra field": {**subscription_json(), "admin": True},
    "expired": {**subscription_json(), "expirationTime": 1000},
}


@pytest.mark.parametrize("body", list(BAD_BODIES.values()), ids=list(BAD_BODIES))
async def test_bad_subscriptions_are_422_and_store_nothing(
    client: httpx.AsyncClient, db: AsyncSession, body: dict[str, Any]
) -> None:
    org = await create_organisation(db)
    resident = await create_resident(db, org)
    response = await client.post("/v1/push/subscriptions", json=body, headers=resident.headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert await count(db, PushSubscription) == 0


async def test_subscription_needs_authentication(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/push/subscriptions", json=subscription_json())
    assert response.status_code == 401


async def test_at_most_ten_subscriptions_per_person(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    org = await create_organisation(db)
    resident = await create_resident(db, org)
    bodies = [subscription_json() for _ in range(10)]
    for body in bodies:
        ok = await client.post("/v1/push/subscriptions", json=body, headers=resident.headers)
        assert ok.status_code == 201
    eleventh = await client.post(
        "/v1/push/subscriptions", json=subscription_json(), headers=resident.headers
    )
    assert eleventh.status_code == 409
    # Re-registering one of the ten is an update, not an eleventh.
    again = await client.post("/v1/push/subscriptions", json=bodies[0], headers=resident.headers)
    assert again.status_code == 200
    assert await count(db, PushSubscription) == 10


async def test_people_see_and_delete_only_their_own_subscriptions(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    org = await create_organisation(db)
    other_org = await create_organisation(db)
    alice = await create_resident(db, org)
    bob = await create_resident(db, org)
    carol = await create_resident(db, other_org)
    created = await client.post(
        "/v1/push/subscriptions", json=subscription_json(), headers=alice.headers
    )
    sub_id = created.json()["id"]
    for intruder in (bob, carol):
        listed = await client.get("/v1/push/subscriptions", headers=intruder.headers)
        assert listed.json() == []
        gone = await client.delete(f"/v1/push/subscriptions/{sub_id}", headers=intruder.headers)
        assert gone.status_code == 404
    assert await count(db, PushSubscription) == 1
    deleted = await client.delete(f"/v1/push/subscriptions/{sub_id}", headers=alice.headers)
    assert deleted.status_code == 204
    assert await count(db, PushSubscription) == 0


async def test_enqueue_writes_inbox_and_one_outbox_row_per_subscription(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    org = await create_organisation(db)
    alice = await create_resident(db, org)
    for _ in range(3):
        await client.post("/v1/push/subscriptions", json=subscription_json(), headers=alice.headers)
    who = Recipient("device", alice.id, alice.organisation_id)
    note = await service.enqueue(
        db,
        recipient=who,
        payload=NotificationPayload(title="Library open late", body="Till 9pm", tag="lib"),
        related={"geofence_id": uuid.uuid4()},
    )
    suppressed = await service.enqueue(
        db,
        recipient=who,
        payload=NotificationPayload(title="Quiet"),
        decision="suppressed:quiet_hours",
    )
    await db.commit()
    rows = (await db.execute(select(OutboxJob))).scalars().all()
    assert len(rows) == 3
    assert {r.notification_id for r in rows} == {note.id}
    inbox = await client.get("/v1/me/notifications", headers=alice.headers)
    assert [n["id"] for n in inbox.json()["items"]] == [str(suppressed.id), str(note.id)]
    assert inbox.json()["items"][0]["decision"] == "suppressed:quiet_hours"


async def test_enqueue_refuses_a_payload_that_cannot_fit_a_push(db: AsyncSession) -> None:
    from app.core.errors import Unprocessable

    org = await create_organisation(db)
    alice = await create_resident(db, org)
    with pytest.raises(Unprocessable):
        await service.enqueue(
            db,
            recipient=Recipient("device", alice.id, org.id),
            payload=NotificationPayload(title="x", body="y" * 5000),
        )


async def test_inbox_and_opened_are_own_only(client: httpx.AsyncClient, db: AsyncSession) -> None:
    org = await create_organisation(db)
    alice = await create_resident(db, org)
    bob = await create_resident(db, org)
    note = await service.enqueue(
        db,
        recipient=Recipient("device", alice.id, org.id),
        payload=NotificationPayload(title="For Alice"),
    )
    note_id = note.id
    assert (await client.get("/v1/me/notifications", headers=bob.headers)).json()["items"] == []
    denied = await client.post(f"/v1/me/notifications/{note_id}/opened", headers=bob.headers)
    assert denied.status_code == 404
    opened = await client.post(f"/v1/me/notifications/{note_id}/opened", headers=alice.headers)
    assert opened.status_code == 200
    stamp = opened.json()["opened_at"]
    assert stamp is not None
    again = await client.post(f"/v1/me/notifications/{note_id}/opened", headers=alice.headers)
    assert again.json()["opened_at"] == stamp


async def test_inbox_pages_with_a_cursor(client: httpx.AsyncClient, db: AsyncSession) -> None:
    org = await create_organisation(db)
    alice = await create_resident(db, org)
    for i in range(5):
        await service.enqueue(
            db,
            recipient=Recipient("device", alice.id, org.id),
            payload=NotificationPayload(title=f"n{i}"),
        )
    seen: list[str] = []
    url = "/v1/me/notifications?limit=2"
    while True:
        page = (await client.get(url, headers=alice.headers)).json()
        seen += [n["id"] for n in page["items"]]
        if not page["next_cursor"]:
            break
        url = f"/v1/me/notifications?limit=2&cursor={page['next_cursor']}"
    assert len(seen) == len(set(seen)) == 5


async def test_delivery_log_is_for_staff_of_the_same_organisation(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    from datetime import UTC, datetime

    org = await create_organisation(db)
    other = await create_organisation(db)
    resident = await create_resident(db, org)
    editor = await create_staff(db, settings, org, Role.editor)
    outsider = await create_staff(db, settings, other, Role.admin)
    note = await service.enqueue(
        db,
        recipient=Recipient("device", resident.id, org.id),
        payload=NotificationPayload(title="x"),
    )
    db.add(
        Delivery(
            organisation_id=org.id,
            notification_id=note.id,
            attempt=1,
            attempted_at=datetime.now(UTC),
            push_origin="https://fcm.googleapis.com",
            status="delivered",
            http_status=201,
            latency_ms=12.5,
        )
    )
    await db.flush()
    mine = await client.get("/v1/deliveries", headers=editor.headers)
    assert mine.status_code == 200
    assert [d["status"] for d in mine.json()["items"]] == ["delivered"]
    assert (await client.get("/v1/deliveries", headers=outsider.headers)).json()["items"] == []
    assert (await client.get("/v1/deliveries", headers=resident.headers)).status_code == 403
    filtered = await client.get("/v1/deliveries?status=failed", headers=editor.headers)
    assert filtered.json()["items"] == []
    bad = await client.get("/v1/deliveries?status=bogus", headers=editor.headers)
    assert bad.status_code == 422


async def test_erasing_a_person_removes_subscriptions_inbox_outbox_and_log(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    from datetime import UTC, datetime

    from app.notifications.models import Notification

    org = await create_organisation(db)
    alice = await create_resident(db, org)
    bob = await create_resident(db, org)
    for who in (alice, bob):
        await client.post("/v1/push/subscriptions", json=subscription_json(), headers=who.headers)
        note = await service.enqueue(
            db,
            recipient=Recipient("device", who.id, org.id),
            payload=NotificationPayload(title="hello"),
        )
        db.add(
            Delivery(
                organisation_id=org.id,
                notification_id=note.id,
                attempt=1,
                attempted_at=datetime.now(UTC),
                push_origin="https://fcm.googleapis.com",
                status="delivered",
            )
        )
    await db.flush()
    await service.erase_person(db, Recipient("device", alice.id, org.id))
    await db.flush()
    assert await count(db, PushSubscription) == 1
    assert await count(db, Notification) == 1
    assert await count(db, OutboxJob) == 1
    assert await count(db, Delivery) == 1
