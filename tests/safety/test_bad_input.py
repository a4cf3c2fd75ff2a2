"""Bad input to every lone-working route: a clear problem+json answer, and nothing changed
(the lone-working tables, the notifications and the audit log are compared before and after)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from tests.offers.helpers import Town
from tests.safety.helpers import check_in, my_visit, ok, prepare, task_at_park

TABLES = (
    "lone_visits",
    "safety_alerts",
    "on_call_contacts",
    "category_visit_lengths",
    "notifications",
    "audit_log",
    "tasks",
)


async def state(db: AsyncSession) -> dict[str, str]:
    out = {}
    for table in TABLES:
        sql = f"SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM {table} x"
        out[table] = (await db.execute(text(sql))).scalar_one()
    return out


async def refused(
    client: httpx.AsyncClient,
    db: AsyncSession,
    method: str,
    url: str,
    who: Any,
    *,
    status: int,
    code: str,
    **kwargs: Any,
) -> dict[str, Any]:
    before = await state(db)
    headers = {**who.headers, **kwargs.pop("headers", {})}
    r = await client.request(method, url, headers=headers, **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["type"].endswith(code), body
    assert await state(db) == before
    return body


@pytest.fixture
async def visit(client: httpx.AsyncClient, town: Town) -> dict[str, Any]:
    await prepare(client, town)
    await task_at_park(client, town)
    await check_in(client, town.worker, town.park)
    return await my_visit(client, town.worker)


async def test_extend_refuses_bad_minutes_unknown_and_ended_visits(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, town: Town, visit: Any
) -> None:
    url = f"/v1/me/visits/{visit['id']}/extend"
    for body in ({"minutes": 0}, {"minutes": -5}, {"minutes": "soon"}, {"minutes": 30, "x": 1}):
        await refused(
            client, db, "POST", url, town.worker, status=422, code="/validation", json=body
        )
    await refused(
        client,
        db,
        "POST",
        url,
        town.worker,
        status=400,
        code="malformed-json",
        content=b"{",
        headers={"Content-Type": "application/json"},
    )
    over = settings.lone_working_extend_max_min + 1
    body = await refused(
        client,
        db,
        "POST",
        url,
        town.worker,
        status=422,
        code="unprocessable",
        json={"minutes": over},
    )
    assert body["max"] == settings.lone_working_extend_max_min
    await refused(
        client,
        db,
        "POST",
        f"/v1/me/visits/{uuid.uuid4()}/extend",
        town.worker,
        status=404,
        code="visit-not-found",
        json={"minutes": 10},
    )
    # someone else's visit is not found
    await refused(
        client,
        db,
        "POST",
        url,
        town.worker2,
        status=404,
        code="visit-not-found",
        json={"minutes": 10},
    )
    await refused(
        client,
        db,
        "POST",
        "/v1/me/visits/not-a-uuid/extend",
        town.worker,
        status=422,
        code="/validation",
        json={"minutes": 10},
    )
    await ok(
        await client.post(f"/v1/me/visits/{visit['id']}/check-out", headers=town.worker.headers)
    )
    body = await refused(
        client, db, "POST", url, town.worker, status=409, code="visit-ended", json={"minutes": 10}
    )
    assert body["end_reason"] == "checkout"
    await refused(
        client,
        db,
        "POST",
        f"/v1/me/visits/{visit['id']}/check-out",
        town.worker,
        status=409,
        code="visit-ended",
    )


async def test_help_refuses_half_a_position_and_long_notes(
    client: httpx.AsyncClient, db: AsyncSession, town: Town
) -> None:
    bodies: list[Any] = [
        {"lon": -1.25},
        {"lat": 51.7},
        {"lon": 200, "lat": 51.7},
        {"lon": -1.2, "lat": 91},
        {"note": "x" * 501},
        {"note": ""},
        {"urgent": True},
        [],
    ]
    for body in bodies:
        await refused(
            client,
            db,
            "POST",
            "/v1/me/help",
            town.worker,
            status=422,
            code="/validation",
            json=body,
        )


async def test_acknowledge_refuses_unknown_repeated_own_and_outsiders(
    client: httpx.AsyncClient, db: AsyncSession, town: Town
) -> None:
    await prepare(client, town)
    alert = await ok(await client.post("/v1/me/help", json={}, headers=town.worker.headers), 201)
    url = f"/v1/safety/alerts/{alert['id']}/acknowledge"
    await refused(
        client,
        db,
        "POST",
        f"/v1/safety/alerts/{uuid.uuid4()}/acknowledge",
        town.editor,
        status=404,
        code="alert-not-found",
        json={},
    )
    await refused(
        client,
        db,
        "POST",
        url,
        town.editor,
        status=422,
        code="/validation",
        json={"note": "y" * 501},
    )
    await refused(client, db, "POST", url, town.worker, status=403, code="not-a-responder", json={})
    await refused(
        client, db, "POST", url, town.other_editor, status=404, code="alert-not-found", json={}
    )
    await ok(await client.post(url, json={}, headers=town.editor.headers))
    body = await refused(
        client, db, "POST", url, town.admin, status=409, code="already-acknowledged", json={}
    )
    assert body["acknowledged_by"] == str(town.editor.id)
    for bad, status, code in (
        (str(uuid.uuid4()), 404, "alert-not-found"),
        ("not-a-uuid", 422, "/validation"),
    ):
        await refused(
            client, db, "GET", f"/v1/safety/alerts/{bad}", town.editor, status=status, code=code
        )
    # the worker is not on call: not a responder, even to their own alert
    await refused(
        client,
        db,
        "GET",
        f"/v1/safety/alerts/{alert['id']}",
        town.worker,
        status=403,
        code="not-a-responder",
    )
    await refused(
        client,
        db,
        "GET",
        "/v1/safety/alerts?limit=0",
        town.editor,
        status=422,
        code="/validation",
    )
    await refused(
        client,
        db,
        "GET",
        "/v1/safety/alerts?open=maybe",
        town.editor,
        status=422,
        code="/validation",
    )


async def test_on_call_refuses_unknown_staff_duplicates_and_bad_ranks(
    client: httpx.AsyncClient, db: AsyncSession, town: Town
) -> None:
    url = "/v1/safety/on-call"
    e = str(town.editor.id)
    for contacts, status, code in (
        ([{"staff_id": e, "rank": 0}], 422, "/validation"),
        ([{"staff_id": e, "rank": 10}], 422, "/validation"),
        ([{"staff_id": "nobody", "rank": 1}], 422, "/validation"),
        ([{"staff_id": e}], 422, "/validation"),
        ([{"staff_id": e, "rank": 1}, {"staff_id": e, "rank": 2}], 422, "invalid-on-call"),
        ([{"staff_id": str(town.other_worker.id), "rank": 1}], 422, "invalid-on-call"),
        ([{"staff_id": str(uuid.uuid4()), "rank": 1}], 422, "invalid-on-call"),
        ([{"staff_id": e, "rank": 1}] * 51, 422, "/validation"),
    ):
        await refused(
            client,
            db,
            "PUT",
            url,
            town.admin,
            status=status,
            code=code,
            json={"contacts": contacts},
        )
    # a resident's device id is not staff
    await refused(
        client,
        db,
        "PUT",
        url,
        town.admin,
        status=422,
        code="invalid-on-call",
        json={"contacts": [{"staff_id": str(town.resident.id), "rank": 1}]},
    )


async def test_visit_lengths_refuse_unknown_categories_and_bad_minutes(
    client: httpx.AsyncClient, db: AsyncSession, town: Town
) -> None:
    base = "/v1/safety/visit-lengths"
    body = await refused(
        client,
        db,
        "PUT",
        f"{base}/volcano",
        town.admin,
        status=422,
        code="unknown-category",
        json={"expected_duration_min": 30},
    )
    assert "park" in body["allowed"]
    for payload in (
        {"expected_duration_min": 0},
        {"expected_duration_min": 1441},
        {},
        {"expected_duration_min": 30, "grace": 5},
    ):
        await refused(
            client,
            db,
            "PUT",
            f"{base}/park",
            town.admin,
            status=422,
            code="/validation",
            json=payload,
        )
    await refused(
        client,
        db,
        "PUT",
        f"{base}/{'x' * 41}",
        town.admin,
        status=422,
        code="/validation",
        json={"expected_duration_min": 30},
    )
    await refused(
        client, db, "DELETE", f"{base}/park", town.admin, status=404, code="category-not-set"
    )


async def test_task_expected_duration_is_checked(
    client: httpx.AsyncClient, db: AsyncSession, town: Town
) -> None:
    for minutes in (0, 1441, "long"):
        await refused(
            client,
            db,
            "POST",
            "/v1/tasks",
            town.editor,
            status=422,
            code="/validation",
            json={"title": "T", "geofence_id": str(town.park), "expected_duration_min": minutes},
        )
    tid = await task_at_park(client, town, minutes=20)
    await refused(
        client,
        db,
        "PATCH",
        f"/v1/tasks/{tid}",
        town.editor,
        status=422,
        code="/validation",
        json={"expected_duration_min": 0},
    )
    # a field worker may not change it
    await refused(
        client,
        db,
        "PATCH",
        f"/v1/tasks/{tid}",
        town.worker,
        status=403,
        code="transition-forbidden",
        json={"expected_duration_min": 90},
    )
    changed = await ok(
        await client.patch(
            f"/v1/tasks/{tid}", json={"expected_duration_min": None}, headers=town.editor.headers
        )
    )
    assert changed["expected_duration_min"] is None
