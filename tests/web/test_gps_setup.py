"""The GPS app setup screen in Chromium: a resident (app) and a field worker (console) pick an
app, get its setup link and a QR code that decodes to exactly that link, the link configures a
working connection, and revoking the key in the same screen refuses the app at once.

The QR code is decoded from the pixels Chromium shows (zxing-cpp on the element's screenshot),
so the test checks what a phone camera would read, not the server's own data.
"""

from __future__ import annotations

import base64
import io
import json
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest
import zxingcpp
from PIL import Image
from playwright.async_api import Browser, Page, expect

from tests.ingest.helpers import owntracks_location, traccar_params
from tests.ingest.helpers import walk as a_walk
from tests.live import LiveServer
from tests.web.conftest import (
    docs_screenshot,
    new_context,
    open_page,
    serious_accessibility_violations,
    unlabelled_controls,
)
from tests.web.test_field_work import sign_in_app
from tests.web.test_flows import create_staff, resident_context, sign_in_console

pytestmark = [pytest.mark.browser, pytest.mark.slow]


async def decoded_qr(page: Page) -> str:
    """The text of the QR code the page shows, read from its rendered pixels."""
    png = await page.locator("#gps-qr").screenshot()
    # QR codes only, as a phone's QR scanner reads: decoding every format once also read a
    # one-dimensional ITF code ('9439') in the QR code's own modules
    found = zxingcpp.read_barcodes(
        Image.open(io.BytesIO(png)).convert("L"),
        formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode),
    )
    # one full run got two results from a page showing one code: every result must read the
    # same link (what a camera would read), and two different codes still fail
    codes = {(f.format, f.text) for f in found}
    assert len(codes) == 1, f"{len(codes)} different codes found: {codes}"
    ((kind, text),) = codes
    assert kind == zxingcpp.BarcodeFormat.QRCode
    return str(text)


async def test_resident_sets_up_owntracks_scans_the_code_and_revokes_it(
    browser: Browser, web_server: LiveServer
) -> None:
    context = await resident_context(browser, web_server, (-0.13, 51.5))
    page, problems = await open_page(context, f"/app/?org={web_server.organisation}")
    await page.get_by_role("button", name="Get started").click()
    card = page.locator("#gps-card")
    await expect(card.get_by_role("heading", name="Track with a GPS app")).to_be_visible()
    await expect(card.locator("#gps-keys")).to_contain_text("None yet.")
    await card.get_by_label("OwnTracks (iPhone and Android)").check()
    await card.get_by_label("Name of the phone (optional)").fill("Sam's Pixel")
    await card.get_by_role("button", name="Create setup link").click()
    await expect(card.get_by_role("heading", name="Set up OwnTracks")).to_be_focused()

    link = await card.get_by_role("link", name="Open in OwnTracks").get_attribute("href")
    assert link is not None
    assert link.startswith("owntracks:///config?inline=")
    assert await card.get_by_label("The setup link").input_value() == link
    assert await decoded_qr(page) == link  # what the camera reads is exactly the link
    config = json.loads(base64.b64decode(unquote(link.split("inline=", 1)[1]), validate=True))
    assert config["url"] == web_server.base + "/v1/ingest/owntracks"
    assert (config["mode"], config["auth"], config["cmd"]) == (3, True, True)
    otrc = card.get_by_role("link", name="Download the configuration file (.otrc)")
    await expect(otrc).to_have_attribute("download", "hereabouts.otrc")
    await expect(card.locator("#gps-keys")).to_contain_text("Sam's Pixel")
    assert await unlabelled_controls(page) == []
    assert await serious_accessibility_violations(page) == []
    await docs_screenshot(page, "app-gps-setup-390")

    # the configuration works: OwnTracks' post with it is accepted (background sharing on)
    token = await page.evaluate("localStorage.getItem('hereabouts.app.token')")
    auth = {"Authorization": f"Bearer {token}"}
    httpx.put(web_server.base + "/v1/me/background-location", json={"enabled": True}, headers=auth)
    creds = (config["username"], config["password"])
    fix = owntracks_location(a_walk(1)[0])
    r = httpx.post(config["url"], json=fix, auth=creds)
    assert r.status_code == 200, r.text

    await card.get_by_role("button", name="Revoke Sam's Pixel").click()
    await expect(page.locator("#status")).to_contain_text("can no longer send your location")
    await expect(card.locator("#gps-result")).to_be_hidden()
    await expect(card.locator("#gps-keys")).to_contain_text("None yet.")
    r = httpx.post(config["url"], json=fix, auth=creds)
    assert r.status_code == 401  # refused at once
    assert problems.errors == []
    await context.close()


