"""A field worker's shift in Chromium: off shift the check-in is refused; "Start a shift",
"Pause tracking", "Resume tracking" and "End my shift" change what the server takes; the admin's
"Where now?" (console, People) shows the worker's place during the shift, not while paused.

Ground truth is the API: GET /v1/me/tracking and a ping sent with the worker's own token.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, expect

from tests.live import LiveServer
from tests.web.conftest import new_context, open_page, serious_accessibility_violations
from tests.web.test_field_work import sign_in_app
from tests.web.test_flows import create_place, create_staff, resident_context, sign_in_console

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _ping(server: LiveServer, token: str, lon: float, lat: float) -> int:
    """POST one fix as the worker; the status code (202 taken, 409 off shift)."""
    body: dict[str, Any] = {
        "pings": [
            {
                "id": secrets.token_hex(4),
                "lon": lon,
                "lat": lat,
                "accuracy_m": 10,
                "recorded_at": datetime.now(UTC).isoformat(),
            }
        ]
    }
    r = httpx.post(
        server.base + "/v1/pings", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    return r.status_code


async def test_worker_starts_pauses_resumes_and_ends_a_shift(
    browser: Browser, web_server: LiveServer
) -> None:
    admin = web_server.token(web_server.admin_email, web_server.admin_password)
    at = (-0.141, 51.501)
    depot = f"Green Park depot {secrets.token_hex(2)}"
    create_place(web_server, admin, depot, "depot", at)
    worker_id, email, password = create_staff(web_server, admin, "field_worker")
    name = web_server.request("GET", f"/v1/users/{worker_id}", admin)["full_name"]
    later = datetime.now(UTC) + timedelta(hours=2)
    web_server.request(
        "PUT",
        f"/v1/staff/{worker_id}/shift",
        admin,
        json={
            "start": f"{later:%H:%M}",
            "end": f"{later + timedelta(hours=1):%H:%M}",
            "time_zone": "UTC",
        },
    )
    token = web_server.token(email, password)

    def tracking() -> tuple[bool, str]:
        t = web_server.request("GET", "/v1/me/tracking", token)
        return t["on_shift"], t["reason"]

    context = await resident_context(browser, web_server, at)
    page, problems = await open_page(context, f"/app/?org={web_server.organisation}")
    await sign_in_app(page, email, password)
    card = page.locator("#shift-card")
    await expect(card.locator("#shift-state")).to_contain_text("Off shift")
    # off shift, a check-in is refused and says why
    await page.get_by_role("button", name="Check in here").click()
    await expect(page.locator("#checkin-result")).to_contain_text("not on shift")
    assert _ping(web_server, token, *at) == 409

    await card.get_by_role("button", name="Start a shift").click()
    await expect(card.locator("#shift-state")).to_contain_text("a shift you started")
    await expect(card.get_by_role("button", name="Start a shift")).to_be_hidden()
    assert tracking() == (True, "ad-hoc-shift")
    assert _ping(web_server, token, *at) == 202
    await page.get_by_role("button", name="Check in here").click()
    await expect(page.locator("#checkin-result")).to_contain_text(f"You're at {depot}")

    # the supervisor's view (console, People): the worker's current place during the shift
    t0 = datetime.now(UTC)
    walk_in = {
        "pings": [
            {
                "id": f"in-{i}",
                "lon": at[0],
                "lat": at[1],
                "accuracy_m": 8,
                "recorded_at": (t0 - timedelta(seconds=200 - 40 * i)).isoformat(),
            }
            for i in range(5)
        ]
    }
    web_server.request("POST", "/v1/pings?mode=sync", token, json=walk_in)
    staff_context = await new_context(browser, web_server)
    console, console_problems = await open_page(staff_context, "/console/")
    await sign_in_console(console, web_server.admin_email, web_server.admin_password)
    await console.get_by_role("tab", name="People").click()
    where = console.get_by_role("button", name=f"Where is {name} now?")
    await where.click()
    # the depot (other places of the shared test town may be listed as nearby too)
    await expect(console.locator("#people-result")).to_contain_text(f"{name} is at")
    await expect(console.locator("#people-result")).to_contain_text(depot)

    await card.get_by_role("button", name="Pause tracking").click()
    await expect(card.locator("#shift-state")).to_contain_text("Tracking is paused")
    await expect(page.locator("#tracking-resume")).to_be_focused()
    assert tracking() == (False, "paused")
    assert _ping(web_server, token, *at) == 409

    await where.click()  # paused: the supervisor is not told where the worker is
    await expect(console.locator("#people-result")).to_contain_text(
        f"{name} is off shift or has paused tracking"
    )
    await expect(console.locator("#people-result")).not_to_contain_text(depot)
    assert console_problems.errors == []
    await staff_context.close()

    await card.get_by_role("button", name="Resume tracking").click()
    await expect(card.locator("#shift-state")).to_contain_text("a shift you started")
    assert tracking() == (True, "ad-hoc-shift")

    await card.get_by_role("button", name="End my shift").click()
    await expect(card.locator("#shift-state")).to_contain_text("Off shift")
    assert tracking() == (False, "outside-shift")
    assert _ping(web_server, token, *at) == 409
    # the list shows the shift and the pause, newest first, both over
    items = card.locator("#shift-list li")
    await expect(items).to_have_count(2)
    await expect(items.nth(0)).to_contain_text("Pause")
    await expect(items.nth(1)).to_contain_text("Shift")
    await expect(items).not_to_contain_text(["now", "now"])
    assert await serious_accessibility_violations(page) == []
    assert problems.errors == []
    await context.close()
