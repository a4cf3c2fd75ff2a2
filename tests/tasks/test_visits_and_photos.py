"""A visit proves every task at the place done within it; completion photos are cleaned images.

Ground truth: the check-ins and presence rows in the database (aged by hand where the window is
tested), and the stored photo bytes decoded again with Pillow.
"""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from PIL import Image
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.checkins.models import CheckIn
from app.core.config import Settings
from app.presence.models import Presence, PresenceSubject
from app.privacy import service as privacy_service
from app.tasks.models import TaskPhoto, TaskTransition
from tests.offers.helpers import Town
from tests.tasks.test_tasks_api import create, get, patch

PARK = (-1.2560, 51.7530)  # the centre of the town's park


async def check_in(client: httpx.AsyncClient, who: Any, place: uuid.UUID) -> dict[str, Any]:
    resp = await client.post(
        "/v1/checkins",
        json={"lon": PARK[0], "lat": PARK[1], "accuracy_m": 10, "geofence_id": str(place)},
        headers=who.headers,
    )
    assert resp.status_code in (200, 201), resp.text
    data: dict[str, Any] = resp.json()
    return data


async def pool_task_taken_and_started(client: httpx.AsyncClient, town: Town, worker: Any) -> str:
    tid = str((await create(client, town, requires_visit=True))["id"])
    assert (await patch(client, worker, tid, status="assigned")).status_code == 200
    assert (await patch(client, worker, tid, status="in_progress")).status_code == 200
    return tid


# --- proof of visit --------------------------------------------------------------------------


async def test_pool_task_taken_after_checking_in_is_completed_with_that_visit(
    client: httpx.AsyncClient, town: Town
) -> None:
    checkin = await check_in(client, town.worker, town.park)
    # the worker's repeated check-in a moment later is the same visit, not an obstacle
    again = await check_in(client, town.worker, town.park)
    assert again["repeated"] is True
    tid = await pool_task_taken_and_started(client, town, town.worker)
    done = await patch(client, town.worker, tid, status="done", note="Gate latch replaced")
    assert done.status_code == 200, done.text
    data = done.json()
    assert data["status"] == "done"
    assert data["proof_checkin_id"] == checkin["checkin"]["id"]
    assert data["proof_source"] == "checkin"
    assert data["transitions"][-1]["note"] == "Gate latch replaced"


async def test_a_visit_proves_every_task_at_the_place_but_not_elsewhere(
    client: httpx.AsyncClient, town: Town
) -> None:
    await check_in(client, town.worker, town.park)
    here = [await pool_task_taken_and_started(client, town, town.worker) for _ in range(2)]
    elsewhere = str(
        (
            await create(
                client,
                town,
                geofence_id=str(town.library2),
                requires_visit=True,
                assignee_ids=[str(town.worker.id)],
            )
        )["id"]
    )
    assert (await patch(client, town.worker, elsewhere, status="in_progress")).status_code == 200
    for tid in here:
        assert (await patch(client, town.worker, tid, status="done")).status_code == 200
    refused = await patch(client, town.worker, elsewhere, status="done")
    assert refused.status_code == 409
    assert refused.json()["type"].endswith("/visit-required")
    assert (await get(client, town, elsewhere))["status"] == "in_progress"


async def test_another_workers_visit_proves_nothing_for_mine(
    client: httpx.AsyncClient, town: Town
) -> None:
    await check_in(client, town.worker2, town.park)
    tid = await pool_task_taken_and_started(client, town, town.worker)
    assert (await patch(client, town.worker, tid, status="done")).status_code == 409


async def test_a_checkin_older_than_the_visit_window_is_not_proof(
    client: httpx.AsyncClient, town: Town, db: AsyncSession, settings: Settings
) -> None:
    checkin = await check_in(client, town.worker, town.park)
    tid = await pool_task_taken_and_started(client, town, town.worker)
    window = timedelta(minutes=settings.task_visit_window_min)
    await db.execute(
        update(CheckIn)
        .where(CheckIn.id == uuid.UUID(checkin["checkin"]["id"]))
        .values(recorded_at=datetime.now(UTC) - window - timedelta(minutes=1))
    )
    refused = await patch(client, town.worker, tid, status="done")
    assert refused.status_code == 409
    problem = refused.json()
    assert problem["visit_window_min"] == settings.task_visit_window_min
    assert f"{settings.task_visit_window_min} minutes" in problem["detail"]
    # just inside the window it counts
    await db.execute(
        update(CheckIn)
        .where(CheckIn.id == uuid.UUID(checkin["checkin"]["id"]))
        .values(recorded_at=datetime.now(UTC) - window + timedelta(minutes=1))
    )
    assert (await patch(client, town.worker, tid, status="done")).status_code == 200


