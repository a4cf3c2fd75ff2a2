"""The webhook endpoints API: who may use it, what it refuses (SSRF, bad input), and that a
real check-in, task transition and redemption reach the webhook outbox through the pipeline."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Role
from app.core.config import Settings
from app.webhooks.models import WebhookEndpoint, WebhookMessage
from tests import factories
from tests.places import add_square, offset

PROBLEM = "application/problem+json"
BASE = "/v1/webhooks/endpoints"


@pytest.fixture
async def loopback_client(app: FastAPI, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API with loopback receivers allowed (test/dev only), for endpoints that must be
    stored; the plain `client` has production's rule (loopback refused)."""
    app.state.settings = settings.model_copy(update={"webhook_allow_loopback": True})
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def count(db: AsyncSession, model: Any) -> int:
    return int((await db.execute(select(func.count()).select_from(model))).scalar_one())


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://10.0.0.7/hook",
        "https://192.168.1.1/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://[::ffff:10.0.0.1]/hook",
        "https://[fe80::1]/hook",
        "https://0x7f000001/hook",
        "http://example.org/hook",
        "https://user:pw@example.org/hook",
        "https://example.org/hook#frag",
        "ftp://example.org/hook",
        "https://no-such-host.invalid/hook",
    ],
)
async def test_private_and_malformed_targets_are_refused_at_registration(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, url: str
) -> None:
    org = await factories.create_organisation(db)
    admin = await factories.create_staff(db, settings, org, Role.admin)
    resp = await client.post(BASE, json={"url": url, "event_types": ["*"]}, headers=admin.headers)
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM)
    assert await count(db, WebhookEndpoint) == 0


