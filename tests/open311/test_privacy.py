"""Reporters' contact fields are for staff only; reports are in the device's export, erasure and
the retention purge (closed reports' locations rounded after OPEN311_CLOSED_EXACT_DAYS)."""

from __future__ import annotations

from typing import Any

from app.privacy import service as privacy_service
from tests.open311.helpers import Council, answer
from tests.presence.helpers import at

CONTACT = {
    "email": "jo.bloggs@example.net",
    "first_name": "Josephine",
    "last_name": "Bloggs",
    "phone": "+44 7700 900123",
    "account_id": "fmt-account-8812",
}


async def _post(council: Council, key: str, east: float, **kw: Any) -> str:
    lon, lat = at(east, 0)
    r = await council.post(
        "json",
        api_key=key,
        service_code="pothole",
        lat=lat,
        long=lon,
        description="Deep hole",
        **kw,
    )
    assert r.status_code == 200, r.text
    return str(answer("json", r)["service_request_id"])


async def _staff_view(council: Council, rid: str) -> dict[str, Any]:
    assert council.admin is not None
    r = await council.api.get(f"/v1/open311/reports/{rid}", headers=council.admin.headers)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


async def test_contact_fields_reach_staff_and_never_a_georeport_answer(council: Council) -> None:
    await council.service(code="pothole", name="Pothole", attributes=[])
    key = await council.api_key()
    await council.allow_public_read()
    rid = await _post(council, key, 100, **CONTACT)
    staff = await _staff_view(council, rid)
    assert {k: staff[k] for k in CONTACT} == CONTACT
    for fmt in ("json", "xml"):
        for path, params in (
            (f"requests.{fmt}", {}),
            (f"requests.{fmt}", {"api_key": key}),
            (f"requests/{rid}.{fmt}", {"api_key": key}),
        ):
            r = await council.get(path, **params)
            assert r.status_code == 200, r.text
            assert rid in r.text
            for value in CONTACT.values():
                assert value not in r.text, (path, value)
    worker = await council.worker()
    as_worker = await council.api.get(f"/v1/open311/reports/{rid}", headers=worker.headers)
    assert as_worker.status_code == 403
    other = await Council(council.engine, council.settings, council.api, council.base_url).setup()
    assert other.admin is not None
    as_other = await council.api.get(f"/v1/open311/reports/{rid}", headers=other.admin.headers)
    assert as_other.status_code == 404
    listed = await council.api.get("/v1/open311/reports", headers=other.admin.headers)
    assert listed.json() == []


async def test_reports_are_in_the_export_and_erased_with_the_device(council: Council) -> None:
    await council.service(code="pothole", name="Pothole", attributes=[])
    key = await council.api_key()
    resident = await council.resident()
    rid = await _post(council, key, 100, device_id=str(resident.id), **CONTACT)
    export = await council.api.get("/v1/me/export", headers=resident.headers)
    assert export.status_code == 200, export.text
    (feature,) = export.json()["reports"]["features"]
    assert feature["properties"]["service_request_id"] == rid
    assert feature["properties"]["email"] == CONTACT["email"]
    assert feature["geometry"]["coordinates"] == [round(c, 6) for c in at(100, 0)]
    assert "reports" in export.json()["retention"]

    erased = await council.api.delete("/v1/me", headers=resident.headers)
    assert erased.status_code == 204, erased.text
    staff = await _staff_view(council, rid)  # the council's work stays, the person goes
    assert staff["device_id"] is None
    assert all(staff[k] is None for k in CONTACT)
    assert staff["description"] == "Deep hole"


async def test_closed_reports_are_rounded_after_90_days_and_others_are_not(
    council: Council,
) -> None:
    await council.service(code="pothole", name="Pothole", attributes=[])
    key = await council.api_key()
    old_closed = await _post(council, key, 100, **CONTACT)
    recent_closed = await _post(council, key, 1100, **CONTACT)
    old_open = await _post(council, key, 2100, **CONTACT)
    assert council.admin is not None
    for rid in (old_closed, recent_closed):
        task_id = (await _staff_view(council, rid))["task_id"]
        r = await council.api.patch(
            f"/v1/tasks/{task_id}", json={"status": "cancelled"}, headers=council.admin.headers
        )
        assert r.status_code == 200, r.text
    for rid, days in ((old_closed, 91), (recent_closed, 89), (old_open, 91)):
        await council.scalar(
            "WITH r AS (UPDATE open311_requests SET requested_at = now() - make_interval("
            "days => :d), updated_at = now() - make_interval(days => :d) "
            "WHERE id = CAST(:id AS uuid) RETURNING task_id), "
            "t AS (UPDATE task_transitions SET at = now() - make_interval(days => :d) "
            "WHERE task_id = (SELECT task_id FROM r) RETURNING 1) SELECT count(*) FROM t",
            id=rid,
            d=days,
        )
    async with council.sessionmaker() as s, s.begin():
        removed = await privacy_service.purge(s, council.settings)
    assert removed["reports_rounded"] == 1

    lon, lat = at(100, 0)
    rounded = await _staff_view(council, old_closed)
    assert (rounded["lat"], rounded["long"]) == (round(lat, 3), round(lon, 3))
    assert all(rounded[k] is None for k in CONTACT)
    for rid, east in ((recent_closed, 1100), (old_open, 2100)):
        kept = await _staff_view(council, rid)
        lon, lat = at(east, 0)
        assert (kept["lat"], kept["long"]) == (round(lat, 6), round(lon, 6))
        assert kept["email"] == CONTACT["email"]
    async with council.sessionmaker() as s, s.begin():
        again = await privacy_service.purge(s, council.settings)
    assert again["reports_rounded"] == 0
