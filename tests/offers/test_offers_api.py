from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.offers.helpers import Town

PROBLEM = "application/problem+json"


def offer_body(town: Town, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "Author talk tonight",
        "body": "Meet the author of 'Hereabouts' at 18:00 in the reading room.",
        "url": "https://library.example/events/42",
        "geofence_ids": [str(town.library)],
        "triggers": ["checkin", "enter"],
        "status": "active",
    }
    body.update(overrides)
    return body


async def create(client: httpx.AsyncClient, town: Town, **overrides: Any) -> dict[str, Any]:
    resp = await client.post(
        "/v1/offers", json=offer_body(town, **overrides), headers=town.editor.headers
    )
    assert resp.status_code == 201, resp.text
    data: dict[str, Any] = resp.json()
    return data


async def count_offers(client: httpx.AsyncClient, town: Town) -> int:
    resp = await client.get("/v1/offers", headers=town.editor.headers)
    assert resp.status_code == 200, resp.text
    return len(resp.json()["items"])


# --- who may create, read, change ---------------------------------------------------------


async def test_editor_creates_offer_and_reads_it_back(
    client: httpx.AsyncClient, town: Town
) -> None:
    created = await create(
        client,
        town,
        time_window={"start": "17:00", "end": "20:00", "time_zone": "Europe/London"},
        max_total=100,
    )
    assert created["geofence_ids"] == [str(town.library)]
    assert created["triggers"] == ["checkin", "enter"]
    assert created["time_window"] == {
        "start": "17:00:00",
        "end": "20:00:00",
        "time_zone": "Europe/London",
    }
    assert created["created_by"] == str(town.editor.id)
    assert created["audience"] == "residents"
    assert created["quiet_hours_policy"] == "drop"
    got = await client.get(f"/v1/offers/{created['id']}", headers=town.editor.headers)
    assert got.status_code == 200
    assert got.json() == created


async def test_admin_may_manage_offers(client: httpx.AsyncClient, town: Town) -> None:
    resp = await client.post("/v1/offers", json=offer_body(town), headers=town.admin.headers)
    assert resp.status_code == 201
    oid = resp.json()["id"]
    patch = await client.patch(
        f"/v1/offers/{oid}", json={"status": "paused"}, headers=town.admin.headers
    )
    assert patch.status_code == 200
    assert patch.json()["status"] == "paused"


@pytest.mark.parametrize("who", ["worker", "resident"])
async def test_field_workers_and_residents_cannot_create_or_change_offers(
    client: httpx.AsyncClient, town: Town, who: str
) -> None:
    caller = getattr(town, who)
    resp = await client.post("/v1/offers", json=offer_body(town), headers=caller.headers)
    assert resp.status_code == 403
    assert resp.headers["content-type"] == PROBLEM
    oid = (await create(client, town))["id"]
    for method, path, body in (
        ("PATCH", f"/v1/offers/{oid}", {"title": "Hacked"}),
        ("DELETE", f"/v1/offers/{oid}", None),
        ("GET", f"/v1/offers/{oid}/stats", None),
    ):
        r = await client.request(method, path, json=body, headers=caller.headers)
        assert r.status_code == 403, (method, path, r.text)
    got = await client.get(f"/v1/offers/{oid}", headers=town.editor.headers)
    assert got.json()["title"] == "Author talk tonight"


async def test_anonymous_callers_are_401(client: httpx.AsyncClient, town: Town) -> None:
    assert (await client.get("/v1/offers")).status_code == 401
    assert (await client.post("/v1/offers", json=offer_body(town))).status_code == 401


async def test_another_organisations_offer_is_404_for_every_endpoint(
    client: httpx.AsyncClient, town: Town
) -> None:
    oid = (await create(client, town))["id"]
    h = town.other_editor.headers
    assert (await client.get(f"/v1/offers/{oid}", headers=h)).status_code == 404
    assert (
        await client.patch(f"/v1/offers/{oid}", json={"title": "x"}, headers=h)
    ).status_code == 404
    assert (await client.delete(f"/v1/offers/{oid}", headers=h)).status_code == 404
    assert (await client.get(f"/v1/offers/{oid}/stats", headers=h)).status_code == 404
    redeem = await client.post(f"/v1/offers/{oid}/redeem", headers=town.other_resident.headers)
    assert redeem.status_code == 404
    listed = await client.get("/v1/offers", headers=h)
    assert listed.json()["items"] == []
    got = await client.get(f"/v1/offers/{oid}", headers=town.editor.headers)
    assert got.json()["title"] == "Author talk tonight"


