"""Admins manage people and read the audit log in Chromium; a field worker's console is
read-only; a role change or deactivation signs the person out at their next action."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from tests.live import LiveServer
from tests.web.conftest import (
    new_context,
    open_page,
    screenshot,
    serious_accessibility_violations,
)
from tests.web.test_flows import create_place, sign_in_console

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def accept_dialogs(page: Page) -> None:
    async def accept(dialog: Any) -> None:
        await dialog.accept()

    page.on("dialog", accept)


async def test_admin_invites_changes_role_deactivates_and_resets_with_an_audit_trail(
    browser: Browser, web_server: LiveServer
) -> None:
    admin_token = web_server.token(web_server.admin_email, web_server.admin_password)
    place = f"Town Hall {secrets.token_hex(2)}"
    create_place(web_server, admin_token, place, "council_office", (-0.14, 51.5))
    admin_context = await new_context(browser, web_server)
    console, problems = await open_page(admin_context, "/console/")
    accept_dialogs(console)
    await sign_in_console(console, web_server.admin_email, web_server.admin_password)
    await console.get_by_role("tab", name="People").click()
    name = f"Fay Worker {secrets.token_hex(2)}"
    email = f"fay-{secrets.token_hex(3)}@live-town.example"
    invite = console.locator("#invite-form")
    await invite.get_by_label("Full name").fill(name)
    await invite.get_by_label("Email").fill(email)
    await invite.get_by_label("Role").select_option("field_worker")
    await invite.get_by_role("button", name="Invite").click()
    secret = console.locator(".secret-value")
    await expect(secret).to_be_visible()
    password = await secret.text_content()
    assert password
    row = console.locator("#people-list tr", has_text=name)
    await expect(row).to_contain_text("active")

    # The field worker's console is read-only: no drawing, editing or deleting, no admin tabs.
    worker_context = await new_context(browser, web_server)
    worker, worker_problems = await open_page(worker_context, "/console/")
    await sign_in_console(worker, email, password)
    await expect(worker.locator("#place-list")).to_contain_text(place)
    await expect(worker.get_by_role("button", name="Draw polygon")).to_be_hidden()
    await expect(worker.locator("#place-list").get_by_role("button", name="Edit")).to_have_count(0)
    await expect(worker.locator("#place-list").get_by_role("button", name="Delete")).to_have_count(
        0
    )
    await expect(worker.get_by_role("tab", name="People")).to_be_hidden()
    await expect(worker.get_by_role("tab", name="Audit log")).to_be_hidden()
    await worker.get_by_role("tab", name="Tasks").click()
    await expect(worker.locator("#task-form")).to_be_hidden()
    assert await serious_accessibility_violations(worker) == []

    # Made an editor: the worker's old session ends at its next request. That is the Tasks
    # filter below, unless a load the console started at sign-in was still on its way (a loaded
    # machine, a big shared organisation) and got there first: then the workspace is already
    # hidden, signed out, with its controls. So the filter is changed even when hidden (force:
    # no waiting for it to show); both ways end at the login view.
    await row.get_by_label(f"Role of {name}").select_option("editor")
    await expect(console.locator("#status")).to_contain_text("their sessions have ended")
    await worker.get_by_label("Show", exact=True).select_option("done", force=True)
    await expect(worker.locator("#login-view")).to_be_visible()
    await expect(worker.locator("#status")).to_contain_text("ended by an administrator")
    await sign_in_console(worker, email, password)
    await expect(worker.locator("#task-form")).to_be_visible()  # an editor now writes tasks

    # Deactivated: signed out at once, and the password no longer works. As above: the next
    # request may be the filter or a load from the sign-in just before (seen in a full run, where
    # the Tasks tab was already hidden when clicked); the Tasks panel is still the one shown.
    await row.get_by_role("button", name=f"Deactivate {name}").click()
    await expect(row).to_contain_text("deactivated")
    await worker.get_by_label("Show", exact=True).select_option("open", force=True)
    await expect(worker.locator("#login-view")).to_be_visible()
    login = worker.locator("#login-form")
    await login.get_by_label("Email").fill(email)
    await login.get_by_label("Password").fill(password)
    await login.get_by_role("button", name="Sign in").click()
    await expect(worker.locator("#login-error")).to_contain_text("Wrong email or password")

    # Reactivated with a reset password: the new one works, the old one does not.
    await row.get_by_role("button", name=f"Reactivate {name}").click()
    await expect(row).not_to_contain_text("deactivated")
    await row.get_by_role("button", name=f"Reset the password of {name}").click()
    await expect(console.locator("#people-result")).to_contain_text(
        f"New temporary password for {name}"
    )
    new_password = await secret.text_content()
    assert new_password
    assert new_password != password
    await sign_in_console(worker, email, new_password)
    await screenshot(console, "console-people")
    assert await serious_accessibility_violations(console) == []

    # The audit log shows all of it, filtered to people, newest first.
    await console.get_by_role("tab", name="Audit log").click()
    filters = console.locator("#audit-filters")
    await filters.get_by_label("What").select_option("user")
    await filters.get_by_role("button", name="Show").click()
    actions = console.locator("#audit-list tr td:nth-child(3)")
    await expect(actions.first).to_have_text("user.password_reset")
    texts = await actions.all_text_contents()
    assert texts[:5] == [
        "user.password_reset",
        "user.update",
        "user.update",
        "user.update",
        "user.invite",
    ]
    await expect(console.locator("#audit-list")).to_contain_text(web_server.admin_email)
    # filtered by who: the new person changed nothing
    await filters.get_by_label("Who").select_option(label=name)
    await filters.get_by_role("button", name="Show").click()
    await expect(console.locator("#audit-list")).to_contain_text("Nothing recorded")
    await filters.get_by_label("Who").select_option("")
    await filters.get_by_label("What").select_option("geofence")
    await filters.get_by_role("button", name="Show").click()
    await expect(console.locator("#audit-list")).to_contain_text("geofence.create")
    await expect(console.locator("#audit-list")).not_to_contain_text("user.")
    assert await serious_accessibility_violations(console) == []
    assert problems.errors == []
    assert worker_problems.errors == []
    await admin_context.close()
    await worker_context.close()
