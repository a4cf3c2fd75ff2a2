"""The console's Activity tab shows every kind of event in words, filtered by kind and place; the
console works at 320 px on every tab; staff data is downloaded and erased from the console."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.live import LiveServer
from tests.tasks.test_visits_and_photos import photo_bytes
from tests.web.conftest import (
    docs_screenshot,
    new_context,
    open_page,
    screenshot,
    serious_accessibility_violations,
    unlabelled_controls,
)
from tests.web.test_flows import accept_dialogs, create_place, create_staff, sign_in_console

pytestmark = [pytest.mark.browser, pytest.mark.slow]


async def test_activity_shows_a_redemption_a_task_transition_a_broadcast_and_a_report_in_words(
    browser: Browser, web_server: LiveServer
) -> None:
    admin = web_server.token(web_server.admin_email, web_server.admin_password)
    tag = secrets.token_hex(2)
    place = f"Riverside Pool {tag}"
    other = f"Old Library {tag}"
    lon, lat = -0.1, 51.49
    place_id = create_place(web_server, admin, place, "leisure_centre", (lon, lat))
    create_place(web_server, admin, other, "library", (lon + 0.02, lat))
    _, worker_email, worker_password = create_staff(web_server, admin, "field_worker")
    worker = web_server.token(worker_email, worker_password)
    worker_name = web_server.request("GET", "/v1/me", worker)["full_name"]
    # a resident checks in and redeems an offer of the place
    device = web_server.request(
        "POST", "/v1/devices", json={"platform": "web", "organisation": web_server.organisation}
    )
    resident = device["token"]
    web_server.request(
        "POST", "/v1/checkins", resident, json={"lon": lon, "lat": lat, "accuracy_m": 8}
    )
    offer = web_server.request(
        "POST",
        "/v1/offers",
        admin,
        json={
            "title": f"Free swim {tag}",
            "body": "One per visit",
            "triggers": ["checkin"],
            "geofence_ids": [place_id],
            "status": "active",
        },
    )
    web_server.request(
        "POST", f"/v1/offers/{offer['id']}/redeem", resident, json={"geofence_id": place_id}
    )
    # a field worker takes a pool task and starts it
    task = web_server.request(
        "POST",
        "/v1/tasks",
        admin,
        json={"title": f"Check the lifebuoys {tag}", "geofence_id": place_id},
    )
    web_server.request("PATCH", f"/v1/tasks/{task['id']}", worker, json={"status": "assigned"})
    web_server.request("PATCH", f"/v1/tasks/{task['id']}", worker, json={"status": "in_progress"})
    # and the admin broadcasts to everyone there (the resident who checked in)
    admin_name = web_server.request("GET", "/v1/me", admin)["full_name"]
    web_server.request(
        "POST",
        f"/v1/geofences/{place_id}/broadcast",
        admin,
        json={"title": f"Pool closes at 6 {tag}", "body": "Maintenance"},
    )

    # and someone reports a broken gate at the pool through an Open311 client (FixMyStreet-style
    # form POST with the council's api key): it joins the place's activity as a report
    code = f"broken-gate-{tag}"
    web_server.request(
        "POST",
        "/v1/open311/services",
        admin,
        json={
            "code": code,
            "name": "Broken gate",
            "place_categories": ["leisure_centre"],
            "match_within_m": 100,
            "task": {"title": "Mend the gate"},
        },
    )
    key = web_server.request("POST", "/v1/open311/keys", admin, json={"label": "FixMyStreet"})
    filed = httpx.post(
        f"{web_server.base}/open311/v2/requests.json",
        data={
            "jurisdiction_id": web_server.organisation,
            "api_key": key["key"],
            "service_code": code,
            "lat": lat,
            "long": lon,
            "description": "The gate by the car park is off its hinges",
        },
        timeout=30,
    )
    assert filed.status_code == 200, filed.text

    context = await new_context(browser, web_server)
    console, problems = await open_page(context, "/console/")
    await sign_in_console(console, web_server.admin_email, web_server.admin_password)
    await console.get_by_role("tab", name="Activity").click()
    feed = console.locator("#activity-list")
    await expect(feed).to_contain_text(f"A report ({code}) was filed at {place}")
    # the report became a task by itself: no person did it
    await expect(feed).to_contain_text(f"Task “Mend the gate” was created automatically at {place}")
    await expect(feed).to_contain_text(f"A resident redeemed “Free swim {tag}” at {place}")
    await expect(feed).to_contain_text(f"{worker_name} took task “Check the lifebuoys {tag}”")
    await expect(feed).to_contain_text(
        f"{worker_name} started task “Check the lifebuoys {tag}” at {place}"
    )
    await expect(feed).to_contain_text(f"{admin_name} created task “Check the lifebuoys {tag}”")
    await expect(feed).to_contain_text(
        f"{admin_name} sent the broadcast “Pool closes at 6 {tag}” to 1 person at {place}"
    )
    await expect(feed).to_contain_text(f"A resident checked in at {place}")
    # newest first: the report and its task came last, the broadcast before them
    texts = await feed.locator("li").all_inner_texts()
    assert "A report (" in " ".join(texts[:2])
    assert "“Mend the gate”" in " ".join(texts[:2])
    assert f"“Pool closes at 6 {tag}”" in texts[2]

    # only tasks
    panel = console.get_by_role("tabpanel", name="Activity")
    await panel.get_by_label("Kind").select_option("task")
    await expect(feed.locator("li", has_text="redeemed")).to_have_count(0)
    await expect(feed.locator("li", has_text=f"“Check the lifebuoys {tag}”")).to_have_count(3)
    kinds = await feed.locator("li").evaluate_all("els => els.map(e => e.dataset.kind)")
    assert set(kinds) == {"task"}
    # every kind at the other place: none of these
    await panel.get_by_label("Kind").select_option("")
    await panel.get_by_label("Place", exact=True).select_option(label=other)
    await expect(feed).to_contain_text("Nothing yet")
    await panel.get_by_label("Place", exact=True).select_option(label=place)
    await expect(feed.locator("li")).to_have_count(8)
    # only reports, at the pool
    await panel.get_by_label("Kind").select_option("report")
    await expect(feed.locator("li")).to_have_count(1)
    await expect(feed).to_contain_text(f"A report ({code}) was filed at {place}")
    await panel.get_by_label("Kind").select_option("")
    await expect(feed.locator("li")).to_have_count(8)
    assert await serious_accessibility_violations(console) == []
    await docs_screenshot(console, "console-activity-feed")
    assert problems.errors == []
    await context.close()


async def _overflowing_controls(page: Page) -> list[str]:
    """Visible controls of the shown panel (and the top bar) that stick out of the viewport."""
    found: list[str] = await page.evaluate(
        """() => {
          const w = document.documentElement.clientWidth;
          const sel = 'button, input, select, textarea, a[href], [role=tab]';
          const out = [];
          for (const el of document.querySelectorAll(sel)) {
            if (el.closest('[hidden]') || !el.offsetParent) continue;
            // the skip link waits off-screen until it has the focus
            if (el.matches('a[href^="#"]') && el !== document.activeElement
                && el.getBoundingClientRect().right < 0) continue;
            const r = el.getBoundingClientRect();
            if (r.width === 0 || r.height === 0) continue;
            if (r.left < -1 || r.right > w + 1) {
              const name = el.getAttribute('aria-label') || el.textContent.trim() || el.id
                || el.name || el.tagName;
              out.push(`${name.slice(0, 40)} (${Math.round(r.left)}–${Math.round(r.right)})`);
            }
          }
          return out;
        }"""
    )
    return found


async def _wide(page: Page) -> list[str]:
    """The innermost elements wider than the viewport (what makes a page scroll sideways)."""
    found: list[str] = await page.evaluate(
        """() => {
          const w = document.documentElement.clientWidth;
          const out = [];
          for (const el of document.querySelectorAll('body *')) {
            if (!el.offsetParent) continue;
            const r = el.getBoundingClientRect();
            if (r.right <= w + 1) continue;
            if ([...el.children].some((c) => c.getBoundingClientRect().right > w + 1)) continue;
            out.push(`${el.tagName.toLowerCase()}#${el.id}.${el.className} ${Math.round(r.right)}`);
          }
          return out.slice(0, 12);
        }"""
    )
    return found


async def test_console_works_at_320_px_on_every_tab(
    browser: Browser, web_server: LiveServer
) -> None:
    context = await new_context(browser, web_server, viewport={"width": 320, "height": 640})
    page, problems = await open_page(context, "/console/")
    assert await _overflowing_controls(page) == []  # the sign-in form
    await sign_in_console(page, web_server.admin_email, web_server.admin_password)
    tabs = (
        "Places",
        "Offers",
        "Tasks",
        "Activity",
        "Numbers",
        "Reports",
        "Webhooks",
        "People",
        "Audit log",
    )
    for tab in tabs:
        await page.get_by_role("tab", name=tab).click()
        panel = page.get_by_role("tabpanel", name=tab)
        await expect(panel).to_be_visible()
        overflow = await page.evaluate(
            "document.scrollingElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{tab}: {overflow}px of horizontal scrolling: {await _wide(page)}"
        assert await _overflowing_controls(page) == [], tab
        assert await unlabelled_controls(page) == []
    await page.get_by_role("tab", name="Activity").click()
    await screenshot(page, "console-320-activity")
    assert problems.errors == []
    await context.close()


async def test_admin_downloads_and_erases_a_field_workers_data_and_staff_download_their_own(
    browser: Browser, web_server: LiveServer
) -> None:
    admin = web_server.token(web_server.admin_email, web_server.admin_password)
    tag = secrets.token_hex(2)
    place_id = create_place(web_server, admin, f"Depot {tag}", "depot", (-0.12, 51.47))
    worker_id, email, password = create_staff(web_server, admin, "field_worker")
    worker = web_server.token(email, password)
    name = web_server.request("GET", "/v1/me", worker)["full_name"]
    task = web_server.request(
        "POST", "/v1/tasks", admin, json={"title": f"Sweep the yard {tag}", "geofence_id": place_id}
    )
    web_server.request("PATCH", f"/v1/tasks/{task['id']}", worker, json={"status": "assigned"})
    web_server.request(
        "POST",
        f"/v1/tasks/{task['id']}/photos",
        worker,
        content=photo_bytes("PNG"),
        headers={"Content-Type": "image/png"},
    )

    # the field worker downloads their own data from the console
    worker_context = await new_context(browser, web_server, accept_downloads=True)
    page, worker_problems = await open_page(worker_context, "/console/")
    await sign_in_console(page, email, password)
    async with page.expect_download() as waiting:
        await page.get_by_role("button", name="My data").click()
    own = json.loads(Path(await (await waiting.value).path()).read_text())
    assert own["account"]["email"] == email
    assert len(own["photos"]) == 1
    await expect(page.locator("#status")).to_contain_text("everything held about you (1 photo)")
    assert worker_problems.errors == []
    await worker_context.close()

    context = await new_context(browser, web_server, accept_downloads=True)
    console, problems = await open_page(context, "/console/")
    accept_dialogs(console)
    await sign_in_console(console, web_server.admin_email, web_server.admin_password)
    await console.get_by_role("tab", name="People").click()
    row = console.locator("#people-list tr", has_text=email)
    async with console.expect_download() as waiting:
        await row.get_by_role("button", name=f"Download the data of {name}").click()
    exported = json.loads(Path(await (await waiting.value).path()).read_text())
    assert exported["account"]["id"] == worker_id
    assert [p["task_id"] for p in exported["photos"]] == [task["id"]]
    await row.get_by_role("button", name=f"Erase {name}").click()
    await expect(console.locator("#status")).to_contain_text(f"{name} was erased: 1 photo deleted")
    erased = console.locator("#people-list tr", has_text="Erased staff member").filter(
        has=console.get_by_role("button", name="Download the data of Erased staff member")
    )
    await expect(erased.first).to_contain_text("erased")
    await expect(console.locator("#people-list")).not_to_contain_text(email)
    # signed out for good, and the task stays with its history
    gone = httpx.get(
        web_server.base + "/v1/me", headers={"Authorization": f"Bearer {worker}"}, timeout=10
    )
    assert gone.status_code == 401
    kept = web_server.request("GET", f"/v1/tasks/{task['id']}", admin)
    assert kept["status"] == "assigned"
    photos = web_server.request("GET", f"/v1/tasks/{task['id']}/photos", admin)
    assert photos == []
    assert await serious_accessibility_violations(console) == []
    assert problems.errors == []
    await context.close()