async def _presence(db: AsyncSession, town: Town, worker: Any, last_fix: datetime) -> None:
    """The worker inside the park, their last evaluated fix at `last_fix` (a presence row's
    fix is its subject's)."""
    db.add(
        PresenceSubject(
            subject_id=worker.id,
            subject_kind="staff",
            organisation_id=town.org_id,
            last_fix_at=last_fix,
        )
    )
    db.add(
        Presence(
            subject_id=worker.id,
            geofence_id=town.park,
            subject_kind="staff",
            organisation_id=town.org_id,
            state="inside",
            since=last_fix - timedelta(minutes=5),
            last_fix_at=last_fix,
        )
    )
    await db.flush()


async def test_presence_inside_the_place_proves_the_visit_while_it_is_fresh(
    client: httpx.AsyncClient, town: Town, db: AsyncSession
) -> None:
    stale = await pool_task_taken_and_started(client, town, town.worker)
    await _presence(db, town, town.worker, datetime.now(UTC) - timedelta(hours=1))
    assert (await patch(client, town.worker, stale, status="done")).status_code == 409
    await db.execute(
        update(PresenceSubject)
        .where(PresenceSubject.subject_id == town.worker.id)
        .values(last_fix_at=datetime.now(UTC) - timedelta(minutes=2))
    )
    done = await patch(client, town.worker, stale, status="done")
    assert done.status_code == 200, done.text
    assert done.json()["proof_source"] == "presence"
    assert done.json()["proof_checkin_id"] is None


async def test_overdue_is_flagged_until_the_task_is_done(
    client: httpx.AsyncClient, town: Town
) -> None:
    past = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    future = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    late = await create(client, town, due_at=past, assignee_ids=[str(town.worker.id)])
    on_time = await create(client, town, due_at=future)
    assert late["overdue"] is True
    assert on_time["overdue"] is False
    mine = await client.get("/v1/me/tasks", headers=town.worker.headers)
    assert {t["id"]: t["overdue"] for t in mine.json()["items"]}[late["id"]] is True
    await patch(client, town.worker, late["id"], status="in_progress")
    done = await patch(client, town.worker, late["id"], status="done")
    assert done.json()["overdue"] is False


# --- photos ------------------------------------------------------------------------------------


def photo_bytes(fmt: str, size: tuple[int, int] = (80, 60), gps: bool = True) -> bytes:
    img = Image.new("RGB", size, (30, 140, 60))
    exif = Image.Exif()
    if gps:
        exif[0x8825] = {1: "N", 2: (51.0, 45.0, 10.8), 3: "W", 4: (1.0, 15.0, 21.6)}
        exif[0x0112] = 6  # orientation: rotate 90° clockwise to show
    out = io.BytesIO()
    img.save(out, fmt, exif=exif.tobytes())
    return out.getvalue()


async def upload(
    client: httpx.AsyncClient, who: Any, tid: str, raw: bytes, content_type: str = "image/jpeg"
) -> httpx.Response:
    return await client.post(
        f"/v1/tasks/{tid}/photos",
        content=raw,
        headers={**who.headers, "Content-Type": content_type},
    )


async def photo_count(db: AsyncSession) -> int:
    return int((await db.execute(select(func.count()).select_from(TaskPhoto))).scalar_one())


