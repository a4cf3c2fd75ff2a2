"""Field work in Chromium: a visit proves the tasks at a place, buttons follow the state machine,
completion takes a note and photos (cleaned of EXIF on the server), overdue work is flagged.

Ground truth is the API (tasks, transitions, the stored photo bytes decoded with Pillow).
"""

from __future__ import annotations

import io
import secrets
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from PIL import Image
from playwright.async_api import Browser, FilePayload, Page, expect

from tests.live import LiveServer
from tests.web.conftest import (
    docs_screenshot,
    new_context,
    open_page,
    screenshot,
    serious_accessibility_violations,
)
from tests.web.test_flows import (
    create_place,
    create_staff,
    resident_context,
    set_notification_permission,
    sign_in_console,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def photo_with_gps(fmt: str) -> bytes:
    img = Image.new("RGB", (120, 90), (40, 120, 200))
    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (51.0, 29.0, 24.0), 3: "W", 4: (0.0, 6.0, 36.0)}
    out = io.BytesIO()
    img.save(out, fmt, exif=exif.tobytes())
    return out.getvalue()


async def sign_in_app(page: Page, email: str, password: str) -> None:
    await page.get_by_text("Council field worker? Sign in").click()
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()


async def test_worker_checks_in_takes_a_pool_task_and_completes_it_with_a_note_and_photos(
    browser: Browser, web_server: LiveServer
) -> None:
    admin = web_server.token(web_server.admin_email, web_server.admin_password)
    at = (-0.135, 51.49)
    park = f"Victoria Park {secrets.token_hex(2)}"
    place_id = create_place(web_server, admin, park, "park", at)
    worker_id, email, password = create_staff(web_server, admin, "field_worker")
    title = f"Weekly playground inspection {secrets.token_hex(2)}"
    late_title = f"Repaint the bench {secrets.token_hex(2)}"
    task = web_server.request(
        "POST",
        "/v1/tasks",
        admin,
        json={
            "title": title,
            "geofence_id": place_id,
            "requires_visit": True,
            "description": "Photograph any damage.",
        },
    )
    web_server.request(
        "POST",
        "/v1/tasks",
        admin,
        json={
            "title": late_title,
            "geofence_id": place_id,
            "assignee_ids": [worker_id],
            "due_at": (datetime.now(UTC) - timedelta(days=1)).isoformat(),
        },
    )

    context = await resident_context(browser, web_server, at)
    page, problems = await open_page(context, f"/app/?org={web_server.organisation}")
    await set_notification_permission(browser, page, web_server.base, "prompt")
    await sign_in_app(page, email, password)
    pool_item = page.locator("#task-list li", has_text=title)
    await expect(pool_item).to_be_visible()
    # after signing in, focus is on the first heading, not the page body
    await expect(page.locator("#checkin-title")).to_be_focused()
    late_item = page.locator("#task-list li", has_text=late_title)
    await expect(late_item.locator(".badge.err")).to_have_text("overdue")
    # a pool task can only be taken; an assigned one only started: never "Complete" too early
    await expect(pool_item.get_by_role("button")).to_have_text(["Take"])
    await expect(late_item.get_by_role("button")).to_have_text(["Start"])
    await expect(pool_item).to_contain_text("check-in needed")

    await page.get_by_role("button", name="Check in here").click()
    await expect(page.locator("#checkin-result")).to_contain_text(f"You're at {park}")
    # a field worker is asked about tasks and messages, never about offers
    await expect(page.locator("#notify-title")).to_have_text("Get told about tasks and messages?")
    await expect(pool_item).to_contain_text("checked in here")
    # checking in again is the same visit, said plainly
    await page.get_by_role("button", name="Check in here").click()
    await expect(page.locator("#checkin-result")).to_contain_text("Your visit here is recorded")

    await pool_item.get_by_role("button", name=f"Take: {title}").click()
    await expect(pool_item).to_contain_text("assigned")
    await expect(pool_item.get_by_role("button")).to_have_text(["Start"])
    await pool_item.get_by_role("button", name=f"Start: {title}").click()
    await expect(pool_item).to_contain_text("in progress")
    await expect(pool_item.get_by_role("button")).to_have_text(["Complete", "Pause"])
    await pool_item.get_by_role("button", name=f"Complete: {title}").click()
    form = pool_item.get_by_role("form", name=f"Complete {title}")
    await form.get_by_label("Note (optional)").fill("Swing chain worn; photographed.")
    assert await serious_accessibility_violations(page) == []
    photos = form.get_by_label("Photos (up to 3")
    # a text file calling itself a JPEG: the server decodes it and says no
    await photos.set_input_files(
        [FilePayload(name="damage.jpg", mimeType="image/jpeg", buffer=b"not a photo")]
    )
    await form.get_by_role("button", name="Mark done").click()
    await expect(form.get_by_role("alert")).to_contain_text("not a JPEG, PNG or WebP photo")
    await photos.set_input_files(
        [
            FilePayload(name="swing.jpg", mimeType="image/jpeg", buffer=photo_with_gps("JPEG")),
            FilePayload(name="gate.png", mimeType="image/png", buffer=photo_with_gps("PNG")),
        ]
    )
    await form.get_by_role("button", name="Mark done").click()
    await expect(pool_item.locator(".badge.done")).to_be_visible()
    await expect(page.locator("#status")).to_contain_text("with 2 photo(s)")
    await expect(pool_item.get_by_role("button")).to_have_count(0)
    await page.set_viewport_size({"width": 390, "height": 844})
    await pool_item.scroll_into_view_if_needed()
    await docs_screenshot(page, "app-field-work-390")
    await screenshot(page, "app-field-work")

    done = web_server.request("GET", f"/v1/tasks/{task['id']}", admin)
    assert done["status"] == "done"
    assert done["proof_source"] == "checkin"
    assert done["proof_checkin_id"] is not None
    assert done["transitions"][-1]["note"] == "Swing chain worn; photographed."
    stored = web_server.request("GET", f"/v1/tasks/{task['id']}/photos", admin)
    assert [p["content_type"] for p in stored] == ["image/jpeg", "image/png"]
    for p in stored:
        raw = httpx.get(web_server.base + p["url"], headers={"Authorization": f"Bearer {admin}"})
        img = Image.open(io.BytesIO(raw.content))
        img.load()
        assert dict(img.getexif()) == {}  # the GPS position did not survive
    assert problems.errors == []
    await context.close()

    # The console shows the note and the photos, and flags the overdue task.
    staff_context = await new_context(browser, web_server)
    console, console_problems = await open_page(staff_context, "/console/")
    await sign_in_console(console, web_server.admin_email, web_server.admin_password)
    await expect(console.locator("#workspace-title")).to_be_focused()
    await console.get_by_role("tab", name="Tasks").click()
    await expect(console.locator("#task-list tr", has_text=late_title)).to_contain_text("overdue")
    row = console.locator("#task-list tr", has_text=title)
    await expect(row).not_to_contain_text("overdue")
    await row.get_by_role("button", name=f"Notes and photos of {title}").click()
    record = console.locator("tr.task-record")
    await expect(record).to_contain_text("Swing chain worn; photographed.")
    await expect(record.get_by_role("img")).to_have_count(2)
    loaded = await record.get_by_role("img").evaluate_all(
        "(imgs) => imgs.map((i) => i.complete && i.naturalWidth)"
    )
    assert loaded == [120, 120]
    assert await serious_accessibility_violations(console) == []
    assert console_problems.errors == []
    await staff_context.close()


