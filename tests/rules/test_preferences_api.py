"""Preferences, shifts and broadcast: defaults, bad input (422, nothing stored) and permissions."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Role
from app.core.config import Settings
from tests.factories import create_organisation, create_resident, create_staff
from tests.presence.helpers import create_circle


async def test_resident_defaults_and_background_location_is_the_presence_flag(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    org = await create_organisation(db)
    res = await create_resident(db, org)
    r = await client.get("/v1/me/preferences", headers=res.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["time_zone"] == "Europe/London"
    assert body["quiet_hours"] == {"start": "21:00", "end": "08:00"}
    assert body["max_per_day"] == 3
    assert body["background_location"] is False
    assert body["on_shift"] is None
    r = await client.put(
        "/v1/me/preferences",
        json={"background_location": True, "categories_opted_out": ["park", "park"]},
        headers=res.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["categories_opted_out"] == ["park"]
    r = await client.get("/v1/me/background-location", headers=res.headers)
    assert r.json() == {"enabled": True}
    await client.put("/v1/me/background-location", json={"enabled": False}, headers=res.headers)
    r = await client.get("/v1/me/preferences", headers=res.headers)
    assert r.json()["background_location"] is False
    assert r.json()["categories_opted_out"] == ["park"]


@pytest.mark.parametrize(
    "body",
    [
        {"colour": "red"},
        {"time_zone": "Mars/Olympus"},
        {"time_zone": "Europe"},
        {"quiet_hours": {"start": "21:00", "end": "21:00"}},
        {"quiet_hours": {"start": "25:00", "end": "08:00"}},
        {"max_per_day": 0},
        {"categories_opted_out": [""]},
        {"categories_opted_out": ["a\u0000b"]},
    ],
)
async def test_bad_preferences_are_422_and_store_nothing(
    client: httpx.AsyncClient, db: AsyncSession, body: dict[str, Any]
) -> None:
    org = await create_organisation(db)
    res = await create_resident(db, org)
    before = (await client.get("/v1/me/preferences", headers=res.headers)).json()
    r = await client.put("/v1/me/preferences", json=body, headers=res.headers)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert (await client.get("/v1/me/preferences", headers=res.headers)).json() == before


async def test_shift_permissions(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await create_organisation(db)
    other_org = await create_organisation(db)
    editor = await create_staff(db, settings, org, Role.editor)
    worker = await create_staff(db, settings, org, Role.field_worker)
    stranger = await create_staff(db, settings, other_org, Role.field_worker)
    res = await create_resident(db, org)
    shift = {"start": "22:00", "end": "06:00", "days": [1, 2, 3, 4, 5]}
    r = await client.put(f"/v1/staff/{worker.id}/shift", json=shift, headers=editor.headers)
    assert r.status_code == 200, r.text
    assert r.json()["on_shift"]["days"] == [1, 2, 3, 4, 5]
    me = (await client.get("/v1/me/preferences", headers=worker.headers)).json()
    assert me["on_shift"]["start"] == "22:00"
    assert me["quiet_hours"] is None  # field workers follow their shift
    assert me["background_location"] is None
    r = await client.put(f"/v1/staff/{stranger.id}/shift", json=shift, headers=editor.headers)
    assert r.status_code == 404
    r = await client.put(f"/v1/staff/{editor.id}/shift", json=shift, headers=editor.headers)
    assert r.status_code == 404  # not a field worker
    r = await client.put(f"/v1/staff/{worker.id}/shift", json=shift, headers=res.headers)
    assert r.status_code == 403
    r = await client.put("/v1/me/preferences", json={"on_shift": shift}, headers=res.headers)
    assert r.status_code == 403
    r = await client.put(
        "/v1/me/preferences", json={"background_location": True}, headers=worker.headers
    )
    assert r.status_code == 403
    r = await client.put(
        f"/v1/staff/{worker.id}/shift",
        json={"start": "08:00", "end": "16:00", "days": [0]},
        headers=editor.headers,
    )
    assert r.status_code == 422
    r = await client.delete(f"/v1/staff/{worker.id}/shift", headers=worker.headers)
    assert r.status_code == 200, r.text
    assert r.json()["on_shift"] is None


async def test_broadcast_bad_input_and_permissions(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await create_organisation(db)
    other_org = await create_organisation(db)
    editor = await create_staff(db, settings, org, Role.editor)
    worker = await create_staff(db, settings, org, Role.field_worker)
    mine = await create_circle(db, org.id, 0, 0, 20)
    theirs = await create_circle(db, other_org.id, 0, 0, 20)
    ok = {"title": "Closing early"}
    r = await client.post(f"/v1/geofences/{mine}/broadcast", json=ok, headers=editor.headers)
    assert r.status_code == 200, r.text
    assert r.json()["recipients"] == 0
    r = await client.post(f"/v1/geofences/{theirs}/broadcast", json=ok, headers=editor.headers)
    assert r.status_code == 404
    r = await client.post(f"/v1/geofences/{mine}/broadcast", json=ok, headers=worker.headers)
    assert r.status_code == 403
    for bad in (
        {},
        {"title": ""},
        {"title": "x", "safety_critical": "yes please"},
        {"title": "x", "extra": 1},
    ):
        r = await client.post(f"/v1/geofences/{mine}/broadcast", json=bad, headers=editor.headers)
        assert r.status_code == 422, bad