async def test_offer_for_another_organisations_place_is_rejected(
    client: httpx.AsyncClient, town: Town
) -> None:
    resp = await client.post(
        "/v1/offers",
        json=offer_body(town, geofence_ids=[str(town.other_library)]),
        headers=town.editor.headers,
    )
    assert resp.status_code == 422
    assert resp.json()["type"].endswith("/unknown-geofence")
    assert resp.json()["unknown"] == [str(town.other_library)]
    assert await count_offers(client, town) == 0


# --- bad input ----------------------------------------------------------------------------

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)

BAD_INPUTS: list[tuple[str, dict[str, Any], str]] = [
    ("unknown field", {"colour": "red"}, "colour"),
    ("http url", {"url": "http://library.example/x"}, "url"),
    ("javascript url", {"url": "javascript:alert(1)"}, "url"),
    ("relative image url", {"image_url": "/img/a.png"}, "image_url"),
    ("url with credentials", {"url": "https://u:p@library.example/"}, "url"),
    ("empty triggers", {"triggers": []}, "triggers"),
    ("unknown trigger", {"triggers": ["teleport"]}, "triggers.0"),
    (
        "window end before start",
        {"valid_from": NOW.isoformat(), "valid_until": (NOW - timedelta(hours=1)).isoformat()},
        "",
    ),
    ("naive datetime", {"valid_from": "2026-12-01T12:00:00"}, "valid_from"),
    ("no place", {"geofence_ids": [], "category": None}, ""),
    ("title too long", {"title": "x" * 81}, "title"),
    ("body too long for a push", {"body": "x" * 241}, "body"),
    ("empty body", {"body": ""}, "body"),
    ("bad category", {"category": "All Libraries!"}, "category"),
    (
        "unknown time zone",
        {"time_window": {"start": "17:00", "end": "20:00", "time_zone": "Mars/Olympus"}},
        "time_window.time_zone",
    ),
    (
        "empty time window",
        {"time_window": {"start": "17:00", "end": "17:00", "time_zone": "Europe/London"}},
        "time_window",
    ),
    ("negative cooldown", {"cooldown_s": -1}, "cooldown_s"),
    ("zero max_per_person", {"max_per_person": 0}, "max_per_person"),
    ("zero max_total", {"max_total": 0}, "max_total"),
    ("unknown audience", {"audience": "everyone"}, "audience"),
    ("unknown status", {"status": "live"}, "status"),
    ("unknown quiet hours policy", {"quiet_hours_policy": "ignore"}, "quiet_hours_policy"),
    ("geofence id not a uuid", {"geofence_ids": ["library"]}, "geofence_ids.0"),
]


@pytest.mark.parametrize(
    ("overrides", "field"), [(o, f) for _, o, f in BAD_INPUTS], ids=[n for n, _, _ in BAD_INPUTS]
)
async def test_bad_offer_input_is_422_and_stores_nothing(
    client: httpx.AsyncClient, town: Town, overrides: dict[str, Any], field: str
) -> None:
    resp = await client.post(
        "/v1/offers", json=offer_body(town, **overrides), headers=town.editor.headers
    )
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"] == PROBLEM
    problem = resp.json()
    if field:
        assert any(e["field"] == field for e in problem["errors"]), problem
    assert await count_offers(client, town) == 0


async def test_unknown_geofence_is_422(client: httpx.AsyncClient, town: Town) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    resp = await client.post(
        "/v1/offers",
        json=offer_body(town, geofence_ids=[str(town.library), missing]),
        headers=town.editor.headers,
    )
    assert resp.status_code == 422
    assert resp.json()["unknown"] == [missing]
    assert await count_offers(client, town) == 0