async def test_field_worker_shows_the_traccar_code_in_the_console_and_in_the_app(
    browser: Browser, web_server: LiveServer
) -> None:
    admin = web_server.token(web_server.admin_email, web_server.admin_password)
    _, email, password = create_staff(web_server, admin, "field_worker")
    context = await new_context(browser, web_server)
    page, problems = await open_page(context, "/console/")
    await sign_in_console(page, email, password)
    await page.get_by_role("tab", name="My GPS app").click()
    panel = page.locator("#panel-gps")
    await panel.get_by_label("Traccar Client (Android and iPhone)").check()
    await panel.get_by_role("button", name="Create setup link").click()
    link = await panel.get_by_role("link", name="Open in Traccar Client").get_attribute("href")
    assert link is not None
    assert await decoded_qr(page) == link
    parts = urlsplit(link)
    query = {k: v[0] for k, v in parse_qs(parts.query, strict_parsing=True).items()}
    assert (parts.scheme, parts.netloc) == ("org.traccar.client", "setup")
    assert query["url"] == web_server.base + "/v1/ingest/traccar"
    await panel.get_by_text("Enter it in the app by hand").click()
    await expect(panel.locator("#gps-settings")).to_contain_text(query["id"])
    assert await serious_accessibility_violations(page) == []
    await docs_screenshot(page, "console-gps-setup")

    # Traccar Client configured so sends a fix: stored
    fix = a_walk(1)[0]
    r = httpx.get(query["url"], params=traccar_params(query["id"], fix))
    assert (r.status_code, r.json()["accepted"]) == (200, 1)
    assert problems.errors == []

    # the same field worker in the app sees the key, and revokes it there
    phone = await new_context(browser, web_server, viewport={"width": 390, "height": 844})
    app_page, app_problems = await open_page(phone, "/app/")
    await sign_in_app(app_page, email, password)
    keys = app_page.locator("#gps-keys")
    await expect(keys).to_contain_text("Traccar Client")
    await keys.get_by_role("button", name="Revoke Traccar Client").click()
    await expect(keys).to_contain_text("None yet.")
    r = httpx.get(query["url"], params=traccar_params(query["id"], fix))
    assert r.status_code == 401
    assert app_problems.errors == []
    await phone.close()
    await context.close()


async def test_a_refused_request_is_shown_and_creates_nothing(
    browser: Browser, web_server: LiveServer
) -> None:
    context = await resident_context(browser, web_server, (-0.13, 51.5))
    page, _ = await open_page(context, f"/app/?org={web_server.organisation}")
    await page.get_by_role("button", name="Get started").click()
    card = page.locator("#gps-card")
    # a name over the limit, past the field's maxlength (as a script or old browser could send)
    await card.get_by_label("Name of the phone (optional)").evaluate(
        "(el) => { el.removeAttribute('maxlength'); el.value = 'x'.repeat(101); }"
    )
    await card.get_by_role("button", name="Create setup link").click()
    await expect(card.locator("#gps-error")).not_to_be_empty()
    await expect(card.locator("#gps-result")).to_be_hidden()
    await expect(card.locator("#gps-keys")).to_contain_text("None yet.")
    await context.close()


async def test_staff_without_location_get_no_gps_card(
    browser: Browser, web_server: LiveServer
) -> None:
    admin = web_server.token(web_server.admin_email, web_server.admin_password)
    _, email, password = create_staff(web_server, admin, "editor")
    context = await new_context(browser, web_server, viewport={"width": 390, "height": 844})
    page, problems = await open_page(context, f"/app/?org={web_server.organisation}")
    await sign_in_app(page, email, password)
    await expect(page.locator("#home")).to_be_visible()
    await expect(page.locator("#inbox-title")).to_be_visible()
    await page.wait_for_load_state("networkidle")
    await expect(page.locator("#gps-card")).to_be_hidden()  # their ingest keys are refused (403)
    await expect(page.locator("#status")).not_to_contain_text("field workers and resident")
    assert problems.errors == []
    await context.close()
