from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.tasks import service
from tests.offers.helpers import Town

PROBLEM = "application/problem+json"
MISSING = "00000000-0000-4000-8000-000000000000"


def task_body(town: Town, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "Inspect the play area",
        "description": "Check the swings and the gate latch.",
        "geofence_id": str(town.park),
        "priority": "high",
    }
    body.update(overrides)
    return body


async def create(client: httpx.AsyncClient, town: Town, **overrides: Any) -> dict[str, Any]:
    resp = await client.post(
        "/v1/tasks", json=task_body(town, **overrides), headers=town.editor.headers
    )
    assert resp.status_code == 201, resp.text
    data: dict[str, Any] = resp.json()
    return data


async def patch(
    client: httpx.AsyncClient, caller: Any, task_id: str, **body: Any
) -> httpx.Response:
    return await client.patch(f"/v1/tasks/{task_id}", json=body, headers=caller.headers)


async def get(client: httpx.AsyncClient, town: Town, task_id: str) -> dict[str, Any]:
    resp = await client.get(f"/v1/tasks/{task_id}", headers=town.editor.headers)
    assert resp.status_code == 200
    data: dict[str, Any] = resp.json()
    return data


async def count_tasks(client: httpx.AsyncClient, town: Town) -> int:
    resp = await client.get("/v1/tasks", headers=town.editor.headers)
    return len(resp.json()["items"])


# --- create -------------------------------------------------------------------------------


async def test_editor_creates_pool_task_and_assigned_task(
    client: httpx.AsyncClient, town: Town
) -> None:
    pool = await create(client, town, due_at="2026-12-01T09:00:00+00:00", note="after the storm")
    assert pool["status"] == "open"
    assert pool["assignee_ids"] == []
    assert pool["requires_visit"] is False
    assert pool["proof_checkin_id"] is None
    assert pool["due_at"] == "2026-12-01T09:00:00Z"
    [t] = pool["transitions"]
    assert (t["from_status"], t["to_status"], t["actor_id"], t["note"]) == (
        None,
        "open",
        str(town.editor.id),
        "after the storm",
    )
    assigned = await create(
        client, town, assignee_ids=[str(town.worker.id), str(town.worker2.id)], requires_visit=True
    )
    assert assigned["status"] == "assigned"
    assert assigned["assignee_ids"] == sorted([str(town.worker.id), str(town.worker2.id)])
    assert assigned["requires_visit"] is True
    assert [t["to_status"] for t in assigned["transitions"]] == ["assigned"]


async def test_admin_may_create_tasks(client: httpx.AsyncClient, town: Town) -> None:
    resp = await client.post("/v1/tasks", json=task_body(town), headers=town.admin.headers)
    assert resp.status_code == 201


@pytest.mark.parametrize("who", ["worker", "resident"])
async def test_field_workers_and_residents_cannot_create_tasks(
    client: httpx.AsyncClient, town: Town, who: str
) -> None:
    resp = await client.post("/v1/tasks", json=task_body(town), headers=getattr(town, who).headers)
    assert resp.status_code == 403
    assert resp.headers["content-type"] == PROBLEM
    assert await count_tasks(client, town) == 0


async def test_residents_cannot_use_any_task_endpoint(
    client: httpx.AsyncClient, town: Town
) -> None:
    tid = (await create(client, town))["id"]
    h = town.resident.headers
    assert (await client.get("/v1/tasks", headers=h)).status_code == 403
    assert (await client.get(f"/v1/tasks/{tid}", headers=h)).status_code == 403
    assert (
        await client.patch(f"/v1/tasks/{tid}", json={"status": "cancelled"}, headers=h)
    ).status_code == 403
    assert (await client.get("/v1/me/tasks", headers=h)).status_code == 403
    assert (await client.get("/v1/tasks")).status_code == 401


BAD_INPUTS: list[tuple[str, dict[str, Any], str]] = [
    ("unknown field", {"colour": "red"}, "colour"),
    ("empty title", {"title": ""}, "title"),
    ("title too long", {"title": "x" * 201}, "title"),
    ("description too long", {"description": "x" * 4001}, "description"),
    ("unknown priority", {"priority": "asap"}, "priority"),
    ("naive due_at", {"due_at": "2026-12-01T09:00:00"}, "due_at"),
    ("missing place", {"geofence_id": None}, "geofence_id"),
    ("place not a uuid", {"geofence_id": "park"}, "geofence_id"),
    ("status on create", {"status": "done"}, "status"),
    ("proof on create", {"proof_checkin_id": MISSING}, "proof_checkin_id"),
]


