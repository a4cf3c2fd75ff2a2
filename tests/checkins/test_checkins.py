from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Organisation, Role
from app.checkins.models import CheckIn
from app.core.config import Settings
from app.core.geo import haversine_m
from app.presence.models import PresenceEvent
from tests import factories
from tests.places import add_square, offset

PROBLEM = "application/problem+json"


async def _count(db: AsyncSession, model: type) -> int:
    return int((await db.execute(select(func.count()).select_from(model))).scalar_one())


def body(dx: float, dy: float, accuracy: float = 10.0, **extra: object) -> dict[str, object]:
    lon, lat = offset(dx, dy)
    return {"lon": lon, "lat": lat, "accuracy_m": accuracy, **extra}


@pytest.fixture
async def town(db: AsyncSession) -> dict[str, object]:
    org = await factories.create_organisation(db)
    resident = await factories.create_resident(db, org)
    library = await add_square(db, org.id, name="Jubilee Library", half_m=20)
    return {"org": org, "resident": resident, "library": library, "library_id": library.id}


async def test_checkin_inside_a_place_resolves_it_and_logs_a_checkin_event(
    client: httpx.AsyncClient, db: AsyncSession, town: dict[str, object]
) -> None:
    resident = town["resident"]
    assert isinstance(resident, factories.Resident)
    resp = await client.post("/v1/checkins", json=body(3, -4), headers=resident.headers)
    assert resp.status_code == 201, resp.text
    data = resp.json()
    assert data["place"]["id"] == str(town["library_id"])
    assert data["place"]["inside"] is True
    assert data["place"]["distance_m"] == 0
    assert data["repeated"] is False
    assert data["tasks"] == []
    assert data["notifications_queued"] == []
    events = (await db.execute(select(PresenceEvent))).scalars().all()
    assert [(e.type, e.source, e.checkin_id) for e in events] == [
        ("checkin", "checkin", uuid.UUID(data["checkin"]["id"]))
    ]


