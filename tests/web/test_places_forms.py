"""The place form in Chromium: every property the API stores, category defaults, a refused
self-intersecting corner said at the corner, API errors in the form's own words."""

from __future__ import annotations

import secrets

import pytest
from playwright.async_api import Browser, Page, expect

from tests.live import LiveServer
from tests.web.conftest import new_context, open_page, serious_accessibility_violations
from tests.web.test_flows import create_place, create_staff, sign_in_console

pytestmark = [pytest.mark.browser, pytest.mark.slow]


async def draw(page: Page, corners: list[tuple[float, float]], close: bool = True) -> None:
    await page.get_by_role("button", name="Draw polygon").click()
    for x, y in corners:
        await page.mouse.move(x, y)
        await page.mouse.click(x, y)
    if close:
        await page.mouse.click(*corners[0])


async def map_centre(page: Page) -> tuple[float, float]:
    box = await page.locator("#map").bounding_box()
    assert box is not None
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


async def test_place_form_sets_hours_dates_dwell_and_trigger_with_category_defaults(
    browser: Browser, web_server: LiveServer
) -> None:
    admin = web_server.token(web_server.admin_email, web_server.admin_password)
    depot = f"Old Depot {secrets.token_hex(2)}"
    create_place(web_server, admin, depot, "depot", (-0.2, 51.4))
    _, email, password = create_staff(web_server, admin, "editor")
    context = await new_context(browser, web_server)
    page, problems = await open_page(context, "/console/")
    await sign_in_console(page, email, password)

    # A corner inside an existing place adds a corner: it does not open that place's form.
    await page.locator("#place-list li", has_text=depot).get_by_role("button", name="Show").click()
    cx, cy = await map_centre(page)  # the depot fills the middle of the map
    await draw(page, [(cx, cy)], close=False)
    await expect(page.locator("#place-form")).to_be_hidden()
    await page.locator("#map").press("Escape")

    # A bow-tie: the fourth corner would cross the first edge. It is refused, at the corner.
    await draw(
        page,
        [(cx - 120, cy - 90), (cx + 120, cy + 90), (cx + 120, cy - 90), (cx - 120, cy + 90)],
        close=False,
    )
    warning = page.locator(".intersect-warning")
    await expect(warning).to_contain_text("cross itself")
    await expect(page.locator("#status")).to_contain_text("cross itself")
    await page.locator("#map").press("Escape")
    await expect(warning).to_have_count(0)
    await expect(page.locator("#place-form")).to_be_hidden()

    # Editing the depot, then drawing a new place: the new form does not keep "depot".
    await page.locator("#place-list li", has_text=depot).get_by_role("button", name="Edit").click()
    form = page.locator("#place-form")
    await expect(form.get_by_label("Category", exact=True)).to_have_value("depot")
    await form.get_by_role("button", name="Cancel").click()
    square = [(cx - 120, cy - 90), (cx + 120, cy - 90), (cx + 120, cy + 90), (cx - 120, cy + 90)]
    await draw(page, square)
    await expect(form).to_be_visible()
    await expect(form.get_by_label("Category", exact=True)).to_have_value("library")
    # library defaults: opening hours on weekdays and Saturday, ten minutes' dwell
    await expect(form.get_by_label("Always open")).not_to_be_checked()
    await expect(form.get_by_label("Monday")).to_have_value("09:00-17:00")
    await expect(form.get_by_label("Sunday")).to_have_value("")
    await expect(form.get_by_label("Dwell time (minutes)")).to_have_value("10")
    assert await serious_accessibility_violations(page) == []
    category = form.get_by_label("Category", exact=True)
    await category.fill("park")
    await category.dispatch_event("change")
    await expect(form.get_by_label("Always open")).to_be_checked()
    await expect(form.get_by_label("Monday")).to_be_hidden()
    await expect(form.get_by_label("Trigger distance (m)")).to_have_attribute(
        "placeholder", "100 (default)"
    )
    await category.fill("library")
    await category.dispatch_event("change")

    name = f"Branch Library {secrets.token_hex(2)}"
    await form.get_by_label("Name", exact=True).fill(name)
    await form.get_by_label("Saturday").fill("10:00-12:30, 13:30-16:00")
    await form.get_by_label("Closed on (dates)").fill("2026-12-25, 2026-12-26")
    await form.get_by_label("Trigger distance (m)").fill("60")
    await form.get_by_label("Dwell time (minutes)").fill("15")
    await form.get_by_label("Active from").fill("2026-01-05T08:00")
    await form.get_by_label("Active until").fill("2031-07-31T18:00")

    # Words of the form: a client-side format error names the day...
    await form.get_by_label("Monday").fill("9am")
    await form.get_by_role("button", name="Save place").click()
    await expect(page.locator("#place-error")).to_contain_text("Monday: “9am” is not a time range")
    # ...and the API's errors name the form's labels, not its field paths.
    await form.get_by_label("Monday").fill("09:00-17:00")
    await form.get_by_label("Time zone").fill("Europe/Nowhere")
    await form.get_by_role("button", name="Save place").click()
    error = page.locator("#place-error")
    await expect(error).to_contain_text("Time zone:")
    await expect(error).not_to_contain_text("time_zone")
    await form.get_by_label("Time zone").fill("Europe/London")
    await form.get_by_role("button", name="Save place").click()
    await expect(page.locator("#place-list")).to_contain_text(name)
    await expect(form).to_be_hidden()

    places = web_server.request("GET", "/v1/geofences?limit=500", admin)["items"]
    props = next(p for p in places if p["properties"]["name"] == name)["properties"]
    assert props["category"] == "library"
    assert props["trigger_distance_m"] == 60
    assert props["dwell_s"] == 900
    hours = props["opening_hours"]
    assert hours["time_zone"] == "Europe/London"
    assert hours["weekly"]["mon"] == [["09:00", "17:00"]]
    assert hours["weekly"]["sat"] == [["10:00", "12:30"], ["13:30", "16:00"]]
    assert "sun" not in hours["weekly"]
    assert hours["closed_dates"] == ["2026-12-25", "2026-12-26"]
    assert props["active_from"].startswith("2026-01-05")
    assert props["active_until"].startswith("2031-07-31")

    # Editing shows what is stored; switching to "always open" clears the hours.
    await page.locator("#place-list li", has_text=name).get_by_role("button", name="Edit").click()
    await expect(form.get_by_label("Saturday")).to_have_value("10:00-12:30, 13:30-16:00")
    await expect(form.get_by_label("Dwell time (minutes)")).to_have_value("15")
    await form.get_by_label("Always open").check()
    await form.get_by_role("button", name="Save place").click()
    await expect(form).to_be_hidden()
    places = web_server.request("GET", "/v1/geofences?limit=500", admin)["items"]
    props = next(p for p in places if p["properties"]["name"] == name)["properties"]
    assert props["opening_hours"] is None
    assert problems.errors == []
    await context.close()
