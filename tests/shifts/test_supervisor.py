"""What supervisors see: a worker's current place while on shift, never their history."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Organisation, Role
from app.core.config import Settings
from tests.factories import Resident, Staff, create_organisation, create_staff
from tests.presence.helpers import at, create_circle
from tests.presence.test_events_api import _share_test_session
from tests.shifts.helpers import fix


async def _walk_in(client: httpx.AsyncClient, who: Staff | Resident, prefix: str) -> None:
    """Fixes at the place's centre over the last four minutes (enter, then inside)."""
    body = {"pings": [fix(i, 240 - i * 60, prefix=prefix) for i in range(5)]}
    r = await client.post("/v1/pings?mode=sync", json=body, headers=who.headers)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 5


async def test_current_place_only_while_on_shift(
    client: httpx.AsyncClient, db: AsyncSession, org: Organisation, worker: Staff, editor: Staff
) -> None:
    place = await create_circle(db, org.id, 0, 0, 40, name="Depot")
    await _walk_in(client, worker, "w")
    url = f"/v1/staff/{worker.id}/current-place"
    r = await client.get(url, headers=editor.headers)
    assert r.status_code == 200, r.text
    seen = r.json()
    assert seen["on_shift"] is True
    assert [(p["geofence_id"], p["name"]) for p in seen["places"]] == [(str(place), "Depot")]
    assert seen["last_fix_at"] is not None
    assert "coordinates" not in r.text  # a place, not a position
    assert "lon" not in r.text

    # paused: the supervisor sees nothing, though presence still holds the last place
    assert (await client.post("/v1/me/tracking/pause", headers=worker.headers)).status_code == 201
    seen = (await client.get(url, headers=editor.headers)).json()
    assert (seen["on_shift"], seen["places"], seen["last_fix_at"]) == (False, [], None)
    held = await db.execute(
        text("SELECT count(*) FROM presence WHERE subject_id = :s"), {"s": worker.id}
    )
    assert held.scalar_one() >= 1


async def test_a_stale_place_is_not_current(
    client: httpx.AsyncClient, db: AsyncSession, org: Organisation, worker: Staff, editor: Staff
) -> None:
    await create_circle(db, org.id, 0, 0, 40)
    await _walk_in(client, worker, "w")
    await db.execute(  # on UTC timestamps: IMMUTABLE arithmetic, which Citus accepts here
        text(
            "UPDATE presence_subjects SET last_fix_at = "
            "(last_fix_at AT TIME ZONE 'UTC' - interval '20 minutes') AT TIME ZONE 'UTC' "
            "WHERE subject_id = :s"
        ),
        {"s": worker.id},
    )
    seen = (await client.get(f"/v1/staff/{worker.id}/current-place", headers=editor.headers)).json()
    assert (seen["on_shift"], seen["places"]) == (True, [])


async def test_who_may_ask_for_a_current_place(
    client: httpx.AsyncClient,
    db: AsyncSession,
    *,
    settings: Settings,
    org: Organisation,
    worker: Staff,
    editor: Staff,
    resident: Resident,
) -> None:
    colleague = await create_staff(db, settings, org, Role.field_worker)
    admin = await create_staff(db, settings, org, Role.admin)
    other = await create_organisation(db)
    stranger = await create_staff(db, settings, other, Role.admin)
    url = f"/v1/staff/{worker.id}/current-place"
    assert (await client.get(url, headers=admin.headers)).status_code == 200
    assert (await client.get(url, headers=colleague.headers)).status_code == 403
    assert (await client.get(url, headers=worker.headers)).status_code == 403
    assert (await client.get(url, headers=resident.headers)).status_code == 403
    assert (await client.get(url)).status_code == 401
    r = await client.get(url, headers=stranger.headers)
    assert (r.status_code, r.json()["type"].split("/")[-1]) == (404, "worker-not-found")
    # an editor is not a field worker; an unknown id is not found; a malformed id is 422
    assert (
        await client.get(f"/v1/staff/{editor.id}/current-place", headers=admin.headers)
    ).status_code == 404
    assert (
        await client.get(f"/v1/staff/{uuid.uuid4()}/current-place", headers=admin.headers)
    ).status_code == 404
    r = await client.get("/v1/staff/not-a-uuid/current-place", headers=admin.headers)
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    "route",
    [
        "/v1/events",
        "/v1/events/stream?follow=false&since=2000-01-01T00:00:00Z",
        "/v1/activity",
        "/v1/activity?kind=presence&kind=checkin",
    ],
)
async def test_the_event_log_holds_no_other_staff_members_history(
    client: httpx.AsyncClient,
    db: AsyncSession,
    *,
    org: Organisation,
    worker: Staff,
    editor: Staff,
    resident: Resident,
    route: str,
    app: FastAPI,
) -> None:
    _share_test_session(app, db)  # the stream's own sessions see the test's transaction
    await create_circle(db, org.id, 0, 0, 40)
    await _walk_in(client, worker, "w")
    await _walk_in(client, resident, "r")
    lon, lat = at(0.0, 0.0)
    checkin = {"lon": lon, "lat": lat, "accuracy_m": 5}
    assert (await client.post("/v1/checkins", json=checkin, headers=worker.headers)).is_success
    held = await db.execute(
        text("SELECT type FROM presence_events WHERE staff_user_id = :s"), {"s": worker.id}
    )
    assert {"enter", "checkin"} <= set(held.scalars())  # the worker's events exist ...
    r = await client.get(route, headers=editor.headers)
    assert r.status_code == 200, r.text
    assert str(resident.id) in r.text  # ... residents' are listed (pseudonymous device ids) ...
    assert str(worker.id) not in r.text  # ... a colleague's are not
    mine = await client.get(route, headers=worker.headers)
    assert str(worker.id) in mine.text  # the worker sees their own