@pytest.mark.parametrize(
    ("overrides", "field"), [(o, f) for _, o, f in BAD_INPUTS], ids=[n for n, _, _ in BAD_INPUTS]
)
async def test_bad_task_input_is_422_and_stores_nothing(
    client: httpx.AsyncClient, town: Town, overrides: dict[str, Any], field: str
) -> None:
    resp = await client.post(
        "/v1/tasks", json=task_body(town, **overrides), headers=town.editor.headers
    )
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"] == PROBLEM
    assert any(e["field"] == field for e in resp.json()["errors"]), resp.json()
    assert await count_tasks(client, town) == 0


@pytest.mark.parametrize("place", ["missing", "other_library"])
async def test_unknown_or_foreign_place_is_422(
    client: httpx.AsyncClient, town: Town, place: str
) -> None:
    gid = MISSING if place == "missing" else str(getattr(town, place))
    resp = await client.post(
        "/v1/tasks", json=task_body(town, geofence_id=gid), headers=town.editor.headers
    )
    assert resp.status_code == 422
    assert resp.json()["type"].endswith("/unknown-geofence")
    assert await count_tasks(client, town) == 0


@pytest.mark.parametrize("who", ["resident", "editor", "other_worker", "missing"])
async def test_assigning_anyone_but_a_field_worker_of_the_organisation_is_422(
    client: httpx.AsyncClient, town: Town, who: str
) -> None:
    target = MISSING if who == "missing" else str(getattr(town, who).id)
    resp = await client.post(
        "/v1/tasks",
        json=task_body(town, assignee_ids=[str(town.worker.id), target]),
        headers=town.editor.headers,
    )
    assert resp.status_code == 422
    assert resp.json()["type"].endswith("/unknown-assignee")
    assert resp.json()["unknown"] == [target]
    assert await count_tasks(client, town) == 0
    tid = (await create(client, town))["id"]
    change = await patch(client, town.editor, tid, assignee_ids=[target])
    assert change.status_code == 422
    assert (await get(client, town, tid))["assignee_ids"] == []


# --- reading and organisation scope ---------------------------------------------------------


async def test_another_organisation_gets_404_and_changes_nothing(
    client: httpx.AsyncClient, town: Town
) -> None:
    tid = (await create(client, town, assignee_ids=[str(town.worker.id)]))["id"]
    for caller in (town.other_editor, town.other_worker):
        assert (await client.get(f"/v1/tasks/{tid}", headers=caller.headers)).status_code == 404
        resp = await patch(client, caller, tid, status="cancelled")
        assert resp.status_code == 404
        listed = await client.get("/v1/tasks", headers=caller.headers)
        assert listed.json()["items"] == []
    assert (await get(client, town, tid))["status"] == "assigned"


async def test_field_worker_sees_own_and_pool_tasks_only(
    client: httpx.AsyncClient, town: Town
) -> None:
    mine = await create(client, town, title="Mine", assignee_ids=[str(town.worker.id)])
    pool = await create(client, town, title="Pool")
    theirs = await create(client, town, title="Theirs", assignee_ids=[str(town.worker2.id)])
    h = town.worker.headers
    listed = await client.get("/v1/tasks", headers=h)
    assert [t["title"] for t in listed.json()["items"]] == ["Mine", "Pool"]
    assert (await client.get(f"/v1/tasks/{mine['id']}", headers=h)).status_code == 200
    assert (await client.get(f"/v1/tasks/{pool['id']}", headers=h)).status_code == 200
    assert (await client.get(f"/v1/tasks/{theirs['id']}", headers=h)).status_code == 404
    editor_list = await client.get("/v1/tasks", headers=town.editor.headers)
    assert len(editor_list.json()["items"]) == 3