async def test_patch_is_validated_against_the_stored_offer(
    client: httpx.AsyncClient, town: Town
) -> None:
    oid = (await create(client, town, valid_from=NOW.isoformat()))["id"]
    h = town.editor.headers
    before = (await client.get(f"/v1/offers/{oid}", headers=h)).json()
    cases: list[dict[str, Any]] = [
        {"valid_until": (NOW - timedelta(days=1)).isoformat()},
        {"geofence_ids": []},
        {"title": None},
        {"triggers": []},
        {"url": "ftp://x.example/"},
        {"bogus": 1},
        {"geofence_ids": [str(town.other_library)]},
    ]
    for body in cases:
        resp = await client.patch(f"/v1/offers/{oid}", json=body, headers=h)
        assert resp.status_code == 422, (body, resp.text)
    after = (await client.get(f"/v1/offers/{oid}", headers=h)).json()
    assert after == before


async def test_patch_changes_places_window_and_clears_optional_fields(
    client: httpx.AsyncClient, town: Town
) -> None:
    oid = (await create(client, town))["id"]
    resp = await client.patch(
        f"/v1/offers/{oid}",
        json={
            "geofence_ids": [str(town.library2)],
            "category": "library",
            "url": None,
            "time_window": {"start": "22:00", "end": "02:00", "time_zone": "Europe/London"},
        },
        headers=town.editor.headers,
    )
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert data["geofence_ids"] == [str(town.library2)]
    assert data["category"] == "library"
    assert data["url"] is None
    assert data["time_window"]["start"] == "22:00:00"
    cleared = await client.patch(
        f"/v1/offers/{oid}", json={"time_window": None}, headers=town.editor.headers
    )
    assert cleared.json()["time_window"] is None


async def test_ended_offer_cannot_be_reactivated(client: httpx.AsyncClient, town: Town) -> None:
    oid = (await create(client, town))["id"]
    h = town.editor.headers
    assert (
        await client.patch(f"/v1/offers/{oid}", json={"status": "ended"}, headers=h)
    ).status_code == 200
    resp = await client.patch(f"/v1/offers/{oid}", json={"status": "active"}, headers=h)
    assert resp.status_code == 409
    assert resp.json()["type"].endswith("/offer-ended")


async def test_delete_hides_the_offer(client: httpx.AsyncClient, town: Town) -> None:
    oid = (await create(client, town))["id"]
    h = town.editor.headers
    assert (await client.delete(f"/v1/offers/{oid}", headers=h)).status_code == 204
    assert (await client.get(f"/v1/offers/{oid}", headers=h)).status_code == 404
    assert (await client.delete(f"/v1/offers/{oid}", headers=h)).status_code == 404
    public = await client.get(
        "/v1/offers", params={"geofence_id": str(town.library)}, headers=town.resident.headers
    )
    assert public.json()["items"] == []


# --- lists --------------------------------------------------------------------------------


async def test_editor_list_filters_by_status_place_and_pages(
    client: httpx.AsyncClient, town: Town
) -> None:
    active = await create(client, town, title="Active")
    draft = await create(client, town, title="Draft", status="draft")
    everywhere = await create(
        client, town, title="All libraries", geofence_ids=[], category="library"
    )
    park = await create(client, town, title="Park", geofence_ids=[str(town.park)])
    h = town.editor.headers

    async def titles(**params: Any) -> list[str]:
        resp = await client.get("/v1/offers", params=params, headers=h)
        assert resp.status_code == 200, resp.text
        return [o["title"] for o in resp.json()["items"]]

    assert await titles(status="draft") == ["Draft"]
    assert await titles(status="active") == ["Active", "All libraries", "Park"]
    assert await titles(geofence_id=str(town.library2)) == ["All libraries"]
    assert await titles(geofence_id=str(town.park)) == ["Park"]
    assert await titles(category="library") == ["All libraries"]
    assert await titles(geofence_id=str(town.other_library)) == []
    first = await client.get("/v1/offers", params={"limit": 2}, headers=h)
    page1 = first.json()
    assert [o["id"] for o in page1["items"]] == [active["id"], draft["id"]]
    second = await client.get(
        "/v1/offers", params={"limit": 2, "cursor": page1["next_cursor"]}, headers=h
    )
    assert [o["id"] for o in second.json()["items"]] == [everywhere["id"], park["id"]]
    assert second.json()["next_cursor"] is None
    bad = await client.get("/v1/offers", params={"status": "live"}, headers=h)
    assert bad.status_code == 422


