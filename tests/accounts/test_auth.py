from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Device, Role, StaffUser
from app.core.config import Settings
from app.core.security import StaffClaims, hash_token, issue_staff_token
from tests import factories

PROBLEM = "application/problem+json"


async def test_staff_login_returns_a_token_that_identifies_the_user(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    staff = await factories.create_staff(db, settings, org, Role.editor, email="lib@example.org")

    resp = await client.post(
        "/v1/auth/token",
        data={"username": "LIB@example.org", "password": factories.DEFAULT_PASSWORD},
    )
    assert resp.status_code == 200, resp.text
    token = resp.json()["access_token"]
    me = await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    body = me.json()
    assert body["kind"] == "staff"
    assert body["id"] == str(staff.user.id)
    assert body["role"] == "editor"
    assert body["organisation"]["slug"] == org.slug


async def test_wrong_password_is_401_problem(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    await factories.create_staff(db, settings, org, Role.admin, email="a@example.org")
    resp = await client.post(
        "/v1/auth/token", data={"username": "a@example.org", "password": "nope-nope-nope"}
    )
    assert resp.status_code == 401
    assert resp.headers["content-type"] == PROBLEM
    assert resp.json()["title"] == "Invalid credentials"
    unknown = await client.post(
        "/v1/auth/token", data={"username": "x@example.org", "password": "nope-nope-nope"}
    )
    assert unknown.status_code == 401


async def test_inactive_user_cannot_log_in_or_use_old_token(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    staff = await factories.create_staff(db, settings, org, Role.admin, email="gone@example.org")
    staff.user.is_active = False
    await db.flush()
    login = await client.post(
        "/v1/auth/token",
        data={"username": "gone@example.org", "password": factories.DEFAULT_PASSWORD},
    )
    assert login.status_code == 401
    assert (await client.get("/v1/me", headers=staff.headers)).status_code == 401


async def test_expired_and_forged_tokens_are_rejected(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    staff = await factories.create_staff(db, settings, org, Role.admin)
    old = issue_staff_token(
        settings,
        StaffClaims(staff.user.id, org.id, "admin"),
        now=datetime.now(UTC) - timedelta(hours=2),
    )
    forged = issue_staff_token(
        settings.model_copy(update={"jwt_secret": "another-secret-" + "y" * 32}),
        StaffClaims(staff.user.id, org.id, "admin"),
    )
    for token in (old, forged, "garbage"):
        resp = await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 401
        assert resp.headers["www-authenticate"] == "Bearer"
    assert (await client.get("/v1/me")).status_code == 401


async def test_rotated_secret_still_accepts_tokens_signed_with_the_previous_one(
    db: AsyncSession, settings: Settings
) -> None:
    from app.core.security import decode_staff_token

    claims = StaffClaims(uuid.uuid4(), uuid.uuid4(), "editor")
    token = issue_staff_token(settings, claims)
    rotated = settings.model_copy(
        update={
            "jwt_secret": "new-secret-" + "z" * 32,
            "jwt_previous_secrets": [settings.jwt_secret],
        }
    )
    assert decode_staff_token(rotated, token) == claims


async def test_device_registration_is_anonymous_and_stores_only_a_hash(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    org = await factories.create_organisation(db, "only-town")
    resp = await client.post("/v1/devices", json={"organisation": "only-town", "platform": "web"})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    token = body["token"]
    stored = (
        await db.execute(select(Device).where(Device.id == uuid.UUID(body["device_id"])))
    ).scalar_one()
    assert stored.token_hash == hash_token(token)
    assert token not in stored.token_hash
    me = await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["kind"] == "device"
    assert me.json()["organisation"]["id"] == str(org.id)
    bad = await client.get("/v1/me", headers={"Authorization": "Bearer hd_not-a-real-token"})
    assert bad.status_code == 401


async def test_device_registration_rejects_unknown_organisation_and_unknown_fields(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    await factories.create_organisation(db)
    before = (await db.execute(select(func.count()).select_from(Device))).scalar_one()
    resp = await client.post("/v1/devices", json={"organisation": "atlantis"})
    assert resp.status_code == 422
    assert resp.headers["content-type"] == PROBLEM
    extra = await client.post("/v1/devices", json={"name": "Alice"})
    assert extra.status_code == 422
    assert extra.json()["errors"][0]["field"] == "name"
    after = (await db.execute(select(func.count()).select_from(Device))).scalar_one()
    assert after == before


async def test_resident_token_on_a_staff_route_is_403(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    org = await factories.create_organisation(db)
    resident = await factories.create_resident(db, org)
    resp = await client.get("/v1/users", headers=resident.headers)
    assert resp.status_code == 403
    assert resp.headers["content-type"] == PROBLEM


async def test_only_admins_manage_users_in_their_own_organisation(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    other = await factories.create_organisation(db)
    admin = await factories.create_staff(db, settings, org, Role.admin)
    editor = await factories.create_staff(db, settings, org, Role.editor)
    other_admin = await factories.create_staff(db, settings, other, Role.admin)
    other_worker = await factories.create_staff(db, settings, other, Role.field_worker)

    new = {
        "email": "new@example.org",
        "full_name": "New Worker",
        "password": "long enough pw",
        "role": "field_worker",
    }
    assert (await client.post("/v1/users", json=new, headers=editor.headers)).status_code == 403
    created = await client.post("/v1/users", json=new, headers=admin.headers)
    assert created.status_code == 201, created.text
    assert created.json()["organisation_id"] == str(org.id)
    assert "password" not in created.text
    dup = await client.post(
        "/v1/users", json={**new, "email": "NEW@example.org"}, headers=admin.headers
    )
    assert dup.status_code == 409

    listed = await client.get("/v1/users", headers=admin.headers)
    emails = {u["email"] for u in listed.json()["items"]}
    assert "new@example.org" in emails
    assert other_admin.email not in emails

    # another organisation's user does not exist for this admin: 404, not 403
    resp = await client.get(f"/v1/users/{other_worker.id}", headers=admin.headers)
    assert resp.status_code == 404
    assert resp.headers["content-type"] == PROBLEM
    own = await client.get(f"/v1/users/{editor.id}", headers=admin.headers)
    assert own.status_code == 200
    count = (
        await db.execute(
            select(func.count())
            .select_from(StaffUser)
            .where(StaffUser.organisation_id == other_admin.organisation_id)
        )
    ).scalar_one()
    assert count == 2


async def test_user_list_paginates_with_a_stable_cursor_and_clamps_limit(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    admin = await factories.create_staff(db, settings, org, Role.admin)
    for _ in range(4):
        await factories.create_staff(db, settings, org, Role.field_worker)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/v1/users", params=params, headers=admin.headers)).json()
        seen.extend(u["id"] for u in page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 5
    big = await client.get("/v1/users", params={"limit": 100000}, headers=admin.headers)
    assert big.status_code == 200
    bad = await client.get("/v1/users", params={"cursor": "%%%"}, headers=admin.headers)
    assert bad.status_code == 422


async def test_login_is_throttled_per_account_and_ip_after_repeated_failures(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    await factories.create_staff(db, settings, org, Role.editor, email="target@example.org")
    limit = settings.login_failures_per_account_ip_per_hour  # all from the test client's IP
    for _ in range(limit):
        bad = await client.post(
            "/v1/auth/token", data={"username": "target@example.org", "password": "guess-guess"}
        )
        assert bad.status_code == 401
    blocked = await client.post(
        "/v1/auth/token",
        data={"username": "target@example.org", "password": factories.DEFAULT_PASSWORD},
    )
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) >= 1
    assert blocked.headers["content-type"] == PROBLEM


async def test_staff_actions_are_audited_and_only_admins_of_the_org_read_the_log(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    admin = await factories.create_staff(db, settings, org, Role.admin)
    editor = await factories.create_staff(db, settings, org, Role.editor)
    other_admin = await factories.create_staff(
        db, settings, await factories.create_organisation(db), Role.admin
    )
    new = {
        "email": "audited@example.org",
        "full_name": "A",
        "password": "long enough pw",
        "role": "editor",
    }
    created = await client.post("/v1/users", json=new, headers=admin.headers)
    log = await client.get("/v1/audit", headers=admin.headers)
    assert log.status_code == 200
    entries = log.json()["items"]
    assert [(e["action"], e["entity_id"], e["actor_id"]) for e in entries] == [
        ("user.create", created.json()["id"], str(admin.id))
    ]
    assert (await client.get("/v1/audit", headers=editor.headers)).status_code == 403
    assert (await client.get("/v1/audit", headers=other_admin.headers)).json()["items"] == []


async def test_editors_list_field_workers_only_so_they_can_assign_tasks(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    editor = await factories.create_staff(db, settings, org, Role.editor)
    worker = await factories.create_staff(db, settings, org, Role.field_worker)
    other_worker = await factories.create_staff(
        db, settings, await factories.create_organisation(db), Role.field_worker
    )
    listed = await client.get("/v1/users", params={"role": "field_worker"}, headers=editor.headers)
    assert listed.status_code == 200
    assert [u["id"] for u in listed.json()["items"]] == [str(worker.id)]
    assert str(other_worker.id) not in listed.text
    for params in ({}, {"role": "admin"}, {"role": "editor"}):
        assert (
            await client.get("/v1/users", params=params, headers=editor.headers)
        ).status_code == 403
    assert (
        await client.get("/v1/users", params={"role": "field_worker"}, headers=worker.headers)
    ).status_code == 403