async def test_list_filters(client: httpx.AsyncClient, town: Town) -> None:
    await create(client, town, title="Park pool", priority="low")
    await create(
        client,
        town,
        title="Library",
        geofence_id=str(town.library),
        assignee_ids=[str(town.worker.id)],
    )
    h = town.editor.headers

    async def titles(**params: Any) -> list[str]:
        resp = await client.get("/v1/tasks", params=params, headers=h)
        assert resp.status_code == 200, resp.text
        return [t["title"] for t in resp.json()["items"]]

    assert await titles(status="assigned") == ["Library"]
    assert await titles(geofence_id=str(town.park)) == ["Park pool"]
    assert await titles(assignee_id=str(town.worker.id)) == ["Library"]
    assert await titles(priority="low") == ["Park pool"]
    assert await titles(unassigned="true") == ["Park pool"]
    assert await titles(unassigned="false") == ["Library"]
    assert (
        await client.get("/v1/tasks", params={"status": "finished"}, headers=h)
    ).status_code == 422
    page = await client.get("/v1/tasks", params={"limit": 1}, headers=h)
    nxt = await client.get(
        "/v1/tasks", params={"limit": 1, "cursor": page.json()["next_cursor"]}, headers=h
    )
    assert [t["title"] for t in nxt.json()["items"]] == ["Library"]


# --- workflow -----------------------------------------------------------------------------


async def test_assignee_works_a_task_through_to_done_with_every_step_recorded(
    client: httpx.AsyncClient, town: Town
) -> None:
    tid = (await create(client, town, assignee_ids=[str(town.worker.id)]))["id"]
    w = town.worker
    started = await patch(client, w, tid, status="in_progress", note="on site")
    assert started.status_code == 200, started.text
    paused = await patch(client, w, tid, status="assigned", note="need a ladder")
    assert paused.json()["status"] == "assigned"
    assert (await patch(client, w, tid, status="in_progress")).status_code == 200
    done = await patch(client, w, tid, status="done", note="latch replaced")
    assert done.status_code == 200
    steps = [
        (t["from_status"], t["to_status"], t["actor_id"], t["note"])
        for t in done.json()["transitions"]
    ]
    wid = str(w.id)
    assert steps == [
        (None, "assigned", str(town.editor.id), None),
        ("assigned", "in_progress", wid, "on site"),
        ("in_progress", "assigned", wid, "need a ladder"),
        ("assigned", "in_progress", wid, None),
        ("in_progress", "done", wid, "latch replaced"),
    ]


@pytest.mark.parametrize(
    ("path", "target"),
    [
        (["open"], "done"),
        (["open"], "in_progress"),
        (["open"], "open"),
        (["assigned"], "done"),
        (["assigned", "in_progress", "done"], "in_progress"),
        (["assigned", "in_progress", "done"], "assigned"),
        (["assigned", "in_progress", "done"], "cancelled"),
        (["cancelled"], "in_progress"),
        (["cancelled"], "done"),
    ],
)
async def test_illegal_transitions_are_409_with_the_allowed_moves(
    client: httpx.AsyncClient, town: Town, path: list[str], target: str
) -> None:
    assignees = [] if path[0] in ("open", "cancelled") else [str(town.worker.id)]
    tid = (await create(client, town, assignee_ids=assignees))["id"]
    for step in path[1:] if path[0] == "assigned" else []:
        assert (await patch(client, town.editor, tid, status=step)).status_code == 200
    if path == ["cancelled"]:
        assert (await patch(client, town.editor, tid, status="cancelled")).status_code == 200
    before = await get(client, town, tid)
    resp = await patch(client, town.editor, tid, status=target)
    assert resp.status_code == 409, resp.text
    problem = resp.json()
    assert resp.headers["content-type"] == PROBLEM
    assert problem["type"].endswith("/illegal-transition")
    assert problem["to"] == target
    assert await get(client, town, tid) == before


async def test_reopen_is_for_editors_and_admins_only(client: httpx.AsyncClient, town: Town) -> None:
    tid = (await create(client, town, assignee_ids=[str(town.worker.id)]))["id"]
    for step in ("in_progress", "done"):
        assert (await patch(client, town.worker, tid, status=step)).status_code == 200
    refused = await patch(client, town.worker, tid, status="open")
    assert refused.status_code == 403
    assert refused.json()["type"].endswith("/transition-forbidden")
    reopened = await patch(client, town.editor, tid, status="open", note="gate broke again")
    assert reopened.status_code == 200
    assert reopened.json()["status"] == "open"
    assert reopened.json()["transitions"][-1]["note"] == "gate broke again"
    assert (await patch(client, town.admin, tid, status="cancelled")).status_code == 200
    assert (await patch(client, town.admin, tid, status="open")).status_code == 200


