"""Issue 18, findings 3, 4, 5, 7 and 11 (booleans): hostile input is a 422, never a 500 or a row.

- 3: NUL (U+0000) in any string input: form login, JSON bodies, query and path parameters.
- 4: datetimes whose UTC conversion overflows (`9999-12-31T23:59:59-14:00`,
  `0001-01-01T00:00:00+14:00`) in bodies, filters, cursors and the SSE stream.
- 5: free-form JSON nested 900 levels deep, or too large.
- 7: `javascript:`, `data:` and other non-https URLs wherever a URL is stored.
- 11: `0` / `"true"` are not booleans.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Role
from app.core.config import Environment, Settings
from app.offers.models import Offer
from tests import factories
from tests.offers.helpers import create_geofence, quick_staff

HIGH = "9999-12-31T23:59:59-14:00"  # overflows when converted to UTC
LOW = "0001-01-01T00:00:00+14:00"  # underflows
OVERFLOWING = [HIGH, LOW, "2500-01-01T00:00:00+00:00".replace("2500", "3001")]


@dataclass
class World:
    admin: factories.Staff
    editor: factories.Staff
    resident: factories.Resident
    place: uuid.UUID
    org_slug: str


@pytest.fixture
async def world(db: AsyncSession, settings: Settings) -> World:
    org = await factories.create_organisation(db)
    place = await create_geofence(db, org.id)
    world = World(
        admin=await quick_staff(db, settings, org, Role.admin),
        editor=await quick_staff(db, settings, org, Role.editor),
        resident=await factories.create_resident(db, org),
        place=place.id,
        org_slug=org.slug,
    )
    await db.commit()
    return world


def assert_422(res: httpx.Response) -> dict[str, Any]:
    assert res.status_code == 422, f"{res.status_code}: {res.text[:500]}"
    assert res.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = res.json()
    assert body["status"] == 422
    return body


async def rows(db: AsyncSession, table: str) -> int:
    return int((await db.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())  # noqa: S608


def offer_body(place: uuid.UUID, **extra: Any) -> dict[str, Any]:
    return {
        "title": "Story time",
        "body": "Saturdays at ten",
        "geofence_ids": [str(place)],
        "triggers": ["checkin"],
        **extra,
    }


def feature(**props: Any) -> dict[str, Any]:
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [-1.25, 51.75]},
        "properties": {"name": "Depot", "category": "depot", "radius_m": 50, **props},
    }


# --------------------------------------------------------------------------- 3: NUL


async def test_nul_in_the_login_form_is_422(client: httpx.AsyncClient) -> None:
    for data in (
        {"username": "admin\x00@example.org", "password": "x" * 12},
        {"username": "admin@example.org", "password": "pass\x00word"},
    ):
        body = assert_422(await client.post("/v1/auth/token", data=data))
        assert body["type"].endswith("/validation")


async def test_nul_in_json_bodies_is_422_and_stores_nothing(
    client: httpx.AsyncClient, db: AsyncSession, world: World
) -> None:
    now = datetime.now(UTC).isoformat()
    cases: list[tuple[str, str, dict[str, Any], dict[str, str]]] = [
        ("POST", "/v1/devices", {"organisation": "town\x00"}, {}),
        (
            "POST",
            "/v1/pings",
            {"pings": [{"id": "p\x001", "lon": -1.25, "lat": 51.75, "recorded_at": now}]},
            world.resident.headers,
        ),
        ("POST", "/v1/offers", offer_body(world.place, title="Story\x00"), world.editor.headers),
        ("POST", "/v1/offers", offer_body(world.place, body="x\x00y"), world.editor.headers),
        (
            "POST",
            "/v1/tasks",
            {"title": "Fix\x00", "geofence_id": str(world.place)},
            world.editor.headers,
        ),
        (
            "POST",
            "/v1/tasks",
            {"title": "Fix", "description": "a\x00b", "geofence_id": str(world.place)},
            world.editor.headers,
        ),
        (
            "POST",
            "/v1/users",
            {
                "email": "new@example.org",
                "full_name": "New\x00Person",
                "password": "long enough password",
                "role": "editor",
            },
            world.admin.headers,
        ),
        (
            "POST",
            f"/v1/geofences/{world.place}/broadcast",
            {"title": "Closed\x00"},
            world.editor.headers,
        ),
        (
            "POST",
            f"/v1/geofences/{world.place}/broadcast",
            {"title": "Closed", "body": "today\x00"},
            world.editor.headers,
        ),
        ("POST", "/v1/geofences", feature(metadata={"k\x00": 1}), world.editor.headers),
    ]
    before = {t: await rows(db, t) for t in ("devices", "pings", "offers", "tasks", "staff_users")}
    for method, path, body, headers in cases:
        res = await client.request(method, path, json=body, headers=headers)
        assert_422(res)
    assert {t: await rows(db, t) for t in before} == before


async def test_nul_in_query_and_path_parameters_is_422(
    client: httpx.AsyncClient, world: World
) -> None:
    h = world.editor.headers
    assert_422(await client.get("/v1/geofences?tag=%00", headers=h))
    assert_422(await client.get("/v1/geofences", params={"category": "a\x00"}, headers=h))
    assert_422(await client.get("/v1/offers?category=lib%00rary", headers=h))
    assert_422(await client.get("/v1/geofences/%00", headers=h))
    assert_422(await client.get(f"/v1/tasks/{world.place}%00", headers=h))
    assert_422(await client.get("/v1/geofences?tag=%00"))  # before authentication too


async def test_an_undeclared_method_with_a_nul_in_its_body_is_405_not_422(
    client: httpx.AsyncClient, world: World
) -> None:
    """Schemathesis (ST204): TRACE with a JPEG body to the photos route was answered 422 by the
    NUL check, which read the body before routing; a method no route declares is 405."""
    photos = f"/v1/tasks/{world.place}/photos"
    jpeg = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"
    for method in ("TRACE", "PROPFIND"):
        res = await client.request(
            method,
            photos,
            content=jpeg,
            headers={**world.editor.headers, "content-type": "image/jpeg"},
        )
        assert res.status_code == 405, res.text
    res = await client.request("TRACE", "/v1/offers", content=b'{"title": "a\\u0000"}')
    assert res.status_code == 405, res.text
    # the methods that take a body are still checked, before authentication too
    assert_422(await client.patch("/v1/offers/x", content=b'{"title": "a\\u0000"}'))


async def test_escaped_backslash_before_u0000_is_not_a_nul(
    client: httpx.AsyncClient, world: World
) -> None:
    # JSON "a\\u0000" is the six characters a, \, u, 0, 0, 0, 0: no NUL, so no NUL error
    raw = b'{"organisation": "town\\\\u0000"}'
    res = await client.post(
        "/v1/devices", content=raw, headers={"content-type": "application/json"}
    )
    assert res.status_code == 422
    assert res.json()["type"].endswith("/unknown-organisation")
    ok = await client.post(
        "/v1/offers",
        json=offer_body(world.place, body="C:\\u0000 is a path, not a NUL"),
        headers=world.editor.headers,
    )
    assert ok.status_code == 201, ok.text
    assert ok.json()["body"] == "C:\\u0000 is a path, not a NUL"


# --------------------------------------------------------------------------- 4: datetimes


@pytest.mark.parametrize("stamp", OVERFLOWING)
async def test_overflowing_datetimes_in_bodies_are_422(
    client: httpx.AsyncClient, db: AsyncSession, world: World, stamp: str
) -> None:
    fix = {"lon": -1.2577, "lat": 51.752, "accuracy_m": 5}
    before = {t: await rows(db, t) for t in ("checkins", "pings", "offers", "tasks", "geofences")}
    r = world.resident.headers
    e = world.editor.headers
    assert_422(await client.post("/v1/checkins", json={**fix, "recorded_at": stamp}, headers=r))
    ping = {"id": "p1", "lon": -1.2577, "lat": 51.752, "recorded_at": stamp}
    assert_422(await client.post("/v1/pings", json={"pings": [ping]}, headers=r))
    assert_422(
        await client.post("/v1/offers", json=offer_body(world.place, valid_until=stamp), headers=e)
    )
    task = {"title": "Fix", "geofence_id": str(world.place), "due_at": stamp}
    assert_422(await client.post("/v1/tasks", json=task, headers=e))
    assert_422(await client.post("/v1/geofences", json=feature(active_from=stamp), headers=e))
    assert {t: await rows(db, t) for t in before} == before


@pytest.mark.parametrize("stamp", OVERFLOWING)
async def test_overflowing_datetimes_in_filters_and_the_stream_are_422(
    client: httpx.AsyncClient, world: World, stamp: str
) -> None:
    e, a = world.editor.headers, world.admin.headers
    for name in ("since", "until"):
        assert_422(await client.get("/v1/events", params={name: stamp}, headers=e))
        assert_422(
            await client.get(
                f"/v1/geofences/{world.place}/checkins/stats", params={name: stamp}, headers=e
            )
        )
    assert_422(await client.get("/v1/audit", params={"since": stamp}, headers=a))
    stream = await client.get(
        "/v1/events/stream", params={"since": stamp, "follow": "false"}, headers=e
    )
    assert_422(stream)


async def test_a_forged_cursor_with_an_overflowing_date_is_422(
    client: httpx.AsyncClient, world: World
) -> None:
    raw = orjson.dumps({"c": HIGH, "i": str(uuid.uuid4())})
    cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    for path, h in (("/v1/events", world.editor.headers), ("/v1/audit", world.admin.headers)):
        body = assert_422(await client.get(path, params={"cursor": cursor}, headers=h))
        assert body["field"] == "cursor"
    # the SSE stream ignores a bad Last-Event-ID (starts from now) and completes its body
    stream = await client.get(
        "/v1/events/stream",
        params={"follow": "false"},
        headers={**world.editor.headers, "Last-Event-ID": cursor},
    )
    assert stream.status_code == 200


@pytest.mark.parametrize("millis", [10**20, 2**63, 253_402_300_800_000, 32_503_680_000_000])
async def test_an_overflowing_push_expiration_time_is_422(
    client: httpx.AsyncClient, db: AsyncSession, world: World, millis: int
) -> None:
    from tests.notifications.test_api import subscription_json

    body = {**subscription_json(), "expirationTime": millis}
    before = await rows(db, "push_subscriptions")
    res = await client.post("/v1/push/subscriptions", json=body, headers=world.resident.headers)
    assert_422(res)
    assert await rows(db, "push_subscriptions") == before


async def test_ordinary_datetimes_still_work(client: httpx.AsyncClient, world: World) -> None:
    since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    res = await client.get("/v1/events", params={"since": since}, headers=world.editor.headers)
    assert res.status_code == 200


# --------------------------------------------------------------------------- 5: deep JSON


def nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"leaf": True}
    for _ in range(depth - 1):
        node = {"a": node}
    return node


async def test_metadata_nested_900_deep_or_too_large_is_422(
    client: httpx.AsyncClient, db: AsyncSession, world: World
) -> None:
    e = world.editor.headers
    before = await rows(db, "geofences")
    body = assert_422(
        await client.post("/v1/geofences", json=feature(metadata=nested(900)), headers=e)
    )
    assert "metadata" in body["detail"]
    assert_422(await client.post("/v1/geofences", json=feature(metadata=nested(17)), headers=e))
    big = {"blob": "x" * 40_000}
    assert_422(await client.post("/v1/geofences", json=feature(metadata=big), headers=e))
    assert await rows(db, "geofences") == before
    patch = {"properties": {"metadata": nested(900)}}
    assert_422(await client.patch(f"/v1/geofences/{world.place}", json=patch, headers=e))
    deep_geometry = {"type": "Feature", "geometry": nested(900), "properties": {"name": "x"}}
    assert_422(await client.patch(f"/v1/geofences/{world.place}", json=deep_geometry, headers=e))
    collection = {"type": "FeatureCollection", "features": [], "extra": nested(900)}
    assert_422(await client.post("/v1/geofences/import", json=collection, headers=e))
    ok = await client.post("/v1/geofences", json=feature(metadata=nested(16)), headers=e)
    assert ok.status_code == 201, ok.text


# --------------------------------------------------------------------------- 7: URLs

BAD_URLS = [
    "javascript:alert(document.cookie)",
    "JavaScript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    "file:///etc/passwd",
    "ftp://files.example/x",
    "http://council.example/news",  # plain http off loopback
    "https:council.example",  # no authority
    "//council.example/x",  # scheme-relative
    "/relative/path",
    "https://user:pass@council.example/",
    "https://council.example/a b",
    "https://council.example/\tx",
    "java\nscript:alert(1)",
]


@pytest.mark.parametrize("url", BAD_URLS)
async def test_unsafe_urls_are_refused_wherever_a_url_is_stored(
    client: httpx.AsyncClient, db: AsyncSession, world: World, url: str
) -> None:
    e = world.editor.headers
    before = await rows(db, "notifications")
    broadcast = {"title": "Closed today", "url": url}
    body = assert_422(
        await client.post(f"/v1/geofences/{world.place}/broadcast", json=broadcast, headers=e)
    )
    assert "url" in body["detail"]
    assert await rows(db, "notifications") == before
    for field in ("url", "image_url"):
        assert_422(
            await client.post("/v1/offers", json=offer_body(world.place, **{field: url}), headers=e)
        )


async def test_https_urls_and_loopback_http_in_test_are_accepted(
    client: httpx.AsyncClient, db: AsyncSession, world: World
) -> None:
    e = world.editor.headers
    for url in ("https://council.example/news?x=1#y", "http://127.0.0.1:8200/x"):
        res = await client.post(
            f"/v1/geofences/{world.place}/broadcast",
            json={"title": "Closed", "url": url},
            headers=e,
        )
        assert res.status_code == 200, res.text
    created = await client.post(
        "/v1/offers", json=offer_body(world.place, url="https://library.example/x"), headers=e
    )
    assert created.status_code == 201
    db.expire_all()
    count = (await db.execute(select(func.count()).select_from(Offer))).scalar_one()
    assert count >= 1


def test_production_refuses_loopback_http(settings: Settings) -> None:
    from app.core import types

    try:
        types.install(settings.model_copy(update={"environment": Environment.production}))
        with pytest.raises(ValueError, match="https"):
            types.check_url("http://127.0.0.1:8200/x")
        assert types.check_url("https://council.example/") == "https://council.example/"
    finally:
        types.install(settings)


# --------------------------------------------------------------------------- 11: booleans


@pytest.mark.parametrize("value", [0, 1, "true", "false", "yes", None])
async def test_only_json_booleans_are_booleans(
    client: httpx.AsyncClient, world: World, value: Any
) -> None:
    r, e = world.resident.headers, world.editor.headers
    assert_422(await client.put("/v1/me/background-location", json={"enabled": value}, headers=r))
    if value is not None:  # null means "unchanged" for optional fields
        prefs = {"background_location": value}
        assert_422(await client.put("/v1/me/preferences", json=prefs, headers=r))
    broadcast = {"title": "Closed", "safety_critical": value}
    assert_422(
        await client.post(f"/v1/geofences/{world.place}/broadcast", json=broadcast, headers=e)
    )
    offer = offer_body(world.place, outside_opening_hours_ok=value)
    assert_422(await client.post("/v1/offers", json=offer, headers=e))
    task = {"title": "Fix", "geofence_id": str(world.place), "requires_visit": value}
    assert_422(await client.post("/v1/tasks", json=task, headers=e))


async def test_real_booleans_are_accepted(client: httpx.AsyncClient, world: World) -> None:
    res = await client.put(
        "/v1/me/background-location", json={"enabled": False}, headers=world.resident.headers
    )
    assert res.status_code == 200
    assert res.json() == {"enabled": False}
