"""OwnTracks (HTTP mode): Basic auth, location/transition messages, waypoints in the answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Organisation
from app.core.config import Settings
from app.privacy import service as privacy_service
from tests.factories import Resident
from tests.ingest.helpers import basic, events, owntracks_location, send_pings, stored, walk
from tests.presence.helpers import at, create_circle

# The booklet's waypoint shape (tech/json, `_type: waypoint`): these fields and no others.
WAYPOINT_FIELDS = {"_type", "desc", "lat", "lon", "rad", "tst"}


def waypoints_of(answer: list[dict[str, Any]]) -> list[dict[str, Any]]:
    assert isinstance(answer, list)
    cmds = [m for m in answer if m.get("_type") == "cmd"]
    if not cmds:
        return []
    (cmd,) = cmds
    assert cmd["action"] == "setWaypoints"
    assert cmd["waypoints"]["_type"] == "waypoints"
    wps: list[dict[str, Any]] = cmd["waypoints"]["waypoints"]
    for wp in wps:
        assert set(wp) == WAYPOINT_FIELDS
        assert wp["_type"] == "waypoint"
        assert isinstance(wp["desc"], str)
        assert wp["desc"]
        assert isinstance(wp["lat"], float)
        assert -90 <= wp["lat"] <= 90
        assert isinstance(wp["lon"], float)
        assert -180 <= wp["lon"] <= 180
        assert isinstance(wp["rad"], int)
        assert wp["rad"] > 0
        assert isinstance(wp["tst"], int)
        assert wp["tst"] > 0
    assert len({wp["tst"] for wp in wps}) == len(wps), "tst identifies a waypoint"
    return wps


async def test_locations_store_the_same_pings_and_events_as_v1_pings(
    client: httpx.AsyncClient,
    db: AsyncSession,
    org: Organisation,
    resident: Resident,
    twin: Resident,
) -> None:
    await create_circle(db, org.id, 0.0, 0.0, 60.0)
    fixes = walk()
    for f in fixes:  # one message per request, as the app posts them
        r = await client.post(
            "/v1/ingest/owntracks", json=owntracks_location(f), headers=basic(resident.token)
        )
        assert r.status_code == 200, r.text
    await send_pings(client, twin.headers, fixes)
    assert await stored(db, resident.id) == await stored(db, twin.id)
    evs = await events(db, resident.id)
    assert evs
    assert evs == await events(db, twin.id)


async def test_a_resent_message_is_stored_once(
    client: httpx.AsyncClient, db: AsyncSession, resident: Resident
) -> None:
    msg = owntracks_location(walk(1)[0])
    for _ in range(2):
        r = await client.post("/v1/ingest/owntracks", json=msg, headers=basic(resident.token))
        assert r.status_code == 200
    assert len(await stored(db, resident.id)) == 1


async def test_a_transition_is_only_a_fix_and_passes_the_same_rules(
    client: httpx.AsyncClient, db: AsyncSession, org: Organisation, resident: Resident
) -> None:
    await create_circle(db, org.id, 0.0, 0.0, 60.0)
    f = walk(1)[0]
    lon, lat = at(0.0, 0.0)
    transition = {
        "_type": "transition",
        "event": "enter",
        "desc": "Central Library",
        "lat": lat,
        "lon": lon,
        "tst": int(f.t.timestamp()),
        "wtst": 1_000_000_001,
        "acc": 10,
        "t": "c",
        "tid": "JB",
    }
    r = await client.post("/v1/ingest/owntracks", json=transition, headers=basic(resident.token))
    assert r.status_code == 200, r.text
    assert len(await stored(db, resident.id)) == 1
    # one fix is never enough for an enter (docs/presence.md): the app's word is not taken
    assert [e for e in await events(db, resident.id) if e[0] == "enter"] == []


async def test_other_message_types_are_acknowledged_and_store_nothing(
    client: httpx.AsyncClient, db: AsyncSession, resident: Resident
) -> None:
    for msg in (
        {"_type": "lwt", "tst": 1},
        {"_type": "waypoint", "desc": "Home", "lat": 1.0, "lon": 1.0, "rad": 50, "tst": 2},
        {"_type": "card", "name": "J"},
        {"_type": "encrypted", "data": "abc"},
    ):
        r = await client.post("/v1/ingest/owntracks", json=msg, headers=basic(resident.token))
        assert r.status_code == 200
        assert r.json() == []
    r = await client.post("/v1/ingest/owntracks", content=b"", headers=basic(resident.token))
    assert r.status_code == 200
    assert r.json() == []
    assert await stored(db, resident.id) == []


async def test_units_tst_seconds_vel_kmh_cog_degrees(
    client: httpx.AsyncClient, db: AsyncSession, resident: Resident
) -> None:
    f = walk(1)[0]
    msg = owntracks_location(f, vel=36, cog=270, acc=12)
    r = await client.post("/v1/ingest/owntracks", json=msg, headers=basic(resident.token))
    assert r.status_code == 200
    ((recorded_at, lon, lat, acc, speed, heading, quality, late),) = await stored(db, resident.id)
    assert recorded_at == f.t
    assert (lon, lat, acc, float(speed), heading) == (f.lon, f.lat, 12.0, 10.0, 270.0)


async def test_bad_values_are_reported_and_credentials_checked(
    client: httpx.AsyncClient, resident: Resident
) -> None:
    f = walk(1)[0]
    r = await client.post(
        "/v1/ingest/owntracks", json=owntracks_location(f), headers=resident.headers
    )
    assert r.status_code == 200, "a Bearer token works too"
    assert (await client.post("/v1/ingest/owntracks", json={"_type": "lwt"})).status_code == 401
    wrong = basic("hd_wrong")
    r = await client.post("/v1/ingest/owntracks", json=owntracks_location(f), headers=wrong)
    assert r.status_code == 401
    r = await client.post(
        "/v1/ingest/owntracks",
        json=owntracks_location(f, lat="north", tst=int(f.t.timestamp()) + 5),
        headers=basic(resident.token),
    )
    assert r.status_code == 200
    r = await client.post("/v1/ingest/owntracks", json=[1, 2], headers=basic(resident.token))
    assert r.status_code == 422


async def test_waypoints_are_the_nearest_places_and_follow_the_person(
    client: httpx.AsyncClient, db: AsyncSession, org: Organisation, resident: Resident
) -> None:
    # 25 places along a line west of the origin and 25 three kilometres east of it
    west = [await create_circle(db, org.id, -100.0 * i, 0.0, 30.0, name=f"W{i}") for i in range(25)]
    east = [
        await create_circle(db, org.id, 3000.0 + 100.0 * i, 0.0, 30.0, name=f"E{i}")
        for i in range(25)
    ]
    assert west
    assert east
    f = walk(1)[0]

    async def post_at(east_m: float, dt: int) -> list[dict[str, Any]]:
        lon, lat = at(east_m, 0.0)
        msg = owntracks_location(
            f, lon=round(lon, 6), lat=round(lat, 6), tst=int(f.t.timestamp()) + dt
        )
        r = await client.post("/v1/ingest/owntracks", json=msg, headers=basic(resident.token))
        assert r.status_code == 200, r.text
        return waypoints_of(r.json())

    first = await post_at(0.0, 0)
    assert len(first) == 20, "capped at iOS's 20 monitored regions"
    assert {w["desc"] for w in first} == {f"W{i}" for i in range(20)}, "the nearest ones"
    assert all(w["rad"] == 30 + 50 for w in first), "radius plus trigger distance"
    assert await post_at(200.0, 30) == [], "not moved far: nothing new to send"
    moved = await post_at(3000.0, 60)
    assert {w["desc"] for w in moved} == {f"E{i}" for i in range(20)}
    again = await post_at(0.0, 90)
    assert {w["tst"] for w in again} == {w["tst"] for w in first}, "a place keeps its tst"


async def test_the_waypoint_anchor_is_purged_with_the_pings_and_then_sent_again(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    org: Organisation,
    resident: Resident,
) -> None:
    await create_circle(db, org.id, 0.0, 0.0, 60.0)
    f = walk(1)[0]
    r = await client.post(
        "/v1/ingest/owntracks", json=owntracks_location(f), headers=basic(resident.token)
    )
    assert waypoints_of(r.json())
    later = datetime.now(UTC) + timedelta(hours=settings.ping_retention_h, minutes=1)
    removed = await privacy_service.purge(db, settings, later)
    assert removed["waypoint_anchors"] == 1
    msg = owntracks_location(f, tst=int(f.t.timestamp()) + 10)
    r = await client.post("/v1/ingest/owntracks", json=msg, headers=basic(resident.token))
    assert waypoints_of(r.json()), "no anchor left: the phone gets its waypoints again"
