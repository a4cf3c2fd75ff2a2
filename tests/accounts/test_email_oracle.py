"""Issue 18, finding 10: creating a user must not tell an admin that an email address belongs to
another organisation.

Before the fix the 409 said "A staff account with the email '…' already exists." Emails are login
names, unique across the deployment, so an address in use cannot be reused; the answer is now the
same generic conflict whether the address is used in the admin's own organisation or in another,
and names neither the address nor an organisation.
"""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Role, StaffUser
from app.core.config import Settings
from tests import factories


def _new(email: str) -> dict[str, Any]:
    return {
        "email": email,
        "full_name": "New Person",
        "password": "long enough pw",
        "role": "editor",
    }


def _without_instance(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "instance"}


async def test_an_email_of_another_organisation_gets_the_same_answer_as_one_of_your_own(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    mine = await factories.create_organisation(db)
    theirs = await factories.create_organisation(db)
    theirs_id = str(theirs.id)
    admin = await factories.create_staff(db, settings, mine, Role.admin)
    await factories.create_staff(db, settings, mine, Role.editor, email="colleague@mine.example")
    await factories.create_staff(db, settings, theirs, Role.editor, email="someone@theirs.example")
    users_before = int((await db.execute(select(func.count()).select_from(StaffUser))).scalar_one())

    own = await client.post("/v1/users", json=_new("colleague@mine.example"), headers=admin.headers)
    other = await client.post(
        "/v1/users", json=_new("Someone@Theirs.example"), headers=admin.headers
    )
    assert own.status_code == other.status_code == 409
    assert other.headers["content-type"] == "application/problem+json"
    assert _without_instance(other.json()) == _without_instance(own.json())
    body = other.text.lower()
    assert "someone" not in body
    assert "theirs" not in body
    assert theirs_id not in body
    assert "exists" not in body
    assert "organisation" not in body
    assert other.json()["type"].endswith("/email-unavailable")
    users_after = int((await db.execute(select(func.count()).select_from(StaffUser))).scalar_one())
    assert users_after == users_before


async def test_a_fresh_email_is_created(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    admin = await factories.create_staff(db, settings, org, Role.admin)
    res = await client.post("/v1/users", json=_new("fresh@mine.example"), headers=admin.headers)
    assert res.status_code == 201
