"""The console's Reports tab (Open311) in a real headless Chromium: an admin sets up a report
type and an api key for a reporting app, and the app's report shows up with its reporter."""

from __future__ import annotations

import asyncio
import secrets

import httpx
import pytest
from playwright.async_api import Browser, expect

from tests.live import LiveServer
from tests.web.conftest import new_context, open_page, screenshot, unlabelled_controls
from tests.web.test_flows import sign_in_console

pytestmark = [pytest.mark.browser, pytest.mark.slow]


async def test_admin_sets_up_a_report_type_and_a_key_and_sees_the_report(
    browser: Browser, web_server: LiveServer
) -> None:
    context = await new_context(browser, web_server)
    page, problems = await open_page(context, "/console/")
    await sign_in_console(page, web_server.admin_email, web_server.admin_password)
    await page.get_by_role("tab", name="Reports").click()
    panel = page.get_by_role("tabpanel", name="Reports")
    await expect(panel).to_be_visible()
    await expect(page.locator("#o311-endpoint")).to_contain_text("/open311/v2")
    assert await unlabelled_controls(page) == []

    code = f"fly-tipping-{secrets.token_hex(2)}"
    form = page.locator("#o311-service-form")
    await form.get_by_label("Code").fill(code)
    await form.get_by_label("Name", exact=True).fill("Fly-tipping")
    await form.get_by_label("Put reports at places of these categories").fill("park")
    await form.get_by_label("Task title").fill("Clear fly-tipping")
    await form.get_by_label("Priority").select_option("high")
    await form.get_by_label("Due within (hours)").fill("24")
    await form.get_by_role("button", name="Save report type").click()
    row = page.locator("#o311-service-list tr", has_text=code)
    await expect(row).to_contain_text("park within 50 m")

    await page.get_by_label("New api key for").fill("FixMyTown")
    await page.get_by_label("Requests a minute").fill("30")
    await page.get_by_role("button", name="Issue key").click()
    shown = page.locator("#o311-new-key")
    await expect(shown).to_contain_text("o311_")
    key = (await shown.inner_text()).rsplit(" ", 1)[-1]
    await expect(page.locator("#o311-key-list")).to_contain_text("FixMyTown")

    admin = web_server.token(web_server.admin_email, web_server.admin_password)
    svc = web_server.request("GET", f"/v1/open311/services/{code}", admin)
    assert svc["task"] == {
        "title": "Clear fly-tipping",
        "priority": "high",
        "due_in_s": 86400,
        "requires_visit": False,
        "assignee_ids": [],
    }

    posted = await asyncio.to_thread(
        httpx.post,
        f"{web_server.base}/open311/v2/requests.json",
        data={
            "jurisdiction_id": web_server.organisation,
            "api_key": key,
            "service_code": code,
            "lat": 51.5074,
            "long": -0.1378,
            "description": "Mattress by the gate",
            "email": "reporter@example.net",
        },
    )
    assert posted.status_code == 200, posted.text
    await page.get_by_role("tab", name="Tasks").click()
    await page.get_by_role("tab", name="Reports").click()
    report_row = page.locator("#o311-report-list tr", has_text="Mattress by the gate")
    await expect(report_row).to_contain_text("reporter@example.net")
    await expect(report_row).to_contain_text("open")
    await screenshot(page, "console-reports")
    assert problems.errors == []
    await context.close()
