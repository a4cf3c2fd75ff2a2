"""Admins invite, rename, re-role, deactivate and reset staff accounts; role changes,
deactivation and resets end the user's sessions at once (their tokens get 401)."""

from __future__ import annotations

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Role, StaffUser
from app.audit.models import AuditEntry
from app.core.config import Settings
from tests import factories


async def login(client: httpx.AsyncClient, email: str, password: str) -> dict[str, str]:
    resp = await client.post("/v1/auth/token", data={"username": email, "password": password})
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


async def me(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await client.get("/v1/me", headers=headers)


async def test_invite_returns_a_temporary_password_once_that_logs_in(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    admin = await factories.create_staff(db, settings, org, Role.admin)
    resp = await client.post(
        "/v1/users",
        json={"email": "new.worker@example.org", "full_name": "New Worker", "role": "field_worker"},
        headers=admin.headers,
    )
    assert resp.status_code == 201, resp.text
    temporary = resp.json()["temporary_password"]
    assert len(temporary) >= 12
    headers = await login(client, "new.worker@example.org", temporary)
    assert (await me(client, headers)).json()["role"] == "field_worker"
    listed = await client.get(f"/v1/users/{resp.json()['id']}", headers=admin.headers)
    assert "temporary_password" not in listed.json()
    actions = (
        await db.execute(select(AuditEntry.action).where(AuditEntry.organisation_id == org.id))
    ).scalars()
    assert "user.invite" in set(actions)


async def test_role_change_and_deactivation_end_sessions_at_once(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    admin = await factories.create_staff(db, settings, org, Role.admin)
    editor = await factories.create_staff(db, settings, org, Role.editor)
    headers = await login(client, editor.email, factories.DEFAULT_PASSWORD)
    assert (await me(client, headers)).status_code == 200

    # a rename is not a reason to sign anyone out
    renamed = await client.patch(
        f"/v1/users/{editor.id}", json={"full_name": "Ed Itor"}, headers=admin.headers
    )
    assert renamed.json()["sessions_ended"] is False
    assert (await me(client, headers)).status_code == 200

    demoted = await client.patch(
        f"/v1/users/{editor.id}", json={"role": "field_worker"}, headers=admin.headers
    )
    assert demoted.status_code == 200, demoted.text
    assert demoted.json()["sessions_ended"] is True
    old = await me(client, headers)
    assert old.status_code == 401
    assert "ended by an administrator" in old.json()["detail"]
    headers = await login(client, editor.email, factories.DEFAULT_PASSWORD)
    assert (await me(client, headers)).json()["role"] == "field_worker"

    off = await client.patch(
        f"/v1/users/{editor.id}", json={"is_active": False}, headers=admin.headers
    )
    assert off.json()["is_active"] is False
    assert (await me(client, headers)).status_code == 401
    refused = await client.post(
        "/v1/auth/token", data={"username": editor.email, "password": factories.DEFAULT_PASSWORD}
    )
    assert refused.status_code == 401


async def test_password_reset_gives_a_new_password_and_ends_sessions(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    admin = await factories.create_staff(db, settings, org, Role.admin)
    worker = await factories.create_staff(db, settings, org, Role.field_worker)
    headers = await login(client, worker.email, factories.DEFAULT_PASSWORD)
    reset = await client.post(f"/v1/users/{worker.id}/password-reset", headers=admin.headers)
    assert reset.status_code == 200
    assert (await me(client, headers)).status_code == 401
    old_password = await client.post(
        "/v1/auth/token", data={"username": worker.email, "password": factories.DEFAULT_PASSWORD}
    )
    assert old_password.status_code == 401
    await login(client, worker.email, reset.json()["temporary_password"])


async def test_bad_changes_are_refused_and_change_nothing(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    other = await factories.create_organisation(db)
    admin = await factories.create_staff(db, settings, org, Role.admin)
    editor = await factories.create_staff(db, settings, org, Role.editor)
    theirs = await factories.create_staff(db, settings, other, Role.editor)
    cases = [
        (admin.id, {"role": "editor"}, 409),  # an admin cannot demote themselves
        (admin.id, {"is_active": False}, 409),
        (editor.id, {"role": "superuser"}, 422),
        (editor.id, {"email": "x@example.org"}, 422),
        (theirs.id, {"role": "field_worker"}, 404),
    ]
    for user_id, body, expected in cases:
        resp = await client.patch(f"/v1/users/{user_id}", json=body, headers=admin.headers)
        assert resp.status_code == expected, (body, resp.text)
        assert resp.headers["content-type"] == "application/problem+json"
    as_editor = await client.patch(
        f"/v1/users/{editor.id}", json={"role": "admin"}, headers=editor.headers
    )
    assert as_editor.status_code == 403
    rows = (
        await db.execute(
            select(StaffUser.role, StaffUser.is_active, StaffUser.token_version).where(
                StaffUser.id.in_([admin.id, editor.id, theirs.id])
            )
        )
    ).all()
    assert {(r.role, r.is_active, r.token_version) for r in rows} == {
        (Role.admin, True, 0),
        (Role.editor, True, 0),
    }
