"""Located only on shift: a field worker's fixes and check-ins off shift or while paused are
refused with 409 `off-shift` and nothing is stored; residents are never affected."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Organisation
from tests.factories import Resident, Staff
from tests.ingest.helpers import (
    Fix,
    basic,
    overland_body,
    owntracks_location,
    traccar_params,
)
from tests.presence.helpers import at, create_circle
from tests.shifts.helpers import NOTHING, add_period, fix, off_shift, set_shift, stored

ASYNC_OR_SYNC = [
    pytest.param("async", 1, id="single-fix-202"),
    pytest.param("async", 3, id="batch-async-202"),
    pytest.param("sync", 1, id="single-fix-sync"),
    pytest.param("sync", 3, id="batch-sync"),
]


def _assert_off_shift(r: httpx.Response, reason: str) -> None:
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["type"].endswith("/off-shift")
    assert problem["reason"] == reason
    assert "Nothing was stored" in problem["detail"]


@pytest.mark.parametrize(("mode", "n"), ASYNC_OR_SYNC)
async def test_off_shift_pings_are_refused_and_not_stored(
    client: httpx.AsyncClient, db: AsyncSession, org: Organisation, worker: Staff, mode: str, n: int
) -> None:
    await create_circle(db, org.id, 0, 0, 40)
    await off_shift(client, worker)
    body = {"pings": [fix(i, 60 - i * 10) for i in range(n)]}
    r = await client.post(f"/v1/pings?mode={mode}", json=body, headers=worker.headers)
    _assert_off_shift(r, "outside-shift")
    assert await stored(db, worker.id) == NOTHING


@pytest.mark.parametrize(("mode", "n"), ASYNC_OR_SYNC)
async def test_paused_pings_are_refused_and_not_stored(
    client: httpx.AsyncClient, db: AsyncSession, org: Organisation, worker: Staff, mode: str, n: int
) -> None:
    await create_circle(db, org.id, 0, 0, 40)  # no shift set: on shift, but paused
    assert (await client.post("/v1/me/tracking/pause", headers=worker.headers)).status_code == 201
    body = {"pings": [fix(i, 60 - i * 10) for i in range(n)]}
    r = await client.post(f"/v1/pings?mode={mode}", json=body, headers=worker.headers)
    _assert_off_shift(r, "paused")
    assert await stored(db, worker.id) == NOTHING
    # resumed: the same fixes are taken (sync: presence and pings; async: the queue)
    assert (await client.post("/v1/me/tracking/resume", headers=worker.headers)).status_code == 200
    body = {"pings": [fix(i, 5 - i) for i in range(n)]}
    r = await client.post(f"/v1/pings?mode={mode}", json=body, headers=worker.headers)
    assert r.status_code in (200, 202), r.text
    assert r.json()["accepted"] == n
    held = await stored(db, worker.id)
    assert held["pings" if mode == "sync" else "ping_queue"] == n


async def test_on_shift_pings_are_stored_and_no_shift_means_on_shift(
    client: httpx.AsyncClient, db: AsyncSession, worker: Staff
) -> None:
    r = await client.post(
        "/v1/pings?mode=sync", json={"pings": [fix(0, 5)]}, headers=worker.headers
    )
    assert r.status_code == 200, r.text  # no shift window set: always on shift (as for pushes)
    await set_shift(client, worker, -1, 1)
    r = await client.post(
        "/v1/pings?mode=sync", json={"pings": [fix(1, 3)]}, headers=worker.headers
    )
    assert r.status_code == 200, r.text
    assert (await stored(db, worker.id))["pings"] == 2


async def test_fixes_taken_while_paused_are_refused_one_by_one(
    client: httpx.AsyncClient, db: AsyncSession, worker: Staff
) -> None:
    """A phone uploading its buffer later: the fixes taken in a pause are not kept."""
    now = datetime.now(UTC)
    await add_period(
        db, worker, "pause", now - timedelta(minutes=30), ended=now - timedelta(minutes=10)
    )
    body = {"pings": [fix(0, 40 * 60), fix(1, 20 * 60), fix(2, 15 * 60), fix(3, 60)]}
    r = await client.post("/v1/pings?mode=sync", json=body, headers=worker.headers)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["accepted"] == 2
    assert sorted((x["id"], x["reason"]) for x in answer["rejected"]) == [
        ("f1", "off-shift"),
        ("f2", "off-shift"),
    ]
    assert (await stored(db, worker.id))["pings"] == 2


async def test_an_adhoc_shift_counts_as_on_shift_and_only_its_fixes_are_kept(
    client: httpx.AsyncClient, db: AsyncSession, worker: Staff
) -> None:
    await off_shift(client, worker)
    now = datetime.now(UTC)
    await add_period(
        db, worker, "shift", now - timedelta(minutes=20), ends_by=now + timedelta(hours=1)
    )
    body = {"pings": [fix(0, 30 * 60), fix(1, 10 * 60), fix(2, 30)]}
    r = await client.post("/v1/pings?mode=async", json=body, headers=worker.headers)
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == 2
    assert r.json()["rejected"] == [{"id": "f0", "reason": "off-shift"}]
    assert (await stored(db, worker.id))["ping_queue"] == 2


async def test_residents_are_never_asked_about_shifts(
    client: httpx.AsyncClient, db: AsyncSession, resident: Resident, worker: Staff
) -> None:
    await off_shift(client, worker)  # the organisation has an off-shift worker; irrelevant here
    body = {"pings": [fix(0, 30), fix(1, 20)]}
    r = await client.post("/v1/pings?mode=sync", json=body, headers=resident.headers)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 2


def _fixes() -> list[Fix]:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
    out = []
    for i in range(3):
        lon, lat = at(i * 20.0, 0.0)
        out.append(Fix(round(lon, 6), round(lat, 6), t0 + timedelta(seconds=30 * i), 8, 1, 90))
    return out


async def _key(client: httpx.AsyncClient, worker: Staff) -> str:
    r = await client.post("/v1/me/ingest-keys", json={}, headers=worker.headers)
    assert r.status_code == 201, r.text
    key: str = r.json()["key"]
    return key


@pytest.mark.parametrize("app_format", ["overland", "owntracks", "traccar-get", "traccar-post"])
@pytest.mark.parametrize("why", ["off-shift", "paused"])
async def test_gps_apps_are_refused_off_shift_and_nothing_is_stored(
    client: httpx.AsyncClient,
    db: AsyncSession,
    org: Organisation,
    worker: Staff,
    app_format: str,
    why: str,
) -> None:
    await create_circle(db, org.id, 0, 0, 40)
    key = await _key(client, worker)
    if why == "paused":
        assert (await client.post("/v1/me/tracking/pause", headers=worker.headers)).status_code
    else:
        await off_shift(client, worker)
    fixes = _fixes()
    if app_format == "overland":
        r = await client.post(
            "/v1/ingest/overland",
            json=overland_body(fixes),
            headers={"Authorization": f"Bearer {key}"},
        )
    elif app_format == "owntracks":
        r = await client.post(
            "/v1/ingest/owntracks", json=owntracks_location(fixes[0]), headers=basic(key)
        )
    elif app_format == "traccar-get":
        r = await client.get("/v1/ingest/traccar", params=traccar_params(key, fixes[0]))
    else:
        r = await client.post("/v1/ingest/traccar", data=traccar_params(key, fixes[0]))
    _assert_off_shift(r, "paused" if why == "paused" else "outside-shift")
    assert await stored(db, worker.id) == NOTHING


async def test_gps_app_fixes_on_shift_are_stored(
    client: httpx.AsyncClient, db: AsyncSession, org: Organisation, worker: Staff
) -> None:
    key = await _key(client, worker)
    await set_shift(client, worker, -1, 1)
    r = await client.post(
        "/v1/ingest/overland",
        json=overland_body(_fixes()),
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 200, r.text
    assert (await stored(db, worker.id))["pings"] == 3


@pytest.mark.parametrize("why", ["off-shift", "paused"])
async def test_off_shift_checkin_is_refused_and_not_stored(
    client: httpx.AsyncClient, db: AsyncSession, org: Organisation, worker: Staff, why: str
) -> None:
    await create_circle(db, org.id, 0, 0, 40)
    lon, lat = at(0, 0)
    body = {"lon": lon, "lat": lat, "accuracy_m": 5}
    if why == "paused":
        assert (await client.post("/v1/me/tracking/pause", headers=worker.headers)).status_code
    else:
        await off_shift(client, worker)
    r = await client.post("/v1/checkins", json=body, headers=worker.headers)
    _assert_off_shift(r, "paused" if why == "paused" else "outside-shift")
    assert await stored(db, worker.id) == NOTHING
    # back on shift (an ad-hoc shift; resumed): the same check-in is taken
    if why == "paused":
        await client.post("/v1/me/tracking/resume", headers=worker.headers)
    else:
        assert (await client.post("/v1/me/shift/start", headers=worker.headers)).status_code == 201
    r = await client.post("/v1/checkins", json=body, headers=worker.headers)
    assert r.status_code == 201, r.text
    assert (await stored(db, worker.id))["checkins"] == 1


async def test_residents_check_in_whatever_the_staff_shifts(
    client: httpx.AsyncClient, db: AsyncSession, org: Organisation, resident: Resident
) -> None:
    await create_circle(db, org.id, 0, 0, 40)
    lon, lat = at(0, 0)
    r = await client.post(
        "/v1/checkins", json={"lon": lon, "lat": lat, "accuracy_m": 5}, headers=resident.headers
    )
    assert r.status_code == 201, r.text
