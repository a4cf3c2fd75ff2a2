"""Overland (iOS): batches of GeoJSON points, {"result": "ok"} only once stored."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Organisation
from app.core.config import Settings
from tests.factories import Resident, Staff
from tests.ingest.helpers import events, overland_body, send_pings, stored, walk
from tests.presence.helpers import create_circle


async def test_a_batch_stores_the_same_pings_and_events_as_v1_pings(
    client: httpx.AsyncClient,
    db: AsyncSession,
    org: Organisation,
    resident: Resident,
    twin: Resident,
) -> None:
    await create_circle(db, org.id, 0.0, 0.0, 60.0)
    fixes = walk()
    r = await client.post(
        "/v1/ingest/overland", json=overland_body(fixes), headers=resident.headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["result"] == "ok"
    assert r.json()["accepted"] == len(fixes)
    await send_pings(client, twin.headers, fixes)
    mine = await stored(db, resident.id)
    assert len(mine) == len(fixes)
    assert mine == await stored(db, twin.id)
    evs = await events(db, resident.id)
    assert evs, "walking through the place makes an event"
    assert evs == await events(db, twin.id)


async def test_a_retried_batch_stores_nothing_twice(
    client: httpx.AsyncClient, db: AsyncSession, org: Organisation, resident: Resident
) -> None:
    await create_circle(db, org.id, 0.0, 0.0, 60.0)
    body = overland_body(walk())
    first = await client.post("/v1/ingest/overland", json=body, headers=resident.headers)
    assert first.status_code == 200, first.text
    before_pings, before_events = await stored(db, resident.id), await events(db, resident.id)
    again = await client.post("/v1/ingest/overland", json=body, headers=resident.headers)
    assert again.status_code == 200
    assert again.json() == {
        "result": "ok",
        "accepted": 0,
        "duplicates": len(body["locations"]),
        "rejected": [],
        "flagged": [],
    }
    assert await stored(db, resident.id) == before_pings
    assert await events(db, resident.id) == before_events


async def test_out_of_order_batches_end_as_in_order_ones(
    client: httpx.AsyncClient,
    db: AsyncSession,
    org: Organisation,
    resident: Resident,
    twin: Resident,
) -> None:
    await create_circle(db, org.id, 0.0, 0.0, 60.0)
    fixes = walk()
    shuffled = fixes[4:] + fixes[:4][::-1]
    r = await client.post(
        "/v1/ingest/overland", json=overland_body(shuffled), headers=resident.headers
    )
    assert r.status_code == 200, r.text
    await send_pings(client, twin.headers, shuffled)
    assert await stored(db, resident.id) == await stored(db, twin.id)
    assert await events(db, resident.id) == await events(db, twin.id)


async def test_bad_values_are_rejected_one_by_one_and_the_rest_stored(
    client: httpx.AsyncClient, resident: Resident
) -> None:
    body = overland_body(walk(3))
    locs = body["locations"]
    locs[0]["properties"]["timestamp"] = "yesterday"
    locs[1]["geometry"]["coordinates"] = [0.0, 0.0]
    locs.append({"type": "Feature", "geometry": {"type": "LineString", "coordinates": []}})
    locs.append(
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [-1.5, 95.0]},
            "properties": {"timestamp": "2026-12-03T10:00:00Z"},
        }
    )
    locs.append(
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [-1.5, 53.8]},
            "properties": {"timestamp": "2026-12-03T10:00:00", "speed": -1},
        }
    )
    r = await client.post("/v1/ingest/overland", json=body, headers=resident.headers)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["result"] == "ok"
    assert data["accepted"] == 1
    reasons = sorted(x["reason"] for x in data["rejected"])
    assert reasons == [
        "bad_timestamp",
        "coordinates_out_of_range",
        "not_a_point_feature",
        "null_island",
        "recorded_at_without_timezone",
    ]


async def test_a_body_that_is_not_a_batch_is_a_clear_error_and_overland_retries(
    client: httpx.AsyncClient, resident: Resident
) -> None:
    r = await client.post("/v1/ingest/overland", json={"points": []}, headers=resident.headers)
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert "locations" in r.json()["detail"]
    r = await client.post(
        "/v1/ingest/overland",
        content=b"{not json",
        headers={**resident.headers, "content-type": "application/json"},
    )
    assert r.status_code == 400


async def test_background_location_off_is_refused_as_on_v1_pings(
    client: httpx.AsyncClient, db: AsyncSession, resident: Resident
) -> None:
    off = await client.put(
        "/v1/me/background-location", json={"enabled": False}, headers=resident.headers
    )
    assert off.status_code == 200
    fixes = walk(2)
    r = await client.post(
        "/v1/ingest/overland", json=overland_body(fixes), headers=resident.headers
    )
    direct = await client.post(
        "/v1/pings",
        json={
            "pings": [{"id": "x", "lon": -1.5, "lat": 53.8, "recorded_at": fixes[0].t.isoformat()}]
        },
        headers=resident.headers,
    )
    assert r.status_code == direct.status_code == 409
    assert r.json()["type"] == direct.json()["type"]
    assert await stored(db, resident.id) == []


async def test_credentials_batch_size_and_roles(
    client: httpx.AsyncClient, settings: Settings, resident: Resident, worker: Staff
) -> None:
    body = overland_body(walk(2))
    assert (await client.post("/v1/ingest/overland", json=body)).status_code == 401
    bad = {"Authorization": "Bearer hd_not-a-token"}
    assert (await client.post("/v1/ingest/overland", json=body, headers=bad)).status_code == 401
    r = await client.post("/v1/ingest/overland", json=body, headers=worker.headers)
    assert r.status_code == 200, r.text
    big = overland_body(walk(2) * (settings.ping_max_batch // 2 + 1))
    r = await client.post("/v1/ingest/overland", json=big, headers=resident.headers)
    assert r.status_code == 413
