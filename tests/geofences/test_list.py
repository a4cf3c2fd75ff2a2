"""Listing: filters, cursor pagination and the GeoJSON FeatureCollection form."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Role
from app.core.config import Settings
from tests.factories import Staff, create_organisation, create_staff
from tests.geofences.helpers import SQUARE, circle, feature, polygon


async def _setup(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> tuple[Staff, dict[str, str]]:
    org = await create_organisation(db)
    editor = await create_staff(db, settings, org, Role.editor)
    far = [[round(x + 1.0, 6), y] for x, y in SQUARE]  # ≈ 66 km east
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    bodies = {
        "library": feature(tags=["books", "wifi"]),
        "park": circle(-2.005, 53.743, 150, name="Calder Park", category="park", tags=["dogs"]),
        "depot": feature(polygon([far]), name="Far Depot", category="depot", active_until=past,
                         active_from="2020-01-01T00:00:00Z"),
    }  # fmt: skip
    ids = {}
    for key, body in bodies.items():
        resp = await client.post("/v1/geofences", json=body, headers=editor.headers)
        assert resp.status_code == 201, resp.text
        ids[key] = resp.json()["id"]
    return editor, ids


def _s(*ids: str) -> list[str]:
    return sorted(ids)


async def _ids(client: httpx.AsyncClient, editor: Staff, **params: str) -> list[str]:
    resp = await client.get("/v1/geofences", params=params, headers=editor.headers)
    assert resp.status_code == 200, resp.text
    # Rows made in one test transaction share created_at, so the order is by id: compare sets.
    return sorted(item["id"] for item in resp.json()["items"])


async def test_filters_by_bbox_near_category_tag_and_active(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    editor, ids = await _setup(client, db, settings)
    assert await _ids(client, editor) == _s(*ids.values())
    assert await _ids(client, editor, bbox="-2.02,53.73,-2.0,53.75") == _s(
        ids["library"], ids["park"]
    )
    assert await _ids(client, editor, bbox="-1.1,53.7,-0.9,53.8") == [ids["depot"]]
    # A point ≈ 166 m east of the library's edge and ≈ 67 m west of the park's centre.
    assert await _ids(client, editor, near="-2.0075,53.743", within_m="60") == [ids["park"]]
    assert await _ids(client, editor, near="-2.0075,53.743", within_m="200") == _s(
        ids["library"], ids["park"]
    )
    assert await _ids(client, editor, category="park") == [ids["park"]]
    assert await _ids(client, editor, tag="wifi") == [ids["library"]]
    assert await _ids(client, editor, active="true") == _s(ids["library"], ids["park"])
    assert await _ids(client, editor, active="false") == [ids["depot"]]


async def test_cursor_pagination_visits_every_place_once(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    editor, ids = await _setup(client, db, settings)
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/v1/geofences", params=params, headers=editor.headers)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == _s(*ids.values())


async def test_geojson_accept_header_returns_a_feature_collection(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    editor, ids = await _setup(client, db, settings)
    headers = {**editor.headers, "Accept": "application/geo+json"}
    resp = await client.get("/v1/geofences", params={"limit": "2"}, headers=headers)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/geo+json"
    body = resp.json()
    assert body["type"] == "FeatureCollection"
    assert len(body["features"]) == 2
    assert {f["id"] for f in body["features"]} <= set(ids.values())
    assert all(f["type"] == "Feature" and "geometry" in f for f in body["features"])
    assert 'rel="next"' in resp.headers["link"]
    one = await client.get(f"/v1/geofences/{ids['park']}", headers=headers)
    assert one.headers["content-type"] == "application/geo+json"
    assert one.json()["geometry"]["type"] == "Point"


async def test_bad_list_parameters_are_422(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await create_organisation(db)
    editor = await create_staff(db, settings, org, Role.field_worker)
    for params in (
        {"bbox": "1,2,3"},
        {"bbox": "10,0,0,10"},
        {"bbox": "0,0,200,10"},
        {"near": "-2,53"},
        {"near": "abc,def", "within_m": "10"},
        {"near": "nan,53", "within_m": "10"},
        {"cursor": "not-a-cursor"},
    ):
        resp = await client.get("/v1/geofences", params=params, headers=editor.headers)
        assert resp.status_code == 422, (params, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")


async def test_bad_resolve_parameters_are_422(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await create_organisation(db)
    worker = await create_staff(db, settings, org, Role.field_worker)
    for params, reason in (
        ({"lon": "200", "lat": "53"}, "longitude-out-of-range"),
        ({"lon": "-2", "lat": "-91"}, "latitude-out-of-range"),
        ({"lon": "nan", "lat": "53"}, "coordinate-not-finite"),
        ({"lon": "inf", "lat": "53"}, "coordinate-not-finite"),
        ({"lon": "0", "lat": "0"}, "null-island"),
    ):
        resp = await client.get("/v1/geofences/resolve", params=params, headers=worker.headers)
        assert resp.status_code == 422, resp.text
        assert resp.json()["reason"] == reason
    resp = await client.get(
        "/v1/geofences/resolve",
        params={"lon": "-2", "lat": "53", "accuracy_m": "-1"},
        headers=worker.headers,
    )
    assert resp.status_code == 422


async def test_an_oversized_within_m_is_clamped_to_50_km_not_rejected(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    editor, ids = await _setup(client, db, settings)
    # The far depot is ≈ 66 km east: beyond the 50 km cap, so a huge radius does not reach it.
    assert await _ids(client, editor, near="-2.0075,53.743", within_m="1e9") == _s(
        ids["library"], ids["park"]
    )