async def test_field_worker_cannot_cancel_edit_or_complete_someone_elses_task(
    client: httpx.AsyncClient, town: Town
) -> None:
    mine = (await create(client, town, assignee_ids=[str(town.worker.id)]))["id"]
    theirs = (await create(client, town, assignee_ids=[str(town.worker2.id)]))["id"]
    assert (await patch(client, town.worker2, theirs, status="in_progress")).status_code == 200
    w = town.worker
    assert (await patch(client, w, theirs, status="done")).status_code == 404
    assert (await patch(client, w, mine, status="cancelled")).status_code == 403
    edit = await patch(client, w, mine, title="Easier job")
    assert edit.status_code == 403
    assert "title" in edit.json()["detail"]
    reassign = await patch(client, w, mine, assignee_ids=[str(town.worker2.id)])
    assert reassign.status_code == 403
    assert (await get(client, town, theirs))["status"] == "in_progress"
    assert (await get(client, town, mine))["title"] == "Inspect the play area"


async def test_field_worker_claims_a_pool_task_and_a_second_claim_fails(
    client: httpx.AsyncClient, town: Town
) -> None:
    tid = (await create(client, town))["id"]
    claimed = await patch(client, town.worker, tid, status="assigned", note="I'm nearby")
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["assignee_ids"] == [str(town.worker.id)]
    assert claimed.json()["transitions"][-1]["actor_id"] == str(town.worker.id)
    late = await patch(client, town.worker2, tid, status="assigned")
    assert late.status_code == 404
    assert (await get(client, town, tid))["assignee_ids"] == [str(town.worker.id)]


async def test_editor_assigning_and_unassigning_moves_between_open_and_assigned(
    client: httpx.AsyncClient, town: Town
) -> None:
    tid = (await create(client, town))["id"]
    e = town.editor
    no_one = await patch(client, e, tid, status="assigned")
    assert no_one.status_code == 409
    assigned = await patch(client, e, tid, assignee_ids=[str(town.worker.id)], note="Fred's area")
    assert assigned.json()["status"] == "assigned"
    assert assigned.json()["transitions"][-1]["note"] == "Fred's area"
    swapped = await patch(client, e, tid, assignee_ids=[str(town.worker2.id)])
    assert swapped.json()["status"] == "assigned"
    assert swapped.json()["assignee_ids"] == [str(town.worker2.id)]
    back = await patch(client, e, tid, assignee_ids=[])
    assert back.json()["status"] == "open"
    both = await patch(client, e, tid, assignee_ids=[str(town.worker.id)], status="in_progress")
    assert both.status_code == 200, both.text
    assert [t["to_status"] for t in both.json()["transitions"]][-2:] == ["assigned", "in_progress"]
    empty = await patch(client, e, tid, assignee_ids=[])
    assert empty.status_code == 409
    to_pool = await patch(client, e, tid, status="assigned")
    assert to_pool.status_code == 200
    unassign = await patch(client, e, tid, status="open")
    assert unassign.json()["assignee_ids"] == []


async def test_editor_edits_fields_and_bad_patches_are_422(
    client: httpx.AsyncClient, town: Town
) -> None:
    tid = (await create(client, town))["id"]
    e = town.editor
    ok = await patch(
        client,
        e,
        tid,
        title="Inspect the pond",
        priority="urgent",
        due_at="2026-12-02T10:00:00+01:00",
        geofence_id=str(town.library),
        requires_visit=True,
    )
    assert ok.status_code == 200, ok.text
    data = ok.json()
    assert (data["title"], data["priority"], data["geofence_id"], data["requires_visit"]) == (
        "Inspect the pond",
        "urgent",
        str(town.library),
        True,
    )
    assert data["due_at"] == "2026-12-02T09:00:00Z"
    before = await get(client, town, tid)
    for body in (
        {"title": None},
        {"status": None},
        {"geofence_id": str(town.other_library)},
        {"geofence_id": MISSING},
        {"priority": "asap"},
        {"note": "just a note"},
        {"status": "bogus"},
        {"proof_checkin_id": MISSING},
    ):
        resp = await patch(client, e, tid, **body)
        assert resp.status_code == 422, (body, resp.text)
    assert await get(client, town, tid) == before


# --- proof of visit ---------------------------------------------------------------------------