async def test_bad_input_is_a_problem_and_changes_nothing(
    loopback_client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    admin = await factories.create_staff(db, settings, org, Role.admin)
    url = "http://127.0.0.1:9/hook"
    for body in (
        {"url": url, "event_types": []},
        {"url": url, "event_types": ["place.teleported"]},
        {"url": url, "event_types": ["*"], "surprise": 1},
        {"url": url, "event_types": ["*"], "include_person_ids": "yes"},
    ):
        resp = await loopback_client.post(BASE, json=body, headers=admin.headers)
        assert resp.status_code == 422, (body, resp.text)
        assert resp.headers["content-type"].startswith(PROBLEM)
    assert await count(db, WebhookEndpoint) == 0


async def test_admin_registers_sees_the_secret_once_tests_and_replays(
    loopback_client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    admin = await factories.create_staff(db, settings, org, Role.admin)
    editor = await factories.create_staff(db, settings, org, Role.editor)
    body = {"url": "http://127.0.0.1:9/hook", "event_types": ["task.*", "checkin.created"]}
    assert (await loopback_client.post(BASE, json=body, headers=editor.headers)).status_code == 403
    created = await loopback_client.post(BASE, json=body, headers=admin.headers)
    assert created.status_code == 201, created.text
    ep = created.json()
    assert ep["secret"].startswith("whsec_")
    assert ep["event_types"] == ["checkin.created", "task.*"]
    listed = (await loopback_client.get(BASE, headers=admin.headers)).json()
    assert [e["id"] for e in listed] == [ep["id"]]
    assert "secret" not in listed[0]
    one = await loopback_client.get(f"{BASE}/{ep['id']}", headers=admin.headers)
    assert "secret" not in one.json()

    test = await loopback_client.post(f"{BASE}/{ep['id']}/test", headers=admin.headers)
    assert test.status_code == 202, test.text
    assert test.json()["event_type"] == "webhook.test"
    replay = await loopback_client.post(
        f"{BASE}/{ep['id']}/replay", json={"message_id": test.json()["id"]}, headers=admin.headers
    )
    assert replay.status_code == 202, replay.text
    msgs = (await loopback_client.get(f"{BASE}/{ep['id']}/messages", headers=admin.headers)).json()
    assert len(msgs) == 2
    assert msgs[0]["msg_id"] == msgs[1]["msg_id"]  # the replay keeps the webhook-id
    bad = await loopback_client.post(
        f"{BASE}/{ep['id']}/replay", json={"since": "2026-01-02T00:00:00Z"}, headers=admin.headers
    )
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith(PROBLEM)
    rotated = await loopback_client.post(f"{BASE}/{ep['id']}/rotate-secret", headers=admin.headers)
    assert rotated.status_code == 200
    assert rotated.json()["secret"] not in (ep["secret"],)
    log = await loopback_client.get(f"{BASE}/{ep['id']}/deliveries", headers=admin.headers)
    assert log.status_code == 200
    assert log.json() == []  # no worker ran


async def test_another_organisations_admin_can_neither_see_nor_replay_the_endpoint(
    loopback_client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    other = await factories.create_organisation(db)
    admin = await factories.create_staff(db, settings, org, Role.admin)
    stranger = await factories.create_staff(db, settings, other, Role.admin)
    created = await loopback_client.post(
        BASE, json={"url": "http://127.0.0.1:9/h", "event_types": ["*"]}, headers=admin.headers
    )
    ep = created.json()["id"]
    msg = (await loopback_client.post(f"{BASE}/{ep}/test", headers=admin.headers)).json()["id"]
    h = stranger.headers
    assert (await loopback_client.get(BASE, headers=h)).json() == []
    for method, path, body in (
        ("GET", f"{BASE}/{ep}", None),
        ("PATCH", f"{BASE}/{ep}", {"enabled": False}),
        ("GET", f"{BASE}/{ep}/messages", None),
        ("GET", f"{BASE}/{ep}/deliveries", None),
        ("POST", f"{BASE}/{ep}/test", None),
        ("POST", f"{BASE}/{ep}/rotate-secret", None),
        ("POST", f"{BASE}/{ep}/replay", {"message_id": msg}),
        ("DELETE", f"{BASE}/{ep}", None),
    ):
        resp = await loopback_client.request(method, path, json=body, headers=h)
        assert resp.status_code == 404, (method, path, resp.text)
    assert await count(db, WebhookMessage) == 1  # only the owner's test message
    status = (await loopback_client.get(f"{BASE}/{ep}", headers=admin.headers)).json()["status"]
    assert status == "enabled"


async def test_checkins_task_transitions_and_redemptions_reach_the_webhook_outbox(
    loopback_client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    admin = await factories.create_staff(db, settings, org, Role.admin)
    worker = await factories.create_staff(db, settings, org, Role.field_worker)
    resident = await factories.create_resident(db, org)
    library = await add_square(db, org.id, name="Central Library")
    created = await loopback_client.post(
        BASE, json={"url": "http://127.0.0.1:9/h", "event_types": ["*"]}, headers=admin.headers
    )
    assert created.status_code == 201
    lon, lat = offset(0, 0)
    checkin = await loopback_client.post(
        "/v1/checkins", json={"lon": lon, "lat": lat, "accuracy_m": 8}, headers=resident.headers
    )
    assert checkin.status_code in (200, 201), checkin.text
    task = await loopback_client.post(
        "/v1/tasks",
        json={
            "title": "Stock check",
            "geofence_id": str(library.id),
            "assignee_ids": [str(worker.id)],
        },
        headers=admin.headers,
    )
    assert task.status_code == 201, task.text
    offer = await loopback_client.post(
        "/v1/offers",
        json={
            "title": "Free tea",
            "body": "One per visit",
            "triggers": ["checkin"],
            "geofence_ids": [str(library.id)],
            "status": "active",
        },
        headers=admin.headers,
    )
    assert offer.status_code == 201, offer.text
    redeemed = await loopback_client.post(
        f"/v1/offers/{offer.json()['id']}/redeem",
        json={"geofence_id": str(library.id)},
        headers=resident.headers,
    )
    assert redeemed.status_code in (200, 201), redeemed.text
    rows = (await db.execute(select(WebhookMessage.event_type, WebhookMessage.payload))).all()
    types = sorted(r[0] for r in rows)
    assert "checkin.created" in types
    assert "offer.redeemed" in types
    assert any(t.startswith("task.") for t in types)
    # payloads name the place and never the resident's id
    assert str(resident.id) not in " ".join(r[1] for r in rows)
    assert all(str(library.id) in r[1] for r in rows)
    stored = json.loads(next(r[1] for r in rows if r[0] == "checkin.created"))
    assert stored["data"]["checkin_id"] in checkin.text  # the check-in the resident was shown
    assert stored["data"]["person"]["id"].startswith("psn_")


async def test_an_open311_report_reaches_the_webhook_outbox_without_contact_details(
    loopback_client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    admin = await factories.create_staff(db, settings, org, Role.admin)
    await add_square(db, org.id, name="Central Library")
    created = await loopback_client.post(
        BASE,
        json={"url": "http://127.0.0.1:9/h", "event_types": ["report.*"]},
        headers=admin.headers,
    )
    assert created.status_code == 201
    service = await loopback_client.post(
        "/v1/open311/services",
        json={"code": "fly-tipping", "name": "Fly-tipping", "task": {"title": "Clear it"}},
        headers=admin.headers,
    )
    assert service.status_code == 201, service.text
    key = await loopback_client.post(
        "/v1/open311/keys", json={"label": "App"}, headers=admin.headers
    )
    assert key.status_code == 201, key.text
    lon, lat = offset(0, 0)
    report = await loopback_client.post(
        "/open311/v2/requests.json",
        data={
            "jurisdiction_id": org.slug,
            "api_key": key.json()["key"],
            "service_code": "fly-tipping",
            "lat": str(lat),
            "long": str(lon),
            "email": "reporter@example.org",
            "description": "Mattress by the gate",
        },
    )
    assert report.status_code == 200, report.text
    rows = (await db.execute(select(WebhookMessage.event_type, WebhookMessage.payload))).all()
    assert [r[0] for r in rows] == ["report.created"]
    body = json.loads(rows[0][1])
    assert body["data"]["service_request_id"] == report.json()[0]["service_request_id"]
    assert body["data"]["service_code"] == "fly-tipping"
    assert "reporter@example.org" not in rows[0][1]
    assert "Mattress" not in rows[0][1]