async def test_residents_see_only_live_public_offers_at_a_place(
    client: httpx.AsyncClient, town: Town
) -> None:
    past = datetime.now(UTC) - timedelta(days=10)
    live = await create(client, town, title="Live", max_total=50)
    await create(client, town, title="Draft", status="draft")
    await create(client, town, title="Paused", status="paused")
    await create(
        client,
        town,
        title="Expired",
        valid_from=past.isoformat(),
        valid_until=(past + timedelta(days=1)).isoformat(),
    )
    await create(
        client, town, title="Future", valid_from=(datetime.now(UTC) + timedelta(days=1)).isoformat()
    )
    await create(client, town, title="Staff only", audience="staff")
    await create(client, town, title="Everyone", audience="all")
    resp = await client.get(
        "/v1/offers", params={"geofence_id": str(town.library)}, headers=town.resident.headers
    )
    assert resp.status_code == 200, resp.text
    items = resp.json()["items"]
    assert sorted(o["title"] for o in items) == ["Everyone", "Live"]
    one = next(o for o in items if o["id"] == live["id"])
    for private in ("status", "max_total", "created_by", "audience", "triggers", "cooldown_s"):
        assert private not in one
    assert one["body"] == live["body"]
    detail = await client.get(f"/v1/offers/{live['id']}", headers=town.resident.headers)
    assert detail.status_code == 200
    assert "status" not in detail.json()


async def test_resident_cannot_open_a_draft_offer(client: httpx.AsyncClient, town: Town) -> None:
    oid = (await create(client, town, status="draft"))["id"]
    resp = await client.get(f"/v1/offers/{oid}", headers=town.resident.headers)
    assert resp.status_code == 404


async def test_all_libraries_offer_shows_at_every_library_and_not_at_the_park(
    client: httpx.AsyncClient, town: Town
) -> None:
    await create(client, town, title="Libraries", geofence_ids=[], category="library")
    h = town.resident.headers
    for place in (town.library, town.library2):
        resp = await client.get("/v1/offers", params={"geofence_id": str(place)}, headers=h)
        assert [o["title"] for o in resp.json()["items"]] == ["Libraries"]
    park = await client.get("/v1/offers", params={"geofence_id": str(town.park)}, headers=h)
    assert park.json()["items"] == []


async def test_residents_near_a_point_get_nearest_offers_first_with_distance(
    client: httpx.AsyncClient, town: Town
) -> None:
    await create(client, town, title="Library", geofence_ids=[str(town.library)])
    await create(client, town, title="Park", geofence_ids=[str(town.park)])
    await create(client, town, title="Pool", geofence_ids=[str(town.leisure)])
    resp = await client.get(
        "/v1/offers",
        params={"near": "-1.2560,51.7530", "within_m": 1000},
        headers=town.resident.headers,
    )
    assert resp.status_code == 200, resp.text
    items = resp.json()["items"]
    assert [o["title"] for o in items] == ["Park", "Library"]
    assert items[0]["distance_m"] == 0.0
    assert 0 < items[1]["distance_m"] < 200
    wide = await client.get(
        "/v1/offers",
        params={"near": "-1.2560,51.7530", "within_m": 5000},
        headers=town.resident.headers,
    )
    assert [o["title"] for o in wide.json()["items"]] == ["Park", "Library", "Pool"]


@pytest.mark.parametrize("near", ["200,51", "-1.25", "abc,def", "nan,51", "-1.2,inf", "51.75,-190"])
async def test_bad_near_is_422(client: httpx.AsyncClient, town: Town, near: str) -> None:
    resp = await client.get("/v1/offers", params={"near": near}, headers=town.resident.headers)
    assert resp.status_code == 422
    assert resp.headers["content-type"] == PROBLEM


async def test_resident_must_say_where(client: httpx.AsyncClient, town: Town) -> None:
    resp = await client.get("/v1/offers", headers=town.resident.headers)
    assert resp.status_code == 422


async def test_field_worker_sees_staff_offers_at_a_place_but_not_the_admin_list(
    client: httpx.AsyncClient, town: Town
) -> None:
    await create(client, town, title="Staff canteen", audience="staff")
    await create(client, town, title="Residents only")
    h = town.worker.headers
    assert (await client.get("/v1/offers", headers=h)).status_code == 403
    resp = await client.get("/v1/offers", params={"geofence_id": str(town.library)}, headers=h)
    assert [o["title"] for o in resp.json()["items"]] == ["Staff canteen"]


# --- redemption ---------------------------------------------------------------------------


