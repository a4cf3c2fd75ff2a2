"""A staff member's export (their own, or by an admin) and erasure: photos they took included;
their work stays under an anonymised account.

Ground truth: the rows in the database (photo bytes, transitions, check-ins, counts, audit log).
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

import httpx
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Role, StaffUser
from app.accounts.service import ERASED_NAME
from app.audit.models import AuditEntry
from app.checkins.models import CheckIn
from app.core.config import Settings
from app.presence.models import PresenceEvent
from app.tasks.models import TaskPhoto, TaskTransition
from tests import factories
from tests.offers.helpers import Town
from tests.tasks.test_tasks_api import patch
from tests.tasks.test_visits_and_photos import (
    PARK,
    check_in,
    photo_bytes,
    pool_task_taken_and_started,
    upload,
)


async def _worked(client: httpx.AsyncClient, town: Town, worker: Any, note: str) -> str:
    """The worker checks in at the park, takes a pool task, adds two photos and completes it."""
    await check_in(client, worker, town.park)
    tid = await pool_task_taken_and_started(client, town, worker)
    for fmt in ("JPEG", "PNG"):
        resp = await upload(client, worker, tid, photo_bytes(fmt))
        assert resp.status_code == 201, resp.text
    done = await patch(client, worker, tid, status="done", note=note)
    assert done.status_code == 200, done.text
    return tid


def _owned(column: Any, who: uuid.UUID) -> Any:
    """How many rows of `column`'s table are `who`'s."""
    return select(func.count()).select_from(column.class_).where(column == who)


async def _count(db: AsyncSession, stmt: Any) -> int:
    return int((await db.execute(stmt)).scalar_one())


async def test_a_staff_member_exports_everything_about_them_photos_included(
    client: httpx.AsyncClient, db: AsyncSession, town: Town
) -> None:
    tid = await _worked(client, town, town.worker, "Gate latch replaced")
    await _worked(client, town, town.worker2, "Bench painted")
    r = await client.get("/v1/users/me/export", headers=town.worker.headers)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["account"]["id"] == str(town.worker.id)
    assert data["account"]["email"] == town.worker.email
    assert "password" not in str(data["account"])
    [checkin] = data["checkins"]["features"]
    assert checkin["geometry"]["coordinates"] == list(PARK)
    assert "checkin" in {f["properties"]["type"] for f in data["events"]["features"]}
    mine = (
        await db.execute(
            select(TaskTransition.to_status, TaskTransition.note).where(
                TaskTransition.actor_id == town.worker.id
            )
        )
    ).all()
    assert sorted((t["to_status"], t["note"]) for t in data["task_transitions"]) == sorted(
        (m.to_status, m.note) for m in mine
    )
    assert ("done", "Gate latch replaced") in {(m.to_status, m.note) for m in mine}
    assert [t["id"] for t in data["tasks_assigned"]] == [tid]
    stored = (
        await db.execute(
            select(TaskPhoto.id, TaskPhoto.data).where(TaskPhoto.uploaded_by == town.worker.id)
        )
    ).all()
    assert len(stored) == 2
    assert {(p["id"], base64.b64decode(p["data_base64"])) for p in data["photos"]} == {
        (str(s.id), s.data) for s in stored
    }
    assert "task.done" in {a["type"] for a in data["activity"]}
    assert data["retention"]["checkins"].startswith("30 days")
    # nothing of the other worker's
    assert str(town.worker2.id) not in r.text
    assert "Bench painted" not in r.text


async def test_an_admin_exports_a_staff_member_on_request_audited_and_scoped(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, town: Town
) -> None:
    await _worked(client, town, town.worker, "Gate latch replaced")
    path = f"/v1/users/{town.worker.id}/export"
    r = await client.get(path, headers=town.admin.headers)
    assert r.status_code == 200, r.text
    own = await client.get("/v1/users/me/export", headers=town.worker.headers)
    strip = ("exported_at",)
    assert {k: v for k, v in r.json().items() if k not in strip} == {
        k: v for k, v in own.json().items() if k not in strip
    }
    entries = (
        await db.execute(select(AuditEntry.action).where(AuditEntry.entity_id == town.worker.id))
    ).all()
    assert [e.action for e in entries] == ["user.export"]
    assert (await client.get(path, headers=town.editor.headers)).status_code == 403
    assert (await client.get(path, headers=town.worker2.headers)).status_code == 403
    other_org = await factories.create_organisation(db)
    stranger = await factories.create_staff(db, settings, other_org, Role.admin)
    assert (await client.get(path, headers=stranger.headers)).status_code == 404
    assert (await client.get("/v1/users/me/export", headers=town.resident.headers)).status_code in (
        401,
        403,
    )


async def test_erasing_a_staff_member_keeps_the_work_and_removes_the_person(
    client: httpx.AsyncClient, db: AsyncSession, town: Town
) -> None:
    tid = await _worked(client, town, town.worker, "Gate latch replaced")
    await _worked(client, town, town.worker2, "Bench painted")
    # the audit log repeats the worker's name once an admin renames them
    renamed = await client.patch(
        f"/v1/users/{town.worker.id}",
        json={"full_name": "Wendy Worker"},
        headers=town.admin.headers,
    )
    assert renamed.status_code == 200, renamed.text
    w, w2 = town.worker.id, town.worker2.id
    transitions = (
        select(func.count())
        .select_from(TaskTransition)
        .where(TaskTransition.task_id == uuid.UUID(tid))
    )
    kept_transitions = await _count(db, transitions)
    assert await _count(db, _owned(TaskPhoto.uploaded_by, w)) == 2
    staff_counts = text(
        "SELECT coalesce(sum(checkins), 0) FROM checkin_counts "
        "WHERE geofence_id = :g AND subject_kind = 'staff'"
    )
    counted_before = int((await db.execute(staff_counts, {"g": town.park})).scalar_one())

    r = await client.post(f"/v1/users/{w}/erase", headers=town.admin.headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"staff_user_id": str(w), "checkins_aggregated": 1, "photos_deleted": 2}

    # the person is gone: tracks, photos, name, email, password, sessions
    assert await _count(db, _owned(TaskPhoto.uploaded_by, w)) == 0
    assert await _count(db, _owned(CheckIn.staff_user_id, w)) == 0
    assert await _count(db, _owned(PresenceEvent.staff_user_id, w)) == 0
    assert int((await db.execute(staff_counts, {"g": town.park})).scalar_one()) == (
        counted_before + 1
    )
    user = (await db.execute(select(StaffUser).where(StaffUser.id == w))).scalar_one()
    await db.refresh(user)
    assert user.full_name == ERASED_NAME
    assert town.worker.email not in user.email
    assert user.is_active is False
    assert (await client.get("/v1/me", headers=town.worker.headers)).status_code == 401
    login = await client.post(
        "/v1/auth/token",
        data={"username": town.worker.email, "password": factories.DEFAULT_PASSWORD},
    )
    assert login.status_code == 401
    details = (
        await db.execute(select(AuditEntry.details).where(AuditEntry.entity_id == w))
    ).scalars()
    assert "Wendy" not in str(list(details))
    # and it is never signed in again: no reactivation, no new password
    shown = await client.get(f"/v1/users/{w}", headers=town.admin.headers)
    assert shown.json()["erased"] is True
    for method, path, body in (
        ("PATCH", f"/v1/users/{w}", {"is_active": True}),
        ("POST", f"/v1/users/{w}/password-reset", None),
    ):
        refused = await client.request(method, path, json=body, headers=town.admin.headers)
        assert refused.status_code == 409, refused.text
        assert refused.json()["type"].endswith("/account-erased")
    await db.refresh(user)
    assert (user.is_active, user.erased) == (False, True)
    # the work stays, under the anonymised account
    assert await _count(db, transitions) == kept_transitions
    task = await client.get(f"/v1/tasks/{tid}", headers=town.editor.headers)
    assert task.json()["status"] == "done"
    feed = (await client.get("/v1/activity?kind=task", headers=town.editor.headers)).json()
    done = [i for i in feed["items"] if i["type"] == "task.done" and i["data"]["task_id"] == tid]
    assert [i["actor"]["name"] for i in done] == [ERASED_NAME]
    # the other worker keeps everything
    assert await _count(db, _owned(TaskPhoto.uploaded_by, w2)) == 2
    assert await _count(db, _owned(CheckIn.staff_user_id, w2)) == 1
    assert await _count(db, _owned(PresenceEvent.staff_user_id, w2)) > 0
    assert (await client.get("/v1/me", headers=town.worker2.headers)).status_code == 200


async def test_an_admin_cannot_erase_themselves_and_strangers_are_not_found(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, town: Town
) -> None:
    me = await client.post(f"/v1/users/{town.admin.id}/erase", headers=town.admin.headers)
    assert me.status_code == 409
    assert me.headers["content-type"] == "application/problem+json"
    assert (await client.get("/v1/me", headers=town.admin.headers)).status_code == 200
    assert (
        await client.post(f"/v1/users/{uuid.uuid4()}/erase", headers=town.admin.headers)
    ).status_code == 404
    other_org = await factories.create_organisation(db)
    stranger = await factories.create_staff(db, settings, other_org, Role.admin)
    r = await client.post(f"/v1/users/{town.worker.id}/erase", headers=stranger.headers)
    assert r.status_code == 404
    r = await client.post(f"/v1/users/{town.worker.id}/erase", headers=town.editor.headers)
    assert r.status_code == 403
    user = (await db.execute(select(StaffUser).where(StaffUser.id == town.worker.id))).scalar_one()
    assert user.is_active is True
    assert user.full_name != ERASED_NAME
