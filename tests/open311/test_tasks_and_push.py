"""A report becomes a task at the right place, nearby field workers get a push, and the
reporter's device is pushed when the status changes — end to end through the fake push service
and real delivery workers."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.notifications.fake_push import FakePushService
from tests.open311.helpers import Council, answer
from tests.presence.helpers import at
from tests.rules.helpers import received


async def _post(council: Council, key: str, east: float, north: float, **kw: Any) -> str:
    lon, lat = at(east, north)
    fields = {"api_key": key, "service_code": "fly-tipping", "lat": lat, "long": lon}
    fields |= {"attribute[size]": "bag"} | kw
    r = await council.post("json", **fields)
    assert r.status_code == 200, r.text
    return str(answer("json", r)["service_request_id"])


async def _report(council: Council, report_id: str) -> dict[str, Any]:
    assert council.admin is not None
    r = await council.api.get(f"/v1/open311/reports/{report_id}", headers=council.admin.headers)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


async def _task(council: Council, task_id: str) -> dict[str, Any]:
    assert council.admin is not None
    r = await council.api.get(f"/v1/tasks/{task_id}", headers=council.admin.headers)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def _metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    (lon1, lat1), (lon2, lat2) = a, b
    x = math.radians(lon2 - lon1) * math.cos(math.radians((lat1 + lat2) / 2))
    return 6_371_008.8 * math.hypot(x, math.radians(lat2 - lat1))


async def test_report_goes_to_the_nearest_place_of_the_services_categories(
    council: Council,
) -> None:
    near_park = await council.park(0, 0, 100, 100)
    far_park = await council.park(150, 0, 250, 100)
    library = await council.library(east=125, north=50)  # nearer, but not a park
    await council.service()
    key = await council.api_key()

    rid = await _post(council, key, 120, 50, description="Sofa")  # 20 m from the near park
    report = await _report(council, rid)
    assert report["geofence_id"] == str(near_park)
    assert report["geofence_id"] not in (str(far_park), str(library))
    task = await _task(council, report["task_id"])
    assert task["geofence_id"] == str(near_park)
    assert task["title"] == "Clear fly-tipping"
    assert task["priority"] == "high"
    assert task["status"] == "open"  # the team pool
    assert "Sofa" in task["description"]
    assert "size: bag" in task["description"]
    due = datetime.fromisoformat(task["due_at"])
    assert abs((due - datetime.now(UTC)) - timedelta(days=1)) < timedelta(minutes=5)
    assert task["created_by"] is None  # no staff member: the report made it


async def test_report_at_an_open_spot_gets_a_small_report_place(council: Council) -> None:
    await council.park(0, 0, 100, 100)
    await council.service()
    key = await council.api_key()
    places_before = await council.count("geofences")

    rid = await _post(council, key, 400, 50)  # 300 m from the park: beyond match_within_m
    report = await _report(council, rid)
    assert await council.count("geofences") == places_before + 1
    assert council.admin is not None
    r = await council.api.get(
        f"/v1/geofences/{report['geofence_id']}", headers=council.admin.headers
    )
    place = r.json()
    assert place["properties"]["category"] == "report"
    assert place["properties"]["radius_m"] == 25
    assert place["geometry"]["type"] == "Point"
    assert _metres(tuple(place["geometry"]["coordinates"]), at(400, 50)) < 0.5
    assert (await _task(council, report["task_id"]))["geofence_id"] == report["geofence_id"]


async def test_duplicate_joins_the_open_original_and_nothing_more_is_made(
    council: Council,
) -> None:
    await council.service()
    key = await council.api_key()
    first = await _post(council, key, 1000, 0)
    counts = [await council.count(t) for t in ("tasks", "geofences")]
    second = await _post(council, key, 1020, 0)  # 20 m away
    assert [await council.count(t) for t in ("tasks", "geofences")] == counts
    a, b = await _report(council, first), await _report(council, second)
    assert b["duplicate_of"] == first
    assert b["task_id"] == a["task_id"]
    third = await _post(council, key, 1040, 0)  # 40 m from the first: a report of its own
    c = await _report(council, third)
    assert c["duplicate_of"] is None
    assert c["task_id"] != a["task_id"]


async def test_a_closed_original_takes_no_duplicates(council: Council) -> None:
    await council.service()
    key = await council.api_key()
    first = await _report(council, await _post(council, key, 1000, 0))
    assert council.admin is not None
    r = await council.api.patch(
        f"/v1/tasks/{first['task_id']}",
        json={"status": "cancelled", "note": "Already cleared"},
        headers=council.admin.headers,
    )
    assert r.status_code == 200, r.text
    again = await _report(council, await _post(council, key, 1005, 0))
    assert again["duplicate_of"] is None
    assert again["task_id"] != first["task_id"]


async def test_nearby_field_workers_get_a_push_and_far_ones_do_not(
    council: Council, fake_push: FakePushService
) -> None:
    await council.service()
    key = await council.api_key()
    near = await council.worker(fake_push)
    far = await council.worker(fake_push)
    resident = await council.resident(fake_push)
    await council.walk(near.headers, [(0, 0), (5, 0), (10, 0)])  # last fix at (10, 0)
    await council.walk(far.headers, [(3000, 0), (3005, 0), (3010, 0)])
    await council.walk(resident.headers, [(10, 0), (12, 0), (14, 0)])  # residents aren't told

    rid = await _post(council, key, 130, 0, description="Fridge on the verge")
    await council.deliver()
    got = received(fake_push)
    task_id = (await _report(council, rid))["task_id"]
    assert len(got) == 1, got
    push = got[0]
    assert push["title"] == "A new fly-tipping report 120 m from you"
    assert push["body"] == "Fridge on the verge"
    assert push["data"]["task_id"] == task_id
    assert push["data"]["service_request_id"] == rid
    assert push["url"] == f"/tasks/{task_id}"
    inbox = await council.inbox(near.headers)
    assert [n["title"] for n in inbox] == [push["title"]]
    assert await council.inbox(far.headers) == []


async def test_a_worker_who_paused_tracking_is_not_told_from_their_last_fix(
    council: Council, fake_push: FakePushService
) -> None:
    """Pausing tracking means not being located: the last fix before the pause is not used."""
    await council.service()
    key = await council.api_key()
    working = await council.worker(fake_push)
    paused = await council.worker(fake_push)
    for w in (working, paused):
        await council.walk(w.headers, [(0, 0), (5, 0), (10, 0)])
    r = await council.api.post("/v1/me/tracking/pause", headers=paused.headers)
    assert r.status_code == 201, r.text
    await _post(council, key, 60, 0)
    await council.deliver()
    assert [p["title"] for p in received(fake_push)] == ["A new fly-tipping report 50 m from you"]
    assert len(await council.inbox(working.headers)) == 1
    assert await council.inbox(paused.headers) == []


async def test_a_named_team_is_told_and_others_nearby_are_not(
    council: Council, fake_push: FakePushService
) -> None:
    member = await council.worker(fake_push)
    other = await council.worker(fake_push)
    await council.service(
        task={"title": "Clear fly-tipping", "assignee_ids": [str(member.id)]},
    )
    key = await council.api_key()
    for w in (member, other):
        await council.walk(w.headers, [(0, 0), (5, 0), (10, 0)])
    rid = await _post(council, key, 60, 0)
    await council.deliver()
    got = received(fake_push)
    assert [p["title"] for p in got] == ["A new fly-tipping report 50 m from you"]
    assert await council.inbox(other.headers) == []
    task = await _task(council, (await _report(council, rid))["task_id"])
    assert task["status"] == "assigned"
    assert task["assignee_ids"] == [str(member.id)]


async def test_the_reporters_device_is_pushed_when_the_status_changes(
    council: Council, fake_push: FakePushService
) -> None:
    await council.service()
    key = await council.api_key()
    worker = await council.worker()
    resident = await council.resident(fake_push)
    rid = await _post(council, key, 5000, 0, device_id=str(resident.id))
    report = await _report(council, rid)
    assert report["device_id"] == str(resident.id)
    h = worker.headers
    for status in ("assigned", "in_progress"):  # open all along: no push
        r = await council.api.patch(
            f"/v1/tasks/{report['task_id']}", json={"status": status}, headers=h
        )
        assert r.status_code == 200, r.text
    await council.deliver()
    assert received(fake_push) == []
    r = await council.api.patch(
        f"/v1/tasks/{report['task_id']}",
        json={"status": "done", "note": "Removed this morning"},
        headers=h,
    )
    assert r.status_code == 200, r.text
    await council.deliver()
    got = received(fake_push)
    assert len(got) == 1, got
    assert got[0]["title"] == "Your report is closed"
    assert got[0]["body"] == "Removed this morning"
    assert got[0]["data"] == {"service_request_id": rid, "status": "closed"}


async def test_a_device_id_of_another_organisation_is_not_kept(council: Council) -> None:
    await council.service()
    key = await council.api_key()
    other = await Council(council.engine, council.settings, council.api, council.base_url).setup()
    stranger = await other.resident()
    rid = await _post(council, key, 5000, 0, device_id=str(stranger.id))
    assert (await _report(council, rid))["device_id"] is None
    rid2 = await _post(council, key, 9000, 0, device_id=str(uuid.uuid4()))
    assert (await _report(council, rid2))["device_id"] is None
