"""The bench's GPS-app requests are what the apps send: the API accepts every fix in them, and
they store the same fixes as the `POST /v1/pings` requests they are compared with."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from itertools import count

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Organisation
from bench import scenarios
from bench.city import City, CityConfig
from bench.load import Req, fill_placeholders, headers_for
from tests.factories import Resident, create_organisation, create_resident
from tests.ingest.helpers import drain

CITY = City(CityConfig(seed=7, geofences=300, devices=40))
DEVICES, FIXES, BATCH = 2, 3, 5


async def _residents(db: AsyncSession, client: httpx.AsyncClient, n: int) -> list[Resident]:
    org: Organisation = await create_organisation(db)
    out = []
    for _ in range(n):
        res = await create_resident(db, org)
        r = await client.put(
            "/v1/me/background-location", json={"enabled": True}, headers=res.headers
        )
        assert r.status_code == 200, r.text
        out.append(res)
    return out


async def _send(client: httpx.AsyncClient, reqs: list[Req], tag: str) -> list[httpx.Response]:
    ids, out = count(1), []
    for req in reqs:
        now = datetime.now(UTC)
        body = fill_placeholders(req.body, tag, ids, now) if req.body else None
        path = fill_placeholders(req.path, tag, ids, now)
        out.append(await client.request(req.method, path, content=body, headers=headers_for(req)))
    return out


async def _positions(db: AsyncSession, subject: Resident) -> list[tuple[float, float]]:
    await drain(db)  # OwnTracks' and Traccar's single fixes are queued, as /v1/pings' are
    rows = await db.execute(
        text("SELECT lon, lat FROM pings WHERE subject_id = :s ORDER BY lon, lat"),
        {"s": subject.id},
    )
    return [(float(lon), float(lat)) for lon, lat in rows]


def _overland(tokens: list[str], keys: list[str]) -> list[Req]:
    return scenarios.overland_requests(CITY, DEVICES, BATCH, tokens)


def _owntracks(tokens: list[str], keys: list[str]) -> list[Req]:
    return scenarios.owntracks_requests(CITY, DEVICES, FIXES, tokens)


def _traccar(tokens: list[str], keys: list[str]) -> list[Req]:
    return scenarios.traccar_requests(CITY, DEVICES, FIXES, keys)


@pytest.mark.parametrize(
    ("app_requests", "native", "per_request"),
    [
        (_overland, lambda t: scenarios.batch_ping_requests(CITY, DEVICES, BATCH, t), BATCH),
        (_owntracks, lambda t: scenarios.single_ping_requests(CITY, DEVICES, FIXES, t), 1),
        (_traccar, lambda t: scenarios.single_ping_requests(CITY, DEVICES, FIXES, t), 1),
    ],
    ids=["overland", "owntracks", "traccar"],
)
async def test_app_requests_store_the_same_fixes_as_the_native_ones(
    client: httpx.AsyncClient,
    db: AsyncSession,
    app_requests: Callable[[list[str], list[str]], list[Req]],
    native: Callable[[list[str]], list[Req]],
    per_request: int,
) -> None:
    app_devices = await _residents(db, client, DEVICES)
    native_devices = await _residents(db, client, DEVICES)
    keys = []
    for res in app_devices:
        r = await client.post("/v1/me/ingest-keys", json={"label": "bench"}, headers=res.headers)
        assert r.status_code == 201, r.text
        keys.append(r.json()["key"])

    app_reqs = app_requests([d.token for d in app_devices], keys)
    answers = await _send(client, app_reqs, "app")
    assert [a.status_code for a in answers] == [200] * len(app_reqs), answers[0].text
    for a in answers:
        summary = a.json()
        if isinstance(summary, dict):  # Overland and Traccar answer a summary; OwnTracks a list
            assert summary["accepted"] == per_request, summary
            assert summary["rejected"] == []
            assert summary["duplicates"] == 0
    # `mode=sync`: the bench's single fixes are answered 202 and evaluated moments later; here
    # they are evaluated before the answer, so their pings can be compared at once
    native_reqs = [
        Req(r.method, f"{r.path}?mode=sync", r.token, r.body)
        for r in native([d.token for d in native_devices])
    ]
    native_answers = await _send(client, native_reqs, "native")
    assert {a.status_code for a in native_answers} == {200}

    expected = DEVICES * (BATCH if per_request > 1 else FIXES)
    for mine, twin in zip(app_devices, native_devices, strict=True):
        stored = await _positions(db, mine)
        assert len(stored) == expected // DEVICES
        assert stored == await _positions(db, twin)


async def test_an_overland_batch_replayed_at_once_is_new_fixes_not_a_retry(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    """wrk replays a few hundred batches in a loop: a line sent again within the same second
    must not be answered as a retry (ids are derived from the time), or it measures dedupe."""
    [device] = await _residents(db, client, 1)
    reqs = scenarios.overland_requests(CITY, 1, BATCH, [device.token])
    first, again = await _send(client, reqs * 2, "replay")
    assert first.json()["accepted"] == BATCH
    assert again.json()["accepted"] == BATCH, again.json()
    assert again.json()["duplicates"] == 0
    assert len(await _positions(db, device)) == 2 * BATCH
