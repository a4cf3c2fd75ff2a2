"""The console's Reports tab (Open311) in a real headless Chromium: an admin sets up a report
type and an api key for a reporting app, and the app's report shows up with its reporter."""

from __future__ import annotations

import asyncio
import secrets

import httpx
import pytest
import xmltodict
from georeport import GeoReport
from playwright.async_api import Browser, expect

from tests.live import LiveServer
from tests.web.conftest import new_context, open_page, screenshot, unlabelled_controls
from tests.web.test_flows import create_staff, resident_context, sign_in_console

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
        "expected_duration_min": None,
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


async def test_a_field_worker_closes_the_report_in_the_app_and_the_client_sees_it(
    browser: Browser, web_server: LiveServer
) -> None:
    """A reporting app posts; the named team's field worker starts and completes the task in
    the resident / field-worker app; the `georeport` client then reads the report as closed."""
    admin = web_server.token(web_server.admin_email, web_server.admin_password)
    worker_id, email, password = create_staff(web_server, admin, "field_worker")
    code = f"graffiti-{secrets.token_hex(2)}"
    web_server.request(
        "POST",
        "/v1/open311/services",
        admin,
        json={
            "code": code,
            "name": "Graffiti",
            "task": {"title": f"Remove graffiti {code}", "assignee_ids": [worker_id]},
        },
    )
    key = web_server.request("POST", "/v1/open311/keys", admin, json={"label": "App"})["key"]
    root = f"{web_server.base}/open311/v2"
    at = (-0.09, 51.47)
    posted = await asyncio.to_thread(
        httpx.post,
        f"{root}/requests.xml",
        data={
            "jurisdiction_id": web_server.organisation,
            "api_key": key,
            "service_code": code,
            "lat": at[1],
            "long": at[0],
            "description": "Tags on the bus shelter",
        },
    )
    assert posted.status_code == 200, posted.text
    rid = xmltodict.parse(posted.content)["service_requests"]["request"]["service_request_id"]

    context = await resident_context(browser, web_server, at)
    page, problems = await open_page(context, f"/app/?org={web_server.organisation}")
    await page.get_by_text("Council field worker? Sign in").click()
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    item = page.locator("#task-list li", has_text=f"Remove graffiti {code}")
    await expect(item).to_be_visible()
    await item.get_by_role("button", name="Start").click()
    await expect(item).to_contain_text("in progress")
    await item.get_by_role("button", name="Complete").click()
    await item.get_by_role("button", name="Mark done").click()  # the completion form
    await expect(item.locator(".badge.done")).to_be_visible()  # not the form's "Mark done"
    assert problems.errors == []
    await context.close()

    web_server.request("PUT", "/v1/open311/settings", admin, json={"public_read": True})
    for fmt in ("json", "xml"):
        client = GeoReport(root, jurisdiction=web_server.organisation, output_format=fmt)
        seen = await asyncio.to_thread(client.get_service_request, rid)
        assert seen["status"] == "closed", fmt
        assert seen["description"] == "Tags on the bus shelter"
