"""The resident app at phone widths in Chromium: the privacy notice before "Get started", a
live inbox on push, a sign-out that warns and offers export then erase; nothing wider than
the screen at 320 px."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.live import LiveServer
from tests.web.conftest import docs_screenshot, serious_accessibility_violations
from tests.web.test_flows import (
    LIBRARY,
    _registration_id,
    enqueue_notification,
    resident_context,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

OVERFLOW = """() => [...document.querySelectorAll('body *')]
    .filter((el) => el.getClientRects().length && el.getBoundingClientRect().right > innerWidth + 1)
    .map((el) => el.tagName + '#' + el.id + '.' + el.className).slice(0, 10)"""


async def wider_than_screen(page: Page) -> list[str]:
    found: list[str] = await page.evaluate(OVERFLOW)
    return found


@pytest.mark.parametrize("width", [320, 390])
async def test_resident_reads_the_notice_gets_pushes_live_and_signs_out_safely(
    browser: Browser, web_server: LiveServer, width: int
) -> None:
    context = await resident_context(browser, web_server, LIBRARY)
    await context.set_extra_http_headers({})
    page = await context.new_page()
    await page.set_viewport_size({"width": width, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"/app/?org={web_server.organisation}")

    # The notice comes before "Get started", with the full notice one link away.
    summary = page.locator("#privacy-summary")
    await expect(summary).to_contain_text("No name, email or phone number")
    assert (
        await page.get_by_role("button", name="Get started").get_attribute("aria-describedby")
        == "privacy-summary"
    )
    assert await wider_than_screen(page) == []
    assert await serious_accessibility_violations(page) == []
    if width == 320:
        await docs_screenshot(page, "app-welcome-320")
    await summary.get_by_role("link", name="Read the full privacy notice").click()
    await expect(page.get_by_role("heading", name="Privacy notice")).to_be_visible()
    await expect(page.locator("main")).to_contain_text("Signing out throws away the key")
    assert await wider_than_screen(page) == []
    assert await serious_accessibility_violations(page) == []
    await page.go_back()

    await page.get_by_role("button", name="Get started").click()
    await expect(page.locator("#inbox")).to_contain_text("Nothing yet.")
    await expect(page.locator("#checkin-title")).to_be_focused()
    await expect(page.locator("#prefs-form")).to_be_visible()
    assert await wider_than_screen(page) == []
    token = await page.evaluate("localStorage.getItem('hereabouts.app.token')")
    me = web_server.request("GET", "/v1/me", token)

    # A push arrives (notifications not even allowed): the open inbox shows it, no Refresh.
    cdp, registration_id = await _registration_id(context, page)
    payload = await asyncio.to_thread(enqueue_notification, web_server, token)
    await cdp.send(
        "ServiceWorker.deliverPushMessage",
        {"origin": web_server.base, "registrationId": registration_id, "data": json.dumps(payload)},
    )
    await expect(page.locator("#inbox")).to_contain_text(payload["title"], timeout=5000)
    assert await serious_accessibility_violations(page) == []
    if width == 390:
        await page.evaluate("document.getElementById('inbox-title').scrollIntoView()")
        await docs_screenshot(page, "app-home-390")

    # Sign out warns first and offers the download, then the erasure.
    await page.get_by_role("button", name="Sign out").click()
    card = page.locator("#signout-card")
    await expect(card).to_contain_text("only key to your data")
    await expect(page.locator("#signout-title")).to_be_focused()
    assert await serious_accessibility_violations(page) == []
    async with page.expect_download() as download_info:
        await card.get_by_role("button", name="Download my data").click()
    download = await download_info.value
    exported: dict[str, Any] = json.loads(Path(await download.path()).read_text())
    assert exported["device"]["id"] == me["id"]
    assert any(n["title"] == payload["title"] for n in exported["notifications"])

    async def accept(dialog: Any) -> None:
        await dialog.accept()

    page.on("dialog", accept)
    await card.get_by_role("button", name="Delete my data and sign out").click()
    await expect(page.locator("#welcome")).to_be_visible()
    await expect(page.locator("#status")).to_contain_text("has been deleted")
    gone = httpx.get(web_server.base + "/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert gone.status_code == 401
    assert errors == []
    await context.close()


async def test_the_accessibility_check_finds_what_it_should(
    browser: Browser, web_server: LiveServer
) -> None:
    """The check can fail: a button without a name and an image without alt text are found."""
    context = await resident_context(browser, web_server, LIBRARY)
    page = await context.new_page()
    await page.goto(f"/app/?org={web_server.organisation}")
    await expect(page.get_by_role("button", name="Get started")).to_be_visible()
    assert await serious_accessibility_violations(page) == []
    await page.evaluate(
        """() => {
            const b = document.createElement("button");
            document.querySelector("#welcome").append(b, document.createElement("img"));
        }"""
    )
    found = await serious_accessibility_violations(page)
    assert any(v.startswith("button-name (critical)") for v in found), found
    assert any(v.startswith("image-alt (critical)") for v in found), found
    await context.close()