async def test_completion_photos_are_decoded_and_stored_without_exif(
    client: httpx.AsyncClient, town: Town
) -> None:
    tid = await pool_task_taken_and_started(client, town, town.worker)
    for fmt, declared in (("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")):
        raw = photo_bytes(fmt)
        assert Image.open(io.BytesIO(raw)).getexif()  # the upload carries a GPS position
        resp = await upload(client, town.worker, tid, raw, "application/octet-stream")
        assert resp.status_code == 201, resp.text
        meta = resp.json()
        assert meta["content_type"] == declared
        assert (meta["width"], meta["height"]) == (60, 80)  # turned upright
        stored = await client.get(meta["url"], headers=town.editor.headers)
        assert stored.status_code == 200
        assert stored.headers["content-type"] == declared
        img = Image.open(io.BytesIO(stored.content))
        img.load()
        assert img.format == fmt
        assert dict(img.getexif()) == {}
        assert b"Exif" not in stored.content
    listed = await client.get(f"/v1/tasks/{tid}/photos", headers=town.worker.headers)
    assert len(listed.json()) == 3
    fourth = await upload(client, town.worker, tid, photo_bytes("JPEG"))
    assert fourth.status_code == 409
    assert fourth.json()["type"].endswith("/too-many-photos")


async def test_bad_photos_are_refused_and_nothing_is_stored(
    client: httpx.AsyncClient, town: Town, db: AsyncSession, settings: Settings
) -> None:
    tid = await pool_task_taken_and_started(client, town, town.worker)
    before = await photo_count(db)
    gif = io.BytesIO()
    Image.new("RGB", (10, 10)).save(gif, "GIF")
    jpeg = photo_bytes("JPEG")
    cases = {
        "a GIF": (gif.getvalue(), 422),
        "text named as a JPEG": (b"this is not a photo at all", 422),
        "a truncated JPEG": (jpeg[: len(jpeg) // 2], 422),
        "an empty body": (b"", 422),
        "one byte over the limit": (b"\xff" * (settings.task_photo_max_bytes + 1), 413),
    }
    for what, (raw, expected) in cases.items():
        resp = await upload(client, town.worker, tid, raw)
        assert resp.status_code == expected, (what, resp.text)
        assert resp.headers["content-type"] == "application/problem+json", what
    far_too_big = await upload(
        client, town.worker, tid, b"\x00" * (settings.task_photo_max_bytes * 2)
    )
    assert far_too_big.status_code == 413
    assert await photo_count(db) == before


async def test_only_assignees_and_editors_see_or_add_photos(
    client: httpx.AsyncClient, town: Town
) -> None:
    tid = await pool_task_taken_and_started(client, town, town.worker)
    added = await upload(client, town.worker, tid, photo_bytes("PNG"))
    url = added.json()["url"]
    assert (await upload(client, town.worker2, tid, photo_bytes("PNG"))).status_code == 404
    assert (await client.get(url, headers=town.worker2.headers)).status_code == 404
    assert (await client.get(url, headers=town.other_editor.headers)).status_code == 404
    assert (await client.get(url, headers=town.resident.headers)).status_code == 403
    assert (await client.get(url, headers=town.admin.headers)).status_code == 200
    assert (await client.delete(url, headers=town.worker2.headers)).status_code == 404
    assert (await client.delete(url, headers=town.worker.headers)).status_code == 204
    assert (await client.get(url, headers=town.worker.headers)).status_code == 404


async def test_photos_are_purged_with_the_tasks_retention(
    client: httpx.AsyncClient, town: Town, db: AsyncSession, settings: Settings
) -> None:
    await check_in(client, town.worker, town.park)
    old = await pool_task_taken_and_started(client, town, town.worker)
    fresh = await pool_task_taken_and_started(client, town, town.worker)
    still_open = await pool_task_taken_and_started(client, town, town.worker)
    for tid in (old, fresh, still_open):
        assert (await upload(client, town.worker, tid, photo_bytes("JPEG"))).status_code == 201
    for tid in (old, fresh):
        assert (await patch(client, town.worker, tid, status="done")).status_code == 200
    assert (await upload(client, town.worker, old, photo_bytes("JPEG"))).status_code == 409
    retention = timedelta(days=settings.task_photo_retention_days)
    await db.execute(
        update(TaskTransition)
        .where(TaskTransition.task_id == uuid.UUID(old))
        .values(at=datetime.now(UTC) - retention - timedelta(days=1))
    )
    removed = await privacy_service.purge(db, settings)
    assert removed["task_photos"] == 1
    left = (await db.execute(text("SELECT task_id::text FROM task_photos"))).scalars().all()
    assert old not in left
    assert {fresh, still_open} <= set(left)