async def test_requires_visit_task_is_done_only_with_proof(
    client: httpx.AsyncClient, town: Town, db: AsyncSession
) -> None:
    tid = (await create(client, town, assignee_ids=[str(town.worker.id)], requires_visit=True))[
        "id"
    ]
    assert (await patch(client, town.worker, tid, status="in_progress")).status_code == 200
    refused = await patch(client, town.worker, tid, status="done")
    assert refused.status_code == 409
    assert refused.json()["type"].endswith("/visit-required")
    assert (await patch(client, town.editor, tid, status="done")).status_code == 409

    checkin_id = uuid.uuid4()
    proved = await service.record_visit(
        db,
        organisation_id=town.org_id,
        worker_id=town.worker.id,
        geofence_id=town.park,
        checkin_id=checkin_id,
        at=datetime.now(UTC),
    )
    assert proved == [uuid.UUID(tid)]
    shown = await get(client, town, tid)
    assert shown["proof_checkin_id"] == str(checkin_id)
    assert shown["proof_recorded_at"] is not None
    done = await patch(client, town.worker, tid, status="done")
    assert done.status_code == 200, done.text
    reopened = await patch(client, town.editor, tid, status="open")
    assert reopened.json()["proof_checkin_id"] is None  # a reopened task needs a fresh visit


async def test_moving_a_task_to_another_place_drops_its_proof(
    client: httpx.AsyncClient, town: Town, db: AsyncSession
) -> None:
    tid = (await create(client, town, assignee_ids=[str(town.worker.id)], requires_visit=True))[
        "id"
    ]
    await service.record_visit(
        db,
        organisation_id=town.org_id,
        worker_id=town.worker.id,
        geofence_id=town.park,
        checkin_id=uuid.uuid4(),
        at=datetime.now(UTC),
    )
    moved = await patch(client, town.editor, tid, geofence_id=str(town.library))
    assert moved.json()["proof_checkin_id"] is None


# --- my tasks -----------------------------------------------------------------------------


async def test_my_tasks_open_first_then_nearest_with_distance(
    client: httpx.AsyncClient, town: Town
) -> None:
    me = [str(town.worker.id)]
    far = await create(
        client, town, title="Pool centre", geofence_id=str(town.leisure), assignee_ids=me
    )
    near = await create(client, town, title="Park", geofence_id=str(town.park), assignee_ids=me)
    mid = await create(
        client, town, title="Library", geofence_id=str(town.library), assignee_ids=me
    )
    closed = await create(client, town, title="Closed", geofence_id=str(town.park), assignee_ids=me)
    await create(client, town, title="Not mine", assignee_ids=[str(town.worker2.id)])
    await create(client, town, title="Pool task", geofence_id=str(town.library2))
    assert (await patch(client, town.editor, closed["id"], status="cancelled")).status_code == 200
    h = town.worker.headers

    plain = await client.get("/v1/me/tasks", headers=h)
    assert plain.status_code == 200
    assert {t["title"] for t in plain.json()["items"]} == {"Pool centre", "Park", "Library"}
    assert all(t["distance_m"] is None for t in plain.json()["items"])

    resp = await client.get(
        "/v1/me/tasks", params={"near": "-1.2560,51.7530", "include_closed": "true"}, headers=h
    )
    assert resp.status_code == 200, resp.text
    items = resp.json()["items"]
    assert [t["title"] for t in items] == ["Park", "Library", "Pool centre", "Closed"]
    assert items[0]["distance_m"] == 0.0
    assert 0 < items[1]["distance_m"] < 200
    assert 1000 < items[2]["distance_m"] < 3000
    assert [t["id"] for t in items[:3]] == [near["id"], mid["id"], far["id"]]

    pooled = await client.get(
        "/v1/me/tasks", params={"near": "-1.2560,51.7530", "include_pool": "true"}, headers=h
    )
    assert "Pool task" in [t["title"] for t in pooled.json()["items"]]
    within = await client.get(
        "/v1/me/tasks", params={"near": "-1.2560,51.7530", "within_m": 500}, headers=h
    )
    assert [t["title"] for t in within.json()["items"]] == ["Park", "Library"]


@pytest.mark.parametrize("near", ["1,2,3", "x,y", "181,0", "0,91", "nan,0"])
async def test_my_tasks_bad_near_is_422(client: httpx.AsyncClient, town: Town, near: str) -> None:
    resp = await client.get("/v1/me/tasks", params={"near": near}, headers=town.worker.headers)
    assert resp.status_code == 422
    assert resp.headers["content-type"] == PROBLEM