async def test_editor_is_warned_about_a_past_due_date(
    browser: Browser, web_server: LiveServer
) -> None:
    admin = web_server.token(web_server.admin_email, web_server.admin_password)
    depot = f"South Depot {secrets.token_hex(2)}"
    create_place(web_server, admin, depot, "depot", (-0.12, 51.48))
    _, email, password = create_staff(web_server, admin, "editor")
    title = f"Late stock count {secrets.token_hex(2)}"
    context = await new_context(browser, web_server)
    console, problems = await open_page(context, "/console/")
    await sign_in_console(console, email, password)
    await console.get_by_role("tab", name="Tasks").click()
    form = console.locator("#task-form")
    await form.get_by_label("Title").fill(title)
    await form.get_by_label("Place", exact=True).select_option(label=f"{depot} (depot)")
    yesterday = (datetime.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    await form.get_by_label("Due").fill(yesterday)
    await expect(console.locator("#task-due-warning")).to_contain_text("in the past")
    tomorrow = (datetime.now() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    await form.get_by_label("Due").fill(tomorrow)
    await expect(console.locator("#task-due-warning")).to_have_text("")
    await form.get_by_label("Due").fill(yesterday)
    await form.get_by_role("button", name="Save task").click()
    await expect(console.locator("#status")).to_contain_text("already overdue")
    row = console.locator("#task-list tr", has_text=title)
    await expect(row).to_contain_text("overdue")
    # the message belongs to that save: the next action clears it
    await row.get_by_role("button", name=f"Notes and photos of {title}").click()
    await expect(console.locator("#status")).to_have_text("")
    assert problems.errors == []
    await context.close()
