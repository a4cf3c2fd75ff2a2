"""Browser fixtures: Debian's Chromium driven by Playwright against a live server.

No browser is downloaded: `/usr/bin/chromium` comes from `scripts/system-deps.sh`. The browser
may only talk to the loopback server: map tiles point at this server (where they 404, which is how
an offline map looks), push subscriptions are stubbed with a loopback endpoint so Chromium never
contacts a real push service, and any request to another host is aborted.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    Route,
    async_playwright,
)

from app.core.cluster import EmbeddedCluster
from app.core.config import PROJECT_ROOT
from app.notifications.vapid import generate_private_key, private_key_pem
from tests.live import LiveServer, live_server

CHROMIUM = os.environ.get("HEREABOUTS_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
]
# Tablet-sized (landscape) for the console, phone-sized for the app.
VIEWPORT = {"width": 1280, "height": 860}
PHONE = {"width": 412, "height": 860}


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    if Path(CHROMIUM).exists() or shutil.which("chromium"):
        return
    if os.environ.get("CI"):
        raise pytest.UsageError(f"{CHROMIUM} is missing: run scripts/system-deps.sh")
    skip = pytest.mark.skip(reason=f"{CHROMIUM} not installed (scripts/system-deps.sh)")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def web_server(pg_cluster: EmbeddedCluster) -> Iterator[LiveServer]:
    with live_server(
        pg_cluster,
        "hereabouts_web",
        # Relative tile URL: served (as 404s) by the live server itself, so the map is exercised
        # exactly as it is on an offline machine, without any traffic leaving loopback.
        extra_env={
            "HEREABOUTS_TILE_URL": "/tiles/{z}/{x}/{y}.png",
            # A key of the test's own, shared with the delivery worker the push test runs.
            "HEREABOUTS_VAPID_PRIVATE_KEY": private_key_pem(generate_private_key()).decode(),
            # the Webhooks tab's receiver is on loopback (tests/web/test_webhooks_tab.py)
            "HEREABOUTS_WEBHOOK_ALLOW_LOOPBACK": "true",
        },
    ) as server:
        yield server


@pytest.fixture(scope="session")
def other_organisation(web_server: LiveServer) -> tuple[str, str, str]:
    """A second organisation on the live server, with its own admin: (email, password, slug)."""
    slug = "shape-town"
    email, password = web_server.create_admin(f"admin@{slug}.example", slug)
    return email, password, slug


@pytest.fixture(scope="session")
async def playwright_instance() -> AsyncIterator[Playwright]:
    async with async_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
async def browser(playwright_instance: Playwright) -> AsyncIterator[Browser]:
    browser = await playwright_instance.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )
    yield browser
    await browser.close()


@dataclass
class PageProblems:
    """Uncaught exceptions and CSP violations seen by a page: a test fails on either."""

    errors: list[str] = field(default_factory=list)

    def on_console(self, msg: ConsoleMessage) -> None:
        if msg.type == "error" and "Content Security Policy" in msg.text:
            self.errors.append(msg.text)

    def on_page_error(self, exc: Any) -> None:
        self.errors.append(str(exc))


async def _loopback_only(route: Route) -> None:
    host = urlsplit(route.request.url).hostname or ""
    if host in ("127.0.0.1", "localhost"):
        await route.continue_()
    else:
        await route.abort("blockedbyclient")


async def new_context(browser: Browser, server: LiveServer, **options: Any) -> BrowserContext:
    options.setdefault("viewport", VIEWPORT)
    context = await browser.new_context(base_url=server.base, **options)
    await context.route("**/*", _loopback_only)
    return context


async def open_page(context: BrowserContext, path: str) -> tuple[Page, PageProblems]:
    page = await context.new_page()
    problems = PageProblems()
    page.on("console", problems.on_console)
    page.on("pageerror", problems.on_page_error)
    await page.goto(path)
    return page, problems


UNLABELLED_CONTROLS = """() => [...document.querySelectorAll('input, select, textarea, button')]
    .filter((el) => el.type !== 'hidden' && el.getClientRects().length)
    .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
        && !(el.tagName === 'BUTTON' && el.textContent.trim()))
    .map((el) => el.outerHTML.slice(0, 120))"""


async def unlabelled_controls(page: Page) -> list[str]:
    """Visible form controls a screen reader could not name."""
    found: list[str] = await page.evaluate(UNLABELLED_CONTROLS)
    return found


async def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=False)
    return path


AXE_RUN = """async () => {
    const result = await axe.run(document, { resultTypes: ["violations"] });
    return result.violations
        .filter((v) => v.impact === "serious" || v.impact === "critical")
        .map((v) => `${v.id} (${v.impact}): ${v.help} at `
            + v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", "));
}"""


async def serious_accessibility_violations(page: Page) -> list[str]:
    """axe-core (vendored, app/web/static/vendor/axe-core) run on the page as it is now:
    its serious and critical violations, each with where it was found."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.add_script_tag(url="/static/vendor/axe-core/axe.min.js")
    found: list[str] = await page.evaluate(AXE_RUN)
    return found


DOCS_SCREENSHOTS = PROJECT_ROOT / "docs" / "screenshots"


async def docs_screenshot(page: Page, name: str) -> Path:
    """A screenshot for the README: into docs/screenshots/ with HEREABOUTS_UPDATE_SCREENSHOTS=1,
    else into test-artifacts/ (so an ordinary test run leaves the checkout clean)."""
    folder = DOCS_SCREENSHOTS if os.environ.get("HEREABOUTS_UPDATE_SCREENSHOTS") else ARTIFACTS
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.png"
    await page.screenshot(path=str(path), full_page=False)
    return path
