"""POST /v1/pings: who may send, and every bad-input case (docs/quality.md) for pings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Organisation
from tests.factories import Resident, Staff, create_resident
from tests.presence.helpers import T0, P, at, create_circle, send


async def _count_pings(db: AsyncSession, subject_id: Any) -> int:
    n = await db.scalar(text("SELECT count(*) FROM pings WHERE subject_id = :s"), {"s": subject_id})
    return int(n or 0)


def _ok(i: int, **kw: Any) -> dict[str, Any]:
    return P(f"ok{i}", 500 + i, 500, T0 + timedelta(seconds=10 * i)).ping() | kw


async def test_background_location_is_off_by_default_and_pings_get_409(
    client: httpx.AsyncClient, db: AsyncSession, org: Organisation
) -> None:
    res = await create_resident(db, org)
    r = await client.get("/v1/me/background-location", headers=res.headers)
    assert r.json() == {"enabled": False}
    r = await client.post("/v1/pings", json={"pings": [_ok(1)]}, headers=res.headers)
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"].endswith("background-location-off")
    assert await _count_pings(db, res.id) == 0


async def test_switching_background_location_off_stops_processing(
    client: httpx.AsyncClient, db: AsyncSession, resident: Resident
) -> None:
    assert (await send(client, resident.headers, [_ok(1)]))["accepted"] == 1
    r = await client.put(
        "/v1/me/background-location", json={"enabled": False}, headers=resident.headers
    )
    assert r.json() == {"enabled": False}
    r = await client.post("/v1/pings", json={"pings": [_ok(2)]}, headers=resident.headers)
    assert r.status_code == 409
    assert await _count_pings(db, resident.id) == 1


async def test_field_worker_may_send_pings_but_editor_may_not(
    client: httpx.AsyncClient, db: AsyncSession, worker: Staff, editor: Staff
) -> None:
    assert (await send(client, worker.headers, [_ok(1)]))["accepted"] == 1
    r = await client.post("/v1/pings", json={"pings": [_ok(1)]}, headers=editor.headers)
    assert r.status_code == 403
    assert await _count_pings(db, editor.id) == 0


async def test_background_location_switch_is_for_devices_only(
    client: httpx.AsyncClient, worker: Staff
) -> None:
    r = await client.put(
        "/v1/me/background-location", json={"enabled": True}, headers=worker.headers
    )
    assert r.status_code == 403


async def test_pings_need_a_bearer(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/pings", json={"pings": [_ok(1)]})
    assert r.status_code == 401


async def test_more_than_1000_pings_is_413_and_stores_nothing(
    client: httpx.AsyncClient, db: AsyncSession, resident: Resident
) -> None:
    pings = [P(f"x{i}", i, 0, T0 + timedelta(seconds=i)).ping() for i in range(1001)]
    r = await client.post("/v1/pings", json={"pings": pings}, headers=resident.headers)
    assert r.status_code == 413
    assert await _count_pings(db, resident.id) == 0


async def test_exactly_1000_pings_are_accepted(
    client: httpx.AsyncClient, resident: Resident
) -> None:
    pings = [P(f"x{i}", i % 50, 0, T0 + timedelta(seconds=i)).ping() for i in range(1000)]
    assert (await send(client, resident.headers, pings))["accepted"] == 1000


async def test_body_above_limit_is_413_before_parsing(
    client: httpx.AsyncClient, resident: Resident
) -> None:
    r = await client.post(
        "/v1/pings",
        content=b'{"pings": [' + b" " * 1_100_000 + b"]}",
        headers={**resident.headers, "content-type": "application/json"},
    )
    assert r.status_code == 413


async def test_unknown_fields_and_wrong_shapes_are_422_and_store_nothing(
    client: httpx.AsyncClient, db: AsyncSession, resident: Resident
) -> None:
    for body in (
        {"pings": [_ok(1, altitude=3)]},
        {"pings": [_ok(1)], "device": "x"},
        {"pings": [{k: v for k, v in _ok(1).items() if k != "lon"}]},
        {"pings": [_ok(1, id="")]},
        {"pings": [_ok(1, recorded_at="yesterday")]},
        {"pings": "all of them"},
    ):
        r = await client.post("/v1/pings", json=body, headers=resident.headers)
        assert r.status_code == 422, body
        assert r.json()["errors"]
    assert await _count_pings(db, resident.id) == 0


async def test_bad_values_reject_only_their_ping(
    client: httpx.AsyncClient, db: AsyncSession, resident: Resident
) -> None:
    now = datetime.now(UTC)
    bad = [
        _ok(10, id="lon-200", lon=200.0),
        _ok(11, id="lat-91", lat=-91.0),
        _ok(12, id="null-island", lon=0.0, lat=0.0),
        _ok(13, id="future", recorded_at=(now + timedelta(minutes=6)).isoformat()),
        _ok(14, id="too-old", recorded_at=(now - timedelta(hours=25)).isoformat()),
        _ok(15, id="naive", recorded_at="2026-11-25T12:00:00"),
    ]
    good = [
        _ok(1),
        _ok(2),
        _ok(3, id="near-future", recorded_at=(now + timedelta(minutes=4)).isoformat()),
    ]
    # NaN, Infinity and 1e400 are what a lenient JSON parser lets through: raw bytes here.
    raw = orjson.dumps({"pings": [*bad, *good]})[:-2]
    lon, lat = at(500, 500)
    t = (T0 + timedelta(seconds=1)).isoformat()
    for pid, lon_s, lat_s in (
        ("nan", "NaN", str(lat)),
        ("inf", str(lon), "Infinity"),
        ("huge", "1e400", str(lat)),
    ):
        raw += (
            f',{{"id":"{pid}","lon":{lon_s},"lat":{lat_s},"accuracy_m":5,"recorded_at":"{t}"}}'
        ).encode()
    raw += b"]}"
    r = await client.post(
        "/v1/pings", content=raw, headers={**resident.headers, "content-type": "application/json"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 3
    assert {x["id"]: x["reason"] for x in body["rejected"]} == {
        "lon-200": "coordinates_out_of_range",
        "lat-91": "coordinates_out_of_range",
        "null-island": "null_island",
        "future": "recorded_at_in_future",
        "too-old": "older_than_retention",
        "naive": "recorded_at_without_timezone",
        "nan": "coordinates_not_finite",
        "inf": "coordinates_not_finite",
        "huge": "coordinates_not_finite",
    }
    stored = set(
        await db.scalars(
            text("SELECT client_id FROM pings WHERE subject_id = :s"), {"s": resident.id}
        )
    )
    assert stored == {"ok1", "ok2", "near-future"}


async def test_unusable_accuracy_is_stored_but_never_triggers(
    client: httpx.AsyncClient, db: AsyncSession, org: Organisation, resident: Resident
) -> None:
    await create_circle(db, org.id, 0, 0, 50, dwell_s=0)
    pings = [
        P("missing", 0, 0, T0, acc=None).ping(),
        P("zero", 0, 0, T0 + timedelta(seconds=10), acc=0).ping(),
        P("negative", 0, 0, T0 + timedelta(seconds=20), acc=-5).ping(),
    ]
    body = await send(client, resident.headers, pings)
    assert body["accepted"] == 3
    assert body["events"] == []
    assert {f["id"]: f["reason"] for f in body["flagged"]} == {
        "missing": "unusable_accuracy",
        "zero": "unusable_accuracy",
        "negative": "unusable_accuracy",
    }
    # NaN accuracy via raw JSON
    lon, lat = at(0, 0)
    t = (T0 + timedelta(seconds=30)).isoformat()
    raw = (
        f'{{"pings":[{{"id":"nan","lon":{lon},"lat":{lat},"accuracy_m":NaN,"recorded_at":"{t}"}}]}}'
    )
    r = await client.post(
        "/v1/pings",
        content=raw.encode(),
        headers={**resident.headers, "content-type": "application/json"},
    )
    assert r.json()["flagged"] == [{"id": "nan", "reason": "unusable_accuracy"}]
    rows = (
        await db.execute(
            text("SELECT quality, accuracy_m FROM pings WHERE subject_id = :s"), {"s": resident.id}
        )
    ).all()
    assert rows
    assert all(q == "unusable_accuracy" and a is None for q, a in rows)
    assert (await client.get("/v1/me/presence", headers=resident.headers)).json() == []


async def test_accuracy_above_maximum_never_triggers(
    client: httpx.AsyncClient, db: AsyncSession, org: Organisation, resident: Resident
) -> None:
    await create_circle(db, org.id, 0, 0, 50)
    body = await send(client, resident.headers, [P("vague", 0, 0, T0, acc=251).ping()])
    assert body["accepted"] == 1
    assert body["events"] == []
    assert body["flagged"] == [{"id": "vague", "reason": "low_accuracy"}]


async def test_duplicates_are_acknowledged_and_stored_once(
    client: httpx.AsyncClient, db: AsyncSession, resident: Resident
) -> None:
    a, b = _ok(1), _ok(2)
    body = await send(client, resident.headers, [a, b, a])
    assert (body["accepted"], body["duplicates"]) == (2, 1)
    body = await send(client, resident.headers, [a, _ok(3)])
    assert (body["accepted"], body["duplicates"]) == (1, 1)
    # a retry whose clock moved still names the same ping
    moved = a | {"recorded_at": (T0 + timedelta(minutes=30)).isoformat()}
    body = await send(client, resident.headers, [moved])
    assert (body["accepted"], body["duplicates"]) == (0, 1)
    assert await _count_pings(db, resident.id) == 3


async def test_ping_ids_are_per_device(
    client: httpx.AsyncClient, db: AsyncSession, org: Organisation, resident: Resident
) -> None:
    other = await create_resident(db, org)
    await client.put("/v1/me/background-location", json={"enabled": True}, headers=other.headers)
    assert (await send(client, resident.headers, [_ok(1)]))["accepted"] == 1
    assert (await send(client, other.headers, [_ok(1)]))["accepted"] == 1


async def test_coordinates_are_stored_with_six_decimals_and_unknown_speed_dropped(
    client: httpx.AsyncClient, db: AsyncSession, resident: Resident
) -> None:
    p = {
        "id": "precise",
        "lon": -1.549123456789,
        "lat": 53.800812345678,
        "accuracy_m": 8,
        "recorded_at": T0.isoformat(),
        "speed_mps": -1,
        "heading": 400,
    }
    await send(client, resident.headers, [p])
    row = (
        await db.execute(
            text("SELECT lon, lat, speed_mps, heading FROM pings WHERE subject_id = :s"),
            {"s": resident.id},
        )
    ).one()
    assert (row.lon, row.lat) == (-1.549123, 53.800812)
    assert (row.speed_mps, row.heading) == (None, None)


async def test_empty_batch_is_fine(client: httpx.AsyncClient, resident: Resident) -> None:
    body = await send(client, resident.headers, [])
    assert body == {"accepted": 0, "duplicates": 0, "rejected": [], "events": [], "flagged": []}