async def test_point_exactly_on_the_boundary_counts_as_inside(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    org = await factories.create_organisation(db)
    resident = await factories.create_resident(db, org)
    # an axis-aligned square in degrees, so the edge point is exactly representable
    from geoalchemy2.elements import WKTElement

    from app.geofences.models import Geofence

    db.add(
        Geofence(
            organisation_id=org.id,
            name="Square",
            category="park",
            shape_kind="polygon",
            geom=WKTElement(
                "POLYGON((-0.14 50.82, -0.13 50.82, -0.13 50.83, -0.14 50.83, -0.14 50.82))",
                srid=4326,
            ),
            trigger_distance_m=0,
            dwell_s=300,
            tags=[],
            extra_metadata={},
        )
    )
    await db.flush()
    resp = await client.post(
        "/v1/checkins",
        json={"lon": -0.13, "lat": 50.825, "accuracy_m": 5},
        headers=resident.headers,
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["place"]["inside"] is True


async def test_near_but_outside_within_trigger_plus_accuracy_is_accepted_beyond_is_not(
    client: httpx.AsyncClient, db: AsyncSession, town: dict[str, object]
) -> None:
    resident = town["resident"]
    assert isinstance(resident, factories.Resident)
    # the square's edge is 20 m east of centre; trigger 50 m + accuracy 10 m = reach 60 m
    near = await client.post("/v1/checkins", json=body(20 + 55, 0), headers=resident.headers)
    assert near.status_code == 201, near.text
    place = near.json()["place"]
    assert place["inside"] is False
    assert place["distance_m"] == pytest.approx(55, abs=1.0)

    other = await factories.create_resident(db, town["org"])  # type: ignore[arg-type]
    before = await _count(db, CheckIn)
    far = await client.post("/v1/checkins", json=body(20 + 70, 0), headers=other.headers)
    assert far.status_code == 422
    assert far.headers["content-type"] == PROBLEM
    assert far.json()["type"].endswith("/no-place-here")
    assert far.json()["nearest"]["distance_m"] == pytest.approx(70, abs=1.0)
    named = await client.post(
        "/v1/checkins",
        json=body(20 + 70, 0, geofence_id=str(town["library_id"])),
        headers=other.headers,
    )
    assert named.status_code == 422
    assert named.json()["type"].endswith("/too-far")
    assert named.json()["distance_m"] == pytest.approx(70, abs=1.0)
    assert named.json()["reach_m"] == pytest.approx(60)
    assert await _count(db, CheckIn) == before


async def test_distance_matches_an_independent_haversine_calculation(
    client: httpx.AsyncClient, db: AsyncSession, town: dict[str, object]
) -> None:
    resident = town["resident"]
    assert isinstance(resident, factories.Resident)
    lon, lat = offset(20 + 40, 0)
    edge_lon, _ = offset(20, 0)
    expected = haversine_m(edge_lon, lat, lon, lat)
    resp = await client.post(
        "/v1/checkins", json={"lon": lon, "lat": lat, "accuracy_m": 10}, headers=resident.headers
    )
    assert resp.status_code == 201
    # geodesic (PostGIS, ellipsoid) vs spherical haversine: within 0.5 %
    assert resp.json()["place"]["distance_m"] == pytest.approx(expected, rel=0.005)


async def test_point_in_a_hole_is_not_inside_the_place(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    org = await factories.create_organisation(db)
    resident = await factories.create_resident(db, org)
    await add_square(
        db, org.id, name="Courtyard building", half_m=200, hole_half_m=150, trigger_distance_m=20
    )
    resp = await client.post("/v1/checkins", json=body(0, 0), headers=resident.headers)
    assert resp.status_code == 422  # 150 m from the inner ring, reach is 30 m
    assert resp.json()["type"].endswith("/no-place-here")
    ring = await client.post("/v1/checkins", json=body(175, 0), headers=resident.headers)
    assert ring.status_code == 201
    assert ring.json()["place"]["inside"] is True


async def test_nested_places_pick_the_smaller_and_similar_overlaps_are_ambiguous(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    org = await factories.create_organisation(db)
    resident = await factories.create_resident(db, org)
    await add_square(db, org.id, name="Park", half_m=300, category="park")
    cafe = await add_square(db, org.id, name="Park library", half_m=15)
    cafe_id = cafe.id
    nested = await client.post("/v1/checkins", json=body(0, 0), headers=resident.headers)
    assert nested.status_code == 201
    assert nested.json()["place"]["id"] == str(cafe_id)

    org2 = await factories.create_organisation(db)
    r2 = await factories.create_resident(db, org2)
    a = await add_square(db, org2.id, name="Town hall", half_m=30, cx_m=5)
    b = await add_square(db, org2.id, name="Register office", half_m=30, cx_m=-5)
    a_id = a.id
    ids = {str(a_id), str(b.id)}
    before = await _count(db, CheckIn)
    amb = await client.post("/v1/checkins", json=body(0, 0), headers=r2.headers)
    assert amb.status_code == 409
    assert amb.headers["content-type"] == PROBLEM
    assert {c["id"] for c in amb.json()["candidates"]} == ids
    assert await _count(db, CheckIn) == before
    chosen = await client.post(
        "/v1/checkins", json=body(0, 0, geofence_id=str(a_id)), headers=r2.headers
    )
    assert chosen.status_code == 201


async def test_wrong_or_foreign_geofence_id_is_404(
    client: httpx.AsyncClient, db: AsyncSession, town: dict[str, object]
) -> None:
    resident = town["resident"]
    assert isinstance(resident, factories.Resident)
    other_org = await factories.create_organisation(db)
    foreign = await add_square(db, other_org.id, name="Their library")
    for gid in (foreign.id, uuid.uuid4()):
        resp = await client.post(
            "/v1/checkins", json=body(0, 0, geofence_id=str(gid)), headers=resident.headers
        )
        assert resp.status_code == 404
        assert resp.headers["content-type"] == PROBLEM


async def test_closed_place_records_the_checkin_and_says_closed(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    org = await factories.create_organisation(db)
    resident = await factories.create_resident(db, org)
    closed_all_week = {"time_zone": "Europe/London", "weekly": {}, "closed_dates": []}
    await add_square(db, org.id, name="Closed library", opening_hours=closed_all_week)
    resp = await client.post("/v1/checkins", json=body(0, 0), headers=resident.headers)
    assert resp.status_code == 201, resp.text
    assert resp.json()["place"]["open"] is False
    assert resp.json()["checkin"]["place_open"] is False


async def test_poor_accuracy_is_refused_with_the_figures_and_nothing_stored(
    client: httpx.AsyncClient, db: AsyncSession, town: dict[str, object], settings: Settings
) -> None:
    resident = town["resident"]
    assert isinstance(resident, factories.Resident)
    resp = await client.post(
        "/v1/checkins", json=body(0, 0, accuracy=150), headers=resident.headers
    )
    assert resp.status_code == 422
    assert resp.json()["type"].endswith("/accuracy-too-poor")
    assert resp.json()["max_accuracy_m"] == settings.checkin_max_accuracy_m
    assert await _count(db, CheckIn) == 0


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"lon": 200, "lat": 50.82, "accuracy_m": 5}', "lon"),
        ('{"lon": -0.13, "lat": -91, "accuracy_m": 5}', "lat"),
        ('{"lon": NaN, "lat": 50.82, "accuracy_m": 5}', None),
        ('{"lon": 1e400, "lat": 50.82, "accuracy_m": 5}', "lon"),
        ('{"lon": -0.13, "lat": 50.82, "accuracy_m": Infinity}', None),
        ('{"lon": 0, "lat": 0, "accuracy_m": 5}', None),
        ('{"lon": -0.13, "lat": 50.82}', "accuracy_m"),
        ('{"lon": -0.13, "lat": 50.82, "accuracy_m": -3}', "accuracy_m"),
        ('{"lon": -0.13, "lat": 50.82, "accuracy_m": 0}', "accuracy_m"),
        ('{"lon": -0.13, "lat": 50.82, "accuracy_m": 5, "name": "x"}', "name"),
        (
            '{"lon": -0.13, "lat": 50.82, "accuracy_m": 5, "recorded_at": "2026-01-01T10:00:00"}',
            "recorded_at",
        ),
        ('{"lon": "west", "lat": 50.82, "accuracy_m": 5}', "lon"),
    ],
)
async def test_bad_input_is_422_problem_and_stores_nothing(
    client: httpx.AsyncClient,
    db: AsyncSession,
    town: dict[str, object],
    raw: str,
    field: str | None,
) -> None:
    resident = town["resident"]
    assert isinstance(resident, factories.Resident)
    resp = await client.post(
        "/v1/checkins",
        content=raw.encode(),
        headers={**resident.headers, "content-type": "application/json"},
    )
    assert resp.status_code in (400, 422), resp.text
    assert resp.headers["content-type"] == PROBLEM
    if field is not None:
        assert field in {e["field"] for e in resp.json()["errors"]}
    assert await _count(db, CheckIn) == 0
    assert await _count(db, PresenceEvent) == 0


async def test_fix_times_in_the_future_or_too_old_are_refused(
    client: httpx.AsyncClient, db: AsyncSession, town: dict[str, object]
) -> None:
    resident = town["resident"]
    assert isinstance(resident, factories.Resident)
    now = datetime.now(UTC)
    future = await client.post(
        "/v1/checkins",
        json=body(0, 0, recorded_at=(now + timedelta(minutes=10)).isoformat()),
        headers=resident.headers,
    )
    assert future.status_code == 422
    assert future.json()["type"].endswith("/bad-fix-time")
    old = await client.post(
        "/v1/checkins",
        json=body(0, 0, recorded_at=(now - timedelta(days=3)).isoformat()),
        headers=resident.headers,
    )
    assert old.status_code == 422
    slight = await client.post(
        "/v1/checkins",
        json=body(0, 0, recorded_at=(now + timedelta(minutes=2)).isoformat()),
        headers=resident.headers,
    )
    assert slight.status_code == 201
    assert await _count(db, CheckIn) == 1


async def test_implausible_jump_is_recorded_flagged_and_visible_to_staff(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    resident = await factories.create_resident(db, org)
    editor = await factories.create_staff(db, settings, org, Role.editor)
    await add_square(db, org.id, name="Brighton library")
    await add_square(db, org.id, name="Worthing library", cx_m=-18_000)  # 18 km west
    now = datetime.now(UTC)
    first = await client.post(
        "/v1/checkins",
        json=body(0, 0, recorded_at=(now - timedelta(minutes=2)).isoformat()),
        headers=resident.headers,
    )
    assert first.status_code == 201
    jump = await client.post(
        "/v1/checkins",
        json=body(-18_000, 0, recorded_at=now.isoformat()),
        headers=resident.headers,
    )
    assert jump.status_code == 201, jump.text
    data = jump.json()
    assert data["checkin"]["implausible_jump"] is True
    assert data["offers"] == []
    own = await client.get(f"/v1/checkins/{data['checkin']['id']}", headers=resident.headers)
    assert "explanation" not in own.json()
    seen = await client.get(f"/v1/checkins/{data['checkin']['id']}", headers=editor.headers)
    figures = seen.json()["explanation"]["implausible_jump"]
    assert figures["implied_speed_mps"] > 70
    assert figures["distance_m"] == pytest.approx(18_000, rel=0.01)


async def test_repeated_checkin_within_cooldown_returns_the_earlier_one(
    client: httpx.AsyncClient, db: AsyncSession, town: dict[str, object]
) -> None:
    resident = town["resident"]
    assert isinstance(resident, factories.Resident)
    first = await client.post("/v1/checkins", json=body(0, 0), headers=resident.headers)
    again = await client.post("/v1/checkins", json=body(2, 1), headers=resident.headers)
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["repeated"] is True
    assert again.json()["checkin"]["id"] == first.json()["checkin"]["id"]
    assert await _count(db, CheckIn) == 1
    assert await _count(db, PresenceEvent) == 1


async def test_history_and_reads_are_private_to_the_owner(
    client: httpx.AsyncClient, db: AsyncSession, town: dict[str, object], settings: Settings
) -> None:
    resident = town["resident"]
    assert isinstance(resident, factories.Resident)
    other = await factories.create_resident(db, town["org"])  # type: ignore[arg-type]
    created = await client.post("/v1/checkins", json=body(0, 0), headers=resident.headers)
    checkin_id = created.json()["checkin"]["id"]
    mine = await client.get("/v1/me/checkins", headers=resident.headers)
    assert [c["id"] for c in mine.json()["items"]] == [checkin_id]
    theirs = await client.get("/v1/me/checkins", headers=other.headers)
    assert theirs.json()["items"] == []
    assert (
        await client.get(f"/v1/checkins/{checkin_id}", headers=other.headers)
    ).status_code == 404
    foreign_org = await factories.create_organisation(db)
    foreign_admin = await factories.create_staff(db, settings, foreign_org, Role.admin)
    assert (
        await client.get(f"/v1/checkins/{checkin_id}", headers=foreign_admin.headers)
    ).status_code == 404


async def test_stats_suppress_resident_cells_under_ten_people(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    editor = await factories.create_staff(db, settings, org, Role.editor)
    library = await add_square(db, org.id, name="Stats library")
    library_id = library.id
    small = await add_square(db, org.id, name="Quiet library", cx_m=5_000)
    small_id = small.id
    at = datetime.now(UTC).replace(minute=5, second=0, microsecond=0) - timedelta(hours=1)
    for i in range(12):
        r = await factories.create_resident(db, org)
        resp = await client.post(
            "/v1/checkins",
            json=body(0, 0, recorded_at=(at + timedelta(minutes=i)).isoformat()),
            headers=r.headers,
        )
        assert resp.status_code == 201
    for i in range(3):
        r = await factories.create_resident(db, org)
        await client.post(
            "/v1/checkins",
            json=body(5_000, 0, recorded_at=(at + timedelta(minutes=i)).isoformat()),
            headers=r.headers,
        )
    busy = await client.get(f"/v1/geofences/{library_id}/checkins/stats", headers=editor.headers)
    assert busy.status_code == 200, busy.text
    cells = busy.json()["buckets"]
    assert sum(c["residents_checkins"] or 0 for c in cells) == 12
    quiet = await client.get(f"/v1/geofences/{small_id}/checkins/stats", headers=editor.headers)
    assert [c["residents_checkins"] for c in quiet.json()["buckets"]] == [None]
    resident = await factories.create_resident(db, org)
    denied = await client.get(
        f"/v1/geofences/{library_id}/checkins/stats", headers=resident.headers
    )
    assert denied.status_code == 403
    regulars = await client.get(
        f"/v1/geofences/{library_id}/checkins/regulars", headers=editor.headers
    )
    assert regulars.json()["regulars"] == 0


async def test_implausible_jump_is_measured_from_the_last_ping_too(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    resident = await factories.create_resident(db, org)
    await add_square(db, org.id, name="Brighton library")
    on = await client.put(
        "/v1/me/background-location", json={"enabled": True}, headers=resident.headers
    )
    assert on.status_code == 200, on.text
    now = datetime.now(UTC)
    far_lon, far_lat = offset(-25_000, 0)  # 25 km west, one minute ago
    ping = await client.post(
        "/v1/pings?mode=sync",  # evaluated now: the check-in compares with the last evaluated fix
        json={
            "pings": [
                {
                    "id": "p1",
                    "lon": far_lon,
                    "lat": far_lat,
                    "accuracy_m": 10,
                    "recorded_at": (now - timedelta(minutes=1)).isoformat(),
                }
            ]
        },
        headers=resident.headers,
    )
    assert ping.status_code == 200, ping.text
    resp = await client.post(
        "/v1/checkins", json=body(0, 0, recorded_at=now.isoformat()), headers=resident.headers
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["checkin"]["implausible_jump"] is True


async def test_a_staff_members_checkin_is_readable_by_them_alone(
    client: httpx.AsyncClient, db: AsyncSession, town: dict[str, object], settings: Settings
) -> None:
    """A staff check-in is where a worker was: their location history, not a supervisor's
    (docs/privacy.md, "Staff"). Residents' check-ins stay readable by the organisation's staff."""
    org = town["org"]
    assert isinstance(org, Organisation)
    worker = await factories.create_staff(db, settings, org, Role.field_worker)
    colleague = await factories.create_staff(db, settings, org, Role.field_worker)
    editor = await factories.create_staff(db, settings, org, Role.editor)
    admin = await factories.create_staff(db, settings, org, Role.admin)
    resident = town["resident"]
    assert isinstance(resident, factories.Resident)
    stranger = await factories.create_staff(
        db, settings, await factories.create_organisation(db), Role.admin
    )

    async def status(checkin_id: str, who: factories.Staff | factories.Resident) -> int:
        return (await client.get(f"/v1/checkins/{checkin_id}", headers=who.headers)).status_code

    worked = await client.post("/v1/checkins", json=body(0, 0), headers=worker.headers)
    assert worked.status_code == 201, worked.text
    worker_checkin = worked.json()["checkin"]["id"]
    r = await client.get(f"/v1/checkins/{worker_checkin}", headers=worker.headers)
    assert (r.status_code, r.json()["staff_user_id"]) == (200, str(worker.id))
    refused: list[factories.Staff | factories.Resident] = [
        editor,
        admin,
        colleague,
        resident,
        stranger,
    ]
    assert [await status(worker_checkin, who) for who in refused] == [404] * len(refused)
    # an editor's own check-in: theirs, not the admin's either
    own = await client.post("/v1/checkins", json=body(1, 1), headers=editor.headers)
    assert own.status_code == 201, own.text
    editor_checkin = own.json()["checkin"]["id"]
    assert await status(editor_checkin, editor) == 200
    assert [await status(editor_checkin, who) for who in (admin, worker, stranger)] == [404] * 3
    # residents' check-ins: the organisation's editors and admins still read them
    res = await client.post("/v1/checkins", json=body(2, 2), headers=resident.headers)
    assert res.status_code == 201, res.text
    resident_checkin = res.json()["checkin"]["id"]
    assert [await status(resident_checkin, w) for w in (resident, editor, admin)] == [200] * 3
    assert [await status(resident_checkin, w) for w in (worker, stranger)] == [404] * 2
    # the refused read is a problem+json that names nothing
    r = await client.get(f"/v1/checkins/{worker_checkin}", headers=admin.headers)
    assert r.headers["content-type"].startswith(PROBLEM)
    assert str(worker.id) not in r.text