async def test_resident_redeems_once_then_409(client: httpx.AsyncClient, town: Town) -> None:
    oid = (await create(client, town))["id"]
    h = town.resident.headers
    first = await client.post(f"/v1/offers/{oid}/redeem", headers=h)
    assert first.status_code == 201, first.text
    assert first.json()["redemptions_by_you"] == 1
    assert first.json()["remaining_for_you"] == 0
    again = await client.post(f"/v1/offers/{oid}/redeem", headers=h)
    assert again.status_code == 409
    assert again.json()["type"].endswith("/redemption-limit")
    other = await client.post(f"/v1/offers/{oid}/redeem", headers=town.resident2.headers)
    assert other.status_code == 201
    stats = await client.get(f"/v1/offers/{oid}/stats", headers=town.editor.headers)
    assert stats.json() == {
        "offer_id": oid,
        "redeemed": 2,
        "redeemed_people": 2,
        "remaining_total": None,
        "sent": 0,  # from the notifications table (tests/rules: sent → opened → redeemed)
        "opened": 0,
    }


async def test_max_per_person_allows_repeat_redemptions(
    client: httpx.AsyncClient, town: Town
) -> None:
    oid = (await create(client, town, max_per_person=2))["id"]
    h = town.resident.headers
    body = {"geofence_id": str(town.library)}
    assert (await client.post(f"/v1/offers/{oid}/redeem", json=body, headers=h)).status_code == 201
    second = await client.post(f"/v1/offers/{oid}/redeem", json=body, headers=h)
    assert second.json()["redemptions_by_you"] == 2
    assert (await client.post(f"/v1/offers/{oid}/redeem", headers=h)).status_code == 409
    stats = (await client.get(f"/v1/offers/{oid}/stats", headers=town.editor.headers)).json()
    assert (stats["redeemed"], stats["redeemed_people"]) == (2, 1)


async def test_max_total_caps_redemptions_across_people(
    client: httpx.AsyncClient, town: Town
) -> None:
    oid = (await create(client, town, max_total=1))["id"]
    assert (
        await client.post(f"/v1/offers/{oid}/redeem", headers=town.resident.headers)
    ).status_code == 201
    resp = await client.post(f"/v1/offers/{oid}/redeem", headers=town.resident2.headers)
    assert resp.status_code == 409
    assert resp.json()["type"].endswith("/offer-exhausted")
    stats = (await client.get(f"/v1/offers/{oid}/stats", headers=town.editor.headers)).json()
    assert stats["remaining_total"] == 0
    # an exhausted offer is no longer listed for residents
    listed = await client.get(
        "/v1/offers", params={"geofence_id": str(town.library)}, headers=town.resident2.headers
    )
    assert listed.json()["items"] == []


async def test_redeeming_unavailable_offers(client: httpx.AsyncClient, town: Town) -> None:
    h = town.resident.headers
    draft = (await create(client, town, status="draft"))["id"]
    assert (await client.post(f"/v1/offers/{draft}/redeem", headers=h)).status_code == 404
    staff_only = (await create(client, town, audience="staff"))["id"]
    assert (await client.post(f"/v1/offers/{staff_only}/redeem", headers=h)).status_code == 404
    paused = (await create(client, town, status="paused"))["id"]
    resp = await client.post(f"/v1/offers/{paused}/redeem", headers=h)
    assert resp.status_code == 409
    assert resp.json()["type"].endswith("/offer-not-available")
    past = datetime.now(UTC) - timedelta(days=2)
    expired = (
        await create(
            client,
            town,
            valid_from=past.isoformat(),
            valid_until=(past + timedelta(days=1)).isoformat(),
        )
    )["id"]
    assert (await client.post(f"/v1/offers/{expired}/redeem", headers=h)).status_code == 409
    live = (await create(client, town))["id"]
    staff = await client.post(f"/v1/offers/{live}/redeem", headers=town.editor.headers)
    assert staff.status_code == 403
    bad_place = await client.post(
        f"/v1/offers/{live}/redeem",
        json={"geofence_id": str(town.other_library)},
        headers=h,
    )
    assert bad_place.status_code == 422
    unknown_field = await client.post(f"/v1/offers/{live}/redeem", json={"x": 1}, headers=h)
    assert unknown_field.status_code == 422
    stats = (await client.get(f"/v1/offers/{live}/stats", headers=town.editor.headers)).json()
    assert stats["redeemed"] == 0
