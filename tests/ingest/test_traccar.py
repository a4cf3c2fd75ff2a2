"""Traccar Client (OsmAnd protocol) with a revocable ingest key as its device identifier."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Organisation
from tests.factories import Resident, Staff
from tests.ingest.helpers import events, send_pings, stored, traccar_params, walk
from tests.presence.helpers import create_circle


async def new_key(client: httpx.AsyncClient, headers: dict[str, str]) -> tuple[str, str]:
    r = await client.post("/v1/me/ingest-keys", json={"label": "my phone"}, headers=headers)
    assert r.status_code == 201, r.text
    data = r.json()
    assert data["key"].startswith("hik_")
    return data["id"], data["key"]


async def test_query_string_form_and_json_store_the_same_as_v1_pings(
    client: httpx.AsyncClient,
    db: AsyncSession,
    org: Organisation,
    resident: Resident,
    twin: Resident,
) -> None:
    await create_circle(db, org.id, 0.0, 0.0, 60.0)
    _, key = await new_key(client, resident.headers)
    fixes = walk()
    for i, f in enumerate(fixes):
        params = traccar_params(key, f)
        if i % 3 == 0:  # older clients: everything in the query string (GET or POST)
            r = await client.request(
                "GET" if i % 2 else "POST", "/v1/ingest/traccar", params=params
            )
        elif i % 3 == 1:  # a form post, timestamp in milliseconds
            params["timestamp"] = str(int(f.t.timestamp() * 1000))
            r = await client.post("/v1/ingest/traccar", data=params)
        else:  # Traccar Client 9+: its JSON body, speed in m/s
            body = {
                "location": {
                    "timestamp": f.t.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                    "coords": {
                        "latitude": f.lat,
                        "longitude": f.lon,
                        "accuracy": f.acc,
                        "speed": f.speed_mps,
                        "heading": f.heading,
                        "altitude": 12,
                    },
                    "is_moving": True,
                    "odometer": 0,
                    "event": "motionchange",
                    "battery": {"level": 0.8, "is_charging": False},
                    "activity": {"type": "walking"},
                    "extras": {},
                },
                "device_id": key,
            }
            r = await client.post("/v1/ingest/traccar", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == 1
    await send_pings(client, twin.headers, fixes)
    assert await stored(db, resident.id) == await stored(db, twin.id)
    evs = await events(db, resident.id)
    assert evs
    assert evs == await events(db, twin.id)


async def test_a_resent_fix_is_stored_once_and_bad_values_are_answered_200(
    client: httpx.AsyncClient, db: AsyncSession, resident: Resident
) -> None:
    _, key = await new_key(client, resident.headers)
    params = traccar_params(key, walk(1)[0])
    for _ in range(2):
        assert (await client.get("/v1/ingest/traccar", params=params)).status_code == 200
    assert len(await stored(db, resident.id)) == 1
    # values that can never be stored are answered 200 with the reason, or the client would
    # resend them for ever ahead of every later fix
    r = await client.get("/v1/ingest/traccar", params={**params, "lat": "0", "lon": "0"})
    assert r.status_code == 200
    assert r.json()["rejected"] == [{"id": r.json()["rejected"][0]["id"], "reason": "null_island"}]
    r = await client.get("/v1/ingest/traccar", params={**params, "lat": "abc"})
    assert r.json()["rejected"][0]["reason"] == "coordinates_not_numbers"
    r = await client.get("/v1/ingest/traccar", params={**params, "valid": "false"})
    assert r.json()["rejected"][0]["reason"] == "invalid_fix"
    r = await client.get("/v1/ingest/traccar", params={**params, "timestamp": "1000"})
    assert r.json()["rejected"][0]["reason"] == "older_than_retention"


async def test_speed_is_knots_and_timestamp_seconds_or_milliseconds(
    client: httpx.AsyncClient, db: AsyncSession, resident: Resident
) -> None:
    _, key = await new_key(client, resident.headers)
    f = walk(1)[0]
    params = {**traccar_params(key, f), "speed": "10", "bearing": "45"}
    assert (await client.get("/v1/ingest/traccar", params=params)).status_code == 200
    ((recorded_at, *_rest),) = await stored(db, resident.id)
    assert recorded_at == f.t
    row = (await stored(db, resident.id))[0]
    assert float(row[4]) == pytest.approx(5.144444, abs=1e-6)
    assert row[5] == 45.0


async def test_an_unknown_or_revoked_key_is_401_and_background_off_409(
    client: httpx.AsyncClient, resident: Resident, worker: Staff
) -> None:
    key_id, key = await new_key(client, resident.headers)
    params = traccar_params(key, walk(1)[0])
    assert (await client.get("/v1/ingest/traccar", params=params)).status_code == 200
    params.pop("id")
    assert (await client.get("/v1/ingest/traccar", params=params)).status_code == 401
    params["id"] = "hik_unknown"
    assert (await client.get("/v1/ingest/traccar", params=params)).status_code == 401
    other_id, _ = await new_key(client, worker.headers)
    r = await client.delete(f"/v1/me/ingest-keys/{other_id}", headers=resident.headers)
    assert r.status_code == 404, "another's key is not found"
    r = await client.delete(f"/v1/me/ingest-keys/{key_id}", headers=resident.headers)
    assert r.status_code == 204
    params["id"] = key
    assert (await client.get("/v1/ingest/traccar", params=params)).status_code == 401
    _, key2 = await new_key(client, resident.headers)
    await client.put(
        "/v1/me/background-location", json={"enabled": False}, headers=resident.headers
    )
    r = await client.get("/v1/ingest/traccar", params={**params, "id": key2})
    assert r.status_code == 409
    assert r.json()["type"].endswith("background-location-off")


async def test_only_devices_and_field_workers_get_keys(
    client: httpx.AsyncClient, db: AsyncSession, worker: Staff, resident: Resident
) -> None:
    from app.accounts.models import Role
    from tests.factories import create_staff

    org_id = worker.organisation_id
    org = await db.get(Organisation, org_id)
    assert org is not None
    editor = await create_staff(db, client._transport.app.state.settings, org, Role.editor)  # type: ignore[attr-defined]
    r = await client.post("/v1/me/ingest-keys", headers=editor.headers)
    assert r.status_code == 403
    assert (await client.post("/v1/me/ingest-keys")).status_code == 401
    _, key = await new_key(client, worker.headers)
    # a field worker's key works for Overland and OwnTracks too (their own tokens expire)
    r = await client.post(
        "/v1/ingest/overland",
        json={"locations": []},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 200, r.text


async def test_the_key_never_reaches_a_log_line_metric_or_error(
    client: httpx.AsyncClient,
    db: AsyncSession,
    org: Organisation,
    resident: Resident,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await create_circle(db, org.id, 0.0, 0.0, 60.0)
    _, key = await new_key(client, resident.headers)
    fixes = walk(3)
    answers: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for f in fixes:
            r = await client.get("/v1/ingest/traccar", params=traccar_params(key, f))
            answers.append(r.text)
        bad = traccar_params(key, fixes[0])
        for extra in ({"lat": "x"}, {"timestamp": "soon"}, {"speed": "fast"}):
            answers.append((await client.get("/v1/ingest/traccar", params={**bad, **extra})).text)
        answers.append((await client.post("/v1/ingest/traccar", params=bad, content=b"\x00")).text)
        answers.append(
            (
                await client.post(
                    "/v1/ingest/traccar",
                    content=b'{"device_id": "' + key.encode() + b'", "location": 5',
                    headers={"content-type": "application/json"},
                )
            ).text
        )
        await client.put(
            "/v1/me/background-location", json={"enabled": False}, headers=resident.headers
        )
        answers.append((await client.get("/v1/ingest/traccar", params=bad)).text)
        answers.append(
            (await client.get("/v1/ingest/traccar", params={**bad, "id": key + "x"})).text
        )
        answers.append((await client.get("/metrics")).text)
    # everything the service logged (the test's own HTTP client, httpx, logs the URLs it
    # requests: that is the phone's side, not the service's)
    ours = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in ours)
    assert "/v1/ingest/traccar" in logged, "the access log saw the requests"
    secret = key.removeprefix("hik_")
    leaks = [line for line in logged.splitlines() if secret in line]
    assert not leaks, leaks[:2]
    for answer in answers:
        assert secret not in answer


async def test_timestamp_forms(
    client: httpx.AsyncClient, db: AsyncSession, resident: Resident
) -> None:
    _, key = await new_key(client, resident.headers)
    f = walk(1)[0]
    for ts in (
        str(int(f.t.timestamp())),
        str(int(f.t.timestamp() * 1000)),
        f.t.strftime("%Y-%m-%d %H:%M:%S"),
        f.t.isoformat(),
    ):
        r = await client.get(
            "/v1/ingest/traccar", params={**traccar_params(key, f), "timestamp": ts}
        )
        assert r.status_code == 200, r.text
    assert len(await stored(db, resident.id)) == 1, "all four are the same fix"
    before = datetime.now(UTC)
    params = traccar_params(key, f)
    params.pop("timestamp")
    params["lat"] = str(f.lat + 0.001)
    assert (await client.get("/v1/ingest/traccar", params=params)).json()["accepted"] == 1
    newest = (await stored(db, resident.id))[-1][0]
    assert newest >= before.replace(microsecond=0), "no timestamp: the time it arrived"
