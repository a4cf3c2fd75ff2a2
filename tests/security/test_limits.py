"""A maximum number of places per organisation, and page sizes clamped to 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Role
from app.core.config import Settings
from app.core.pagination import MAX_LIMIT
from tests import factories
from tests.offers.helpers import create_geofence, quick_staff


def circle(lon: float, external_id: str | None = None) -> dict[str, Any]:
    props: dict[str, Any] = {"name": "Place", "category": "park", "radius_m": 30}
    if external_id:
        props["external_id"] = external_id
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [lon, 51.75]},
        "properties": props,
    }


async def count(db: AsyncSession, org_id: object) -> int:
    sql = "SELECT count(*) FROM geofences WHERE organisation_id = :o AND deleted_at IS NULL"
    return int((await db.execute(text(sql), {"o": org_id})).scalar_one())


async def test_an_organisation_cannot_hold_more_places_than_the_limit(
    app: FastAPI, client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    app.state.settings = settings.model_copy(update={"geofence_max_per_organisation": 3})
    org = await factories.create_organisation(db)
    other = await factories.create_organisation(db)
    editor = await quick_staff(db, settings, org, Role.editor)
    other_editor = await quick_staff(db, settings, other, Role.editor)
    for i in range(2):
        await create_geofence(db, org.id, lon=-1.2 + i * 0.01, lat=51.75)
    org_id = org.id
    await db.commit()
    h = editor.headers

    assert (await client.post("/v1/geofences", json=circle(-1.1), headers=h)).status_code == 201
    full = await client.post("/v1/geofences", json=circle(-1.0), headers=h)
    assert full.status_code == 409
    assert full.json()["type"].endswith("/too-many-geofences")
    assert full.json()["limit"] == 3
    assert await count(db, org_id) == 3
    # an import that would go over stores nothing; updating existing places is still fine
    two = {"type": "FeatureCollection", "features": [circle(-0.9, "a"), circle(-0.8, "b")]}
    assert (await client.post("/v1/geofences/import", json=two, headers=h)).status_code == 409
    assert await count(db, org_id) == 3
    # another organisation has its own allowance
    theirs = await client.post("/v1/geofences", json=circle(-1.1), headers=other_editor.headers)
    assert theirs.status_code == 201
    # deleting one makes room again
    gid = (
        await db.execute(
            text("SELECT id FROM geofences WHERE organisation_id = :o LIMIT 1"), {"o": org_id}
        )
    ).scalar_one()
    assert (await client.delete(f"/v1/geofences/{gid}", headers=h)).status_code == 204
    assert (await client.post("/v1/geofences", json=circle(-0.7), headers=h)).status_code == 201


@pytest.mark.parametrize("asked", [MAX_LIMIT + 1, 100_000])
async def test_pages_never_exceed_500_items(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, asked: int
) -> None:
    org = await factories.create_organisation(db)
    resident = await factories.create_resident(db, org)
    admin = await quick_staff(db, settings, org, Role.admin)
    await db.execute(
        text(
            "INSERT INTO notifications (id, organisation_id, device_id, kind, title, body, topic, "
            "urgency, ttl_s, related, decision, payload) "
            "SELECT gen_random_uuid(), :o, :d, 'test', 'n' || g, '', 't', 'normal', 60, '{}', "
            "'send', '{}' FROM generate_series(1, 520) g"
        ),
        {"o": org.id, "d": resident.id},
    )
    await db.execute(
        text(
            "INSERT INTO audit_log (id, organisation_id, actor_id, action, entity_type, details, "
            "at) SELECT gen_random_uuid(), :o, :a, 'test', 'test', '{}', now() "
            "FROM generate_series(1, 520)"
        ),
        {"o": org.id, "a": admin.id},
    )
    await db.commit()
    for path, headers in (
        ("/v1/me/notifications", resident.headers),
        ("/v1/audit", admin.headers),
    ):
        r = await client.get(path, params={"limit": asked}, headers=headers)
        assert r.status_code == 200, r.text
        assert len(r.json()["items"]) == MAX_LIMIT
        assert r.json()["next_cursor"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PATCH", "/v1/geofences/import", "POST"),
        ("DELETE", "/v1/geofences/import", "POST"),
        ("GET", "/v1/geofences/import", "POST"),
        ("PATCH", "/v1/geofences/resolve", "GET"),
        ("POST", "/v1/geofences/resolve", "GET"),
    ],
)
async def test_fixed_geofence_paths_answer_405_to_other_methods(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    method: str,
    path: str,
    allowed: str,
) -> None:
    org = await factories.create_organisation(db)
    editor = await quick_staff(db, settings, org, Role.editor)
    await db.commit()
    r = await client.request(method, path, json={}, headers=editor.headers)
    assert r.status_code == 405, r.text
    assert r.headers["Allow"] == allowed
