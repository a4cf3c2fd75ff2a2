"""Issue 18, finding 1: a push endpoint belongs to its first owner until that owner deletes it.

Before the fix the upsert by endpoint re-owned and re-keyed the row for any caller, so a resident
of another organisation could silently take a device's (or a staff member's) pushes away.
"""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Role
from app.core.config import Settings
from app.notifications.models import PushSubscription
from tests.factories import Resident, Staff, create_organisation, create_resident, create_staff
from tests.notifications.test_api import subscription_json


async def _row(db: AsyncSession, endpoint: str) -> dict[str, Any]:
    db.expire_all()
    row = (
        await db.execute(select(PushSubscription).where(PushSubscription.endpoint == endpoint))
    ).scalar_one()
    return {
        "id": row.id,
        "organisation_id": row.organisation_id,
        "device_id": row.device_id,
        "staff_user_id": row.staff_user_id,
        "p256dh": row.p256dh,
        "auth": row.auth,
    }


async def test_another_owner_gets_409_and_the_subscription_is_unchanged(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org_a = await create_organisation(db)
    org_b = await create_organisation(db)
    victim = await create_resident(db, org_b)
    victim_staff = await create_staff(db, settings, org_b, Role.field_worker)
    attackers: list[Resident | Staff] = [
        await create_resident(db, org_a),  # another organisation's resident
        await create_resident(db, org_b),  # another device of the same organisation
        await create_staff(db, settings, org_a, Role.admin),  # staff elsewhere
        await create_staff(db, settings, org_b, Role.admin),  # the owner's own admin
    ]
    owners: list[Resident | Staff] = [victim, victim_staff]
    for owner in owners:
        body = subscription_json()
        first = await client.post("/v1/push/subscriptions", json=body, headers=owner.headers)
        assert first.status_code == 201, first.text
        before = await _row(db, body["endpoint"])
        for attacker in attackers:
            takeover = {**body, "keys": subscription_json()["keys"]}
            res = await client.post(
                "/v1/push/subscriptions", json=takeover, headers=attacker.headers
            )
            assert res.status_code == 409, res.text
            assert res.headers["content-type"] == "application/problem+json"
            problem = res.json()
            assert problem["type"].endswith("/subscription-taken")
            assert str(before["id"]) not in res.text
            assert str(owner.id) not in res.text
            assert str(owner.organisation_id) not in res.text
            assert await _row(db, body["endpoint"]) == before
            listed = await client.get("/v1/push/subscriptions", headers=attacker.headers)
            assert listed.json() == []


async def test_the_owner_resubscribing_still_refreshes_the_keys(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    org = await create_organisation(db)
    owner = await create_resident(db, org)
    body = subscription_json()
    first = await client.post("/v1/push/subscriptions", json=body, headers=owner.headers)
    assert first.status_code == 201
    fresh = {**body, "keys": subscription_json()["keys"]}
    again = await client.post("/v1/push/subscriptions", json=fresh, headers=owner.headers)
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    row = await _row(db, body["endpoint"])
    assert (row["p256dh"], row["auth"]) == (fresh["keys"]["p256dh"], fresh["keys"]["auth"])


async def test_after_the_owner_deletes_it_someone_else_may_register_the_endpoint(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    org = await create_organisation(db)
    first_owner = await create_resident(db, org)
    second_owner = await create_resident(db, org)
    body = subscription_json()
    created = await client.post("/v1/push/subscriptions", json=body, headers=first_owner.headers)
    deleted = await client.delete(
        f"/v1/push/subscriptions/{created.json()['id']}", headers=first_owner.headers
    )
    assert deleted.status_code == 204
    res = await client.post("/v1/push/subscriptions", json=body, headers=second_owner.headers)
    assert res.status_code == 201
    assert (await _row(db, body["endpoint"]))["device_id"] == second_owner.id
