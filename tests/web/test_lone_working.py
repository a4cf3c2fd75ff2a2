"""Lone working in Chromium: the field worker's "I need help" in the app, the alert in the
console (banner, Alerts tab, last known place) and its acknowledgement; the prompt's
"Tap to extend" link extending the visit.

Ground truth is the API (the worker's visits, the alerts, the audit log).
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

import pytest
from playwright.async_api import Browser, Dialog, expect

from tests.live import LiveServer
from tests.web.conftest import new_context, open_page, serious_accessibility_violations
from tests.web.test_field_work import sign_in_app
from tests.web.test_flows import create_place, create_staff, resident_context, sign_in_console

pytestmark = [pytest.mark.browser, pytest.mark.slow]


async def test_i_need_help_reaches_the_console_and_is_acknowledged_and_the_prompt_link_extends(
    browser: Browser, web_server: LiveServer
) -> None:
    admin = web_server.token(web_server.admin_email, web_server.admin_password)
    at = (-0.128, 51.507)
    park = f"Embankment Gardens {secrets.token_hex(2)}"
    place_id = create_place(web_server, admin, park, "park", at)
    worker_id, w_email, w_password = create_staff(web_server, admin, "field_worker")
    editor_id, e_email, e_password = create_staff(web_server, admin, "editor")
    web_server.request(
        "PUT",
        "/v1/safety/on-call",
        admin,
        json={"contacts": [{"staff_id": editor_id, "rank": 1}]},
    )
    web_server.request(
        "POST",
        "/v1/tasks",
        admin,
        json={
            "title": f"Check the fountain {secrets.token_hex(2)}",
            "geofence_id": place_id,
            "assignee_ids": [worker_id],
            "expected_duration_min": 25,
        },
    )
    worker_token = web_server.token(w_email, w_password)

    # the worker checks in: the app shows the visit and its end
    context = await resident_context(browser, web_server, at)
    page, problems = await open_page(context, f"/app/?org={web_server.organisation}")
    await sign_in_app(page, w_email, w_password)
    await expect(page.locator("#safety-card")).to_be_visible()
    await expect(page.locator("#visit-state")).to_contain_text("Not on a visit.")
    await page.get_by_role("button", name="Check in here").click()
    await expect(page.locator("#checkin-result")).to_contain_text(f"You're at {park}")
    [visit] = web_server.request("GET", "/v1/me/visits", worker_token)
    assert visit["expected_min"] == 25
    await expect(page.locator("#visit-state")).to_contain_text(f"At {park} until")
    assert await serious_accessibility_violations(page) == []

    # the prompt's link (what tapping "Are you OK? Tap to extend" opens) extends the visit
    due = datetime.fromisoformat(visit["due_at"])
    await page.goto(f"/app/#extend={visit['id']}")
    await expect(page.locator("#status")).to_contain_text("Your visit now ends at")
    [after] = web_server.request("GET", "/v1/me/visits", worker_token)
    assert after["extended_count"] == 1
    assert datetime.fromisoformat(after["due_at"]) == due + timedelta(minutes=30)
    assert "#extend" not in page.url  # the link is used once, not again on reload

    # the tap on the notification itself: the service worker extends, even with the app closed
    [sw] = [w for w in context.service_workers if w.url.endswith("/app/sw.js")]
    await sw.evaluate(
        """async (visit) => {
            const url = `/app/#extend=${visit}`;
            const n = { data: { id: null, kind: "safety.prompt", visit, url }, close() {} };
            await self.hereaboutsOpenNotification(n);
        }""",
        visit["id"],
    )
    [again] = web_server.request("GET", "/v1/me/visits", worker_token)
    assert again["extended_count"] == 2
    assert datetime.fromisoformat(again["due_at"]) == due + timedelta(minutes=60)

    # "I need help": one tap, an alert at once with the position
    await page.get_by_role("button", name="I need help").click()
    await expect(page.locator("#status")).to_contain_text("Help alert sent")
    [alert] = web_server.request("GET", "/v1/safety/alerts", admin)
    assert (alert["kind"], alert["worker_id"], alert["place_name"]) == ("help", worker_id, park)
    assert abs(alert["last_lon"] - at[0]) < 1e-5
    assert abs(alert["last_lat"] - at[1]) < 1e-5
    assert problems.errors == []

    # the on-call editor's console: a banner over every tab, the Alerts tab, acknowledge
    console_ctx = await new_context(browser, web_server)
    console, console_problems = await open_page(console_ctx, "/console/")
    await sign_in_console(console, e_email, e_password)
    banner = console.locator("#alerts-banner")
    await expect(banner).to_be_visible()
    await expect(banner).to_contain_text("needs help")
    await expect(banner).to_contain_text(park)
    await banner.get_by_role("button", name="Show alerts").click()
    await expect(console.locator("#panel-alerts")).to_be_visible()
    row = console.locator(f"#alert-list tr[data-alert='{alert['id']}']")
    await expect(row).to_contain_text("I need help")
    await expect(row).to_contain_text(park)
    assert await serious_accessibility_violations(console) == []

    async def answer(dialog: Dialog) -> None:
        await dialog.accept("On my way, ETA 10 min")

    console.once("dialog", answer)
    await row.get_by_role("button", name="Acknowledge").click()
    await expect(console.locator("#alert-status")).to_contain_text("Acknowledged at")
    await expect(row).to_have_count(0)
    await expect(banner).to_be_hidden()
    done = web_server.request("GET", f"/v1/safety/alerts/{alert['id']}", admin)
    assert done["acknowledged_by"] == editor_id
    assert done["ack_note"] == "On my way, ETA 10 min"
    audit = web_server.request("GET", "/v1/audit?entity_type=safety_alert", admin)["items"]
    acks = [e for e in audit if e["action"] == "safety.alert.acknowledge"]
    assert [(e["actor_id"], e["entity_id"]) for e in acks] == [(editor_id, alert["id"])]
    assert console_problems.errors == []
    await context.close()
    await console_ctx.close()
