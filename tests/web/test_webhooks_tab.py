"""The console's Webhooks tab in real Chromium: an admin adds an endpoint (its secret shown once),
sends a test that a real receiver verifies with `standardwebhooks`, reads the delivery log,
replays a message (same webhook-id), and sees the banner when a 410 disables the endpoint."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, expect
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.config import Environment, Settings
from app.webhooks.worker import WebhookWorker
from tests.live import LiveServer, create_admin
from tests.web.conftest import new_context, open_page, screenshot, unlabelled_controls
from tests.webhooks.conftest import Receiver

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def hooks_server(web_server: LiveServer) -> LiveServer:
    """The suite's web server (it allows loopback receivers), as the admin of an organisation
    of this module's own: no other organisation there has a webhook endpoint."""
    admin = ("admin@hook-town.example", "hook-admin-password")
    create_admin(web_server.env["HEREABOUTS_DATABASE_URL"], admin[0], "hook-town", admin[1])
    return LiveServer(
        base=web_server.base,
        admin_email=admin[0],
        admin_password=admin[1],
        organisation="hook-town",
        env=web_server.env,
    )


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.stop()


@pytest.fixture
async def worker(hooks_server: LiveServer) -> AsyncIterator[WebhookWorker]:
    settings = Settings(
        environment=Environment.test,
        database_url=hooks_server.env["HEREABOUTS_DATABASE_URL"],
        webhook_allow_loopback=True,
        webhook_poll_interval_s=0.1,
        log_json=False,
    )
    engine = create_async_engine(str(settings.database_url))
    w = WebhookWorker(settings, engine)
    task = asyncio.create_task(w.run())
    yield w
    w.stop()
    await task
    await engine.dispose()


async def wait_until(check: object, guard_s: float = 30) -> None:
    async with asyncio.timeout(guard_s):
        while not check():  # type: ignore[operator]
            await asyncio.sleep(0.1)


async def test_admin_adds_tests_reads_the_log_replays_and_sees_a_disabled_endpoint(
    browser: Browser, hooks_server: LiveServer, receiver: Receiver, worker: WebhookWorker
) -> None:
    context = await new_context(browser, hooks_server)
    page, problems = await open_page(context, "/console/")
    login = page.locator("#login-form")  # the People tab has an Email field too
    await login.get_by_label("Email").fill(hooks_server.admin_email)
    await login.get_by_label("Password").fill(hooks_server.admin_password)
    await login.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#workspace")).to_be_visible()
    tab = page.get_by_role("tab", name="Webhooks")
    await expect(tab).to_be_visible()
    await tab.click()
    panel = page.locator("#panel-webhooks")
    await panel.get_by_label("HTTPS URL").fill(receiver.url("console"))
    await panel.get_by_label("Description").fill("Case management")
    await panel.get_by_role("button", name="Add endpoint").click()
    secret = page.locator("#webhook-secret")
    await expect(secret).to_contain_text("whsec_")
    receiver.routes["console"].secret = (await secret.text_content() or "").strip()
    row = page.locator("#webhook-list tr", has_text=receiver.url("console"))
    await expect(row).to_contain_text("enabled")
    assert await unlabelled_controls(page) == []

    # a test message, verified by the receiver with the secret the page showed once
    await row.get_by_role("button", name="Send test").click()
    route = receiver.routes["console"]
    await wait_until(lambda: len(route.received) == 1)
    assert route.received[0]["body"]["type"] == "webhook.test"
    assert route.bad_signatures == 0
    await row.get_by_role("button", name="Log").click()
    log = page.locator("#webhook-attempts")
    await expect(log).to_contain_text("delivered")
    await expect(log).to_contain_text("200")
    await screenshot(page, "console-webhooks")

    # replay from the log: the same webhook-id arrives again
    await log.get_by_role("button", name="Replay").first.click()
    await wait_until(lambda: len(route.received) == 2)
    assert route.received[1]["id"] == route.received[0]["id"]

    # the receiver says 410: the endpoint is disabled and a banner says so
    route.answers = [410]
    await row.get_by_role("button", name="Send test").click()
    await wait_until(lambda: route.requests == 3)
    banner = page.locator("#webhooks-banner")

    async def disabled_shown() -> bool:
        await tab.click()
        await asyncio.sleep(0.3)
        return await banner.is_visible()

    async with asyncio.timeout(30):
        while not await disabled_shown():
            await asyncio.sleep(0.3)
    await expect(banner).to_contain_text("410")
    await expect(row).to_contain_text("disabled")
    await row.get_by_role("button", name="Enable").click()
    await expect(banner).to_be_hidden()
    await expect(row).to_contain_text("enabled")
    assert problems.errors == []
    await context.close()
