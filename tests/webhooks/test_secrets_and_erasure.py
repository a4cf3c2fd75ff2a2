"""Signing secrets are encrypted at rest; erasing a resident removes the webhook messages about
them (pending or sent) and their attempt log, and nobody else's."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from fastapi import FastAPI
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Role
from app.core.config import Environment, Settings
from app.core.subject import SubjectRef
from app.events import service as events_service
from app.events.types import Event, EventType, Source
from app.webhooks import secretbox
from app.webhooks.models import WebhookAttempt, WebhookMessage
from tests import factories
from tests.places import add_square, offset

BASE = "/v1/webhooks/endpoints"


@pytest.fixture
async def loopback_client(app: FastAPI, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API with loopback receivers allowed (stored, never called here)."""
    app.state.settings = settings.model_copy(update={"webhook_allow_loopback": True})
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def stored_secrets(db: AsyncSession, endpoint_id: str) -> tuple[str, str | None]:
    row = (
        await db.execute(
            text("SELECT secret, previous_secret FROM webhook_endpoints WHERE id = :i"),
            {"i": endpoint_id},
        )
    ).one()
    return row[0], row[1]


async def test_the_database_never_holds_a_signing_secret_in_plaintext(
    loopback_client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    admin = await factories.create_staff(db, settings, org, Role.admin)
    created = await loopback_client.post(
        BASE, json={"url": "http://127.0.0.1:9/h", "event_types": ["*"]}, headers=admin.headers
    )
    assert created.status_code == 201, created.text
    ep = created.json()
    first = ep["secret"]
    assert first.startswith("whsec_")
    secret, previous = await stored_secrets(db, ep["id"])
    assert previous is None
    assert first not in secret
    assert first.removeprefix("whsec_") not in secret
    assert secret.startswith(secretbox.PREFIX)
    assert secretbox.open_sealed(settings, secret) == first

    rotated = await loopback_client.post(f"{BASE}/{ep['id']}/rotate-secret", headers=admin.headers)
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()["secret"]
    secret, previous = await stored_secrets(db, ep["id"])
    assert previous is not None
    for stored in (secret, previous):
        assert stored.startswith(secretbox.PREFIX)
        for plain in (first, second):
            assert plain not in stored
            assert plain.removeprefix("whsec_") not in stored
    # the old secret is kept (sealed) for the overlap, the new one signs first
    assert secretbox.open_sealed(settings, secret) == second
    assert secretbox.open_sealed(settings, previous) == first
    # nothing else in the table holds either secret
    dump = (
        await db.execute(text("SELECT row_to_json(e)::text FROM webhook_endpoints e"))
    ).scalars()
    assert not any(first.removeprefix("whsec_") in d or second in d for d in dump)


def test_a_secret_sealed_with_another_key_is_refused_and_a_previous_key_still_opens_it(
    settings: Settings,
) -> None:
    old = settings.model_copy(update={"webhook_secret_key": Fernet.generate_key().decode()})
    new = settings.model_copy(update={"webhook_secret_key": Fernet.generate_key().decode()})
    sealed = secretbox.seal(old, "whsec_abc")
    with pytest.raises(secretbox.SecretKeyError):
        secretbox.open_sealed(new, sealed)
    rotated = new.model_copy(update={"webhook_previous_secret_keys": [old.webhook_secret_key]})
    assert secretbox.open_sealed(rotated, sealed) == "whsec_abc"
    with pytest.raises(secretbox.SecretKeyError):
        secretbox.open_sealed(new, "whsec_abc")  # a plaintext value is never accepted
    bad = settings.model_copy(update={"webhook_secret_key": "not-a-key"})
    with pytest.raises(secretbox.SecretKeyError):
        secretbox.seal(bad, "whsec_abc")


def test_without_a_configured_key_one_is_generated_once_into_the_data_dir(
    settings: Settings, tmp_path: Path
) -> None:
    local = settings.model_copy(
        update={"webhook_secret_key": None, "webhook_secret_key_file": None, "data_dir": tmp_path}
    )
    sealed = secretbox.seal(local, "whsec_xyz")
    path = tmp_path / secretbox.DEFAULT_KEY_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    assert secretbox.current_key(local) == path.read_text().strip()  # reused, not regenerated
    assert secretbox.open_sealed(local, sealed) == "whsec_xyz"


async def messages_about(db: AsyncSession, subject: uuid.UUID) -> list[uuid.UUID]:
    result = await db.execute(select(WebhookMessage.id).where(WebhookMessage.subject_id == subject))
    return list(result.scalars())


async def test_a_residents_webhook_messages_are_in_their_export_then_erased_with_them(
    loopback_client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    admin = await factories.create_staff(db, settings, org, Role.admin)
    leaving = await factories.create_resident(db, org)
    staying = await factories.create_resident(db, org)
    await add_square(db, org.id, name="Central Library")
    created = await loopback_client.post(
        BASE, json={"url": "http://127.0.0.1:9/h", "event_types": ["*"]}, headers=admin.headers
    )
    assert created.status_code == 201
    endpoint_id = uuid.UUID(created.json()["id"])
    lon, lat = offset(0, 0)
    for who in (leaving, staying):
        checkin = await loopback_client.post(
            "/v1/checkins", json={"lon": lon, "lat": lat, "accuracy_m": 8}, headers=who.headers
        )
        assert checkin.status_code in (200, 201), checkin.text
    # and a redemption-like event of another source about the leaving resident
    redeemed = Event(
        id=uuid.uuid4(),
        organisation_id=org.id,
        type=EventType.offer_redeemed,
        source=Source.offer,
        occurred_at=datetime.now(UTC),
        subject=SubjectRef("device", leaving.id, org.id),
        explanation={"why": "test"},
    )
    await events_service.record(db, [redeemed], settings)
    gone = await messages_about(db, leaving.id)
    kept = await messages_about(db, staying.id)
    assert len(gone) == 2
    assert len(kept) == 1
    # one of the leaving resident's messages was already sent (it has a log entry); the other
    # is still pending; the staying resident's was sent too
    await db.execute(
        text("UPDATE outbox SET status = 'delivered', finished_at = now() WHERE id = ANY(:ids)"),
        {"ids": [gone[0], kept[0]]},
    )
    for message_id in (gone[0], kept[0]):
        db.add(
            WebhookAttempt(
                organisation_id=org.id,
                endpoint_id=endpoint_id,
                message_id=message_id,
                msg_id="msg_" + uuid.uuid4().hex,
                attempt=1,
                attempted_at=datetime.now(UTC),
                status="delivered",
                http_status=200,
            )
        )
    await db.commit()

    # before erasing, the resident's export has both messages about them, with where they went,
    # the exact body sent and the attempt log; nothing about the staying resident
    exported = await loopback_client.get("/v1/me/export", headers=leaving.headers)
    assert exported.status_code == 200, exported.text
    webhooks = exported.json()["webhooks"]
    stored = {
        m.id: m
        for m in (
            await db.execute(select(WebhookMessage).where(WebhookMessage.subject_id == leaving.id))
        ).scalars()
    }
    assert sorted(uuid.UUID(m["id"]) for m in webhooks) == sorted(stored)
    for m in webhooks:
        row = stored[uuid.UUID(m["id"])]
        assert m["endpoint"] == {
            "id": str(endpoint_id),
            "url": "http://127.0.0.1:9/h",
            "description": "",
        }
        assert (m["event_type"], m["msg_id"], m["status"]) == (
            row.event_type,
            row.msg_id,
            row.status,
        )
        assert m["payload"] == json.loads(row.payload)  # the body as sent, parsed
    by_id = {uuid.UUID(m["id"]): m for m in webhooks}
    assert [(a["attempt"], a["status"], a["http_status"]) for a in by_id[gone[0]]["attempts"]] == [
        (1, "delivered", 200)
    ]
    assert by_id[gone[1]]["attempts"] == []
    assert {m["event_type"] for m in webhooks} == {"checkin.created", "offer.redeemed"}
    assert str(kept[0]) not in exported.text
    # an admin's export of the device (on the resident's request) has the same messages
    by_admin = await loopback_client.get(f"/v1/devices/{leaving.id}/export", headers=admin.headers)
    assert by_admin.status_code == 200, by_admin.text
    assert by_admin.json()["webhooks"] == webhooks

    erased = await loopback_client.delete("/v1/me", headers=leaving.headers)
    assert erased.status_code == 204, erased.text

    db.expire_all()
    assert await messages_about(db, leaving.id) == []
    assert await messages_about(db, staying.id) == kept
    logged = select(WebhookAttempt.message_id).where(WebhookAttempt.endpoint_id == endpoint_id)
    left = (await db.execute(logged)).scalars()
    assert list(left) == [kept[0]]
    total = (await db.execute(select(func.count()).select_from(WebhookMessage))).scalar_one()
    assert total == 1


async def test_in_production_without_a_key_registering_is_a_problem_and_stores_nothing(
    app: FastAPI, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    admin = await factories.create_staff(db, settings, org, Role.admin)
    app.state.settings = settings.model_copy(
        update={
            "webhook_allow_loopback": True,
            "environment": Environment.production,
            "webhook_secret_key": None,
            "webhook_secret_key_file": None,
        }
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        resp = await client.post(
            BASE, json={"url": "http://127.0.0.1:9/h", "event_types": ["*"]}, headers=admin.headers
        )
    assert resp.status_code == 503, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert "WEBHOOK_SECRET_KEY_FILE" in resp.json()["detail"]
    assert (await db.execute(text("SELECT count(*) FROM webhook_endpoints"))).scalar_one() == 0


async def test_a_staff_members_webhook_messages_are_in_their_own_export(
    loopback_client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    admin = await factories.create_staff(db, settings, org, Role.admin)
    worker = await factories.create_staff(db, settings, org, Role.field_worker)
    resident = await factories.create_resident(db, org)
    await add_square(db, org.id, name="Central Library")
    created = await loopback_client.post(
        BASE, json={"url": "http://127.0.0.1:9/h", "event_types": ["*"]}, headers=admin.headers
    )
    assert created.status_code == 201
    lon, lat = offset(0, 0)
    for who in (worker, resident):
        checkin = await loopback_client.post(
            "/v1/checkins", json={"lon": lon, "lat": lat, "accuracy_m": 8}, headers=who.headers
        )
        assert checkin.status_code == 201, checkin.text
    [about_worker] = await messages_about(db, worker.id)
    [about_resident] = await messages_about(db, resident.id)
    own = await loopback_client.get("/v1/users/me/export", headers=worker.headers)
    assert own.status_code == 200, own.text
    [message] = own.json()["webhooks"]
    assert (message["id"], message["event_type"]) == (str(about_worker), "checkin.created")
    assert message["endpoint"]["url"] == "http://127.0.0.1:9/h"
    assert str(about_resident) not in own.text
