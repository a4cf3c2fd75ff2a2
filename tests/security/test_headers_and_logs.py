"""Strict CORS, security headers, and no coordinates or secrets in the logs of a full scenario."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.accounts.models import Role
from app.core.config import Settings
from app.core.logging import JsonFormatter, configure_logging
from app.main import create_app
from tests import factories
from tests.notifications.test_api import subscription_json

EVIL = "https://evil.example"
CONSOLE = "https://console.council.example"


async def _client(settings: Settings, engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, engine=engine)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def test_no_cross_origin_access_by_default(settings: Settings, engine: AsyncEngine) -> None:
    assert settings.cors_origins == []
    async for c in _client(settings, engine):
        pre = await c.options(
            "/v1/me",
            headers={"Origin": EVIL, "Access-Control-Request-Method": "GET"},
        )
        assert "access-control-allow-origin" not in pre.headers
        r = await c.get("/healthz", headers={"Origin": EVIL})
        assert "access-control-allow-origin" not in r.headers


async def test_only_configured_origins_are_allowed(settings: Settings, engine: AsyncEngine) -> None:
    configured = settings.model_copy(update={"cors_origins": [CONSOLE]})
    async for c in _client(configured, engine):
        ok = await c.options(
            "/v1/me",
            headers={
                "Origin": CONSOLE,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "Authorization",
            },
        )
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == CONSOLE
        assert "access-control-allow-credentials" not in ok.headers
        bad = await c.options(
            "/v1/me", headers={"Origin": EVIL, "Access-Control-Request-Method": "GET"}
        )
        assert bad.status_code == 400
        assert "access-control-allow-origin" not in bad.headers
        r = await c.get("/healthz", headers={"Origin": EVIL})
        assert "access-control-allow-origin" not in r.headers
        assert (await c.get("/healthz", headers={"Origin": CONSOLE})).headers[
            "access-control-allow-origin"
        ] == CONSOLE


@pytest.mark.parametrize("path", ["/healthz", "/v1/me", "/v1/nowhere", "/docs"])
async def test_security_headers_on_every_response(client: httpx.AsyncClient, path: str) -> None:
    r = await client.get(path)
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["x-frame-options"] == "DENY"


async def test_a_full_scenario_logs_no_coordinates_tokens_or_passwords(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    password = "scenario-password-" + "q7" * 8
    admin = await factories.create_staff(db, settings, org, Role.admin, password=password)
    await db.commit()
    lon, lat = -1.257713, 51.752091  # where the resident is: must never reach a log
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.setLevel(logging.DEBUG)
    configure_logging("DEBUG", json=True)
    logging.getLogger().addHandler(handler)
    secrets: list[str] = [password]
    try:
        login = await client.post(
            "/v1/auth/token", data={"username": admin.email, "password": password}
        )
        assert login.status_code == 200, login.text
        staff_token = login.json()["access_token"]
        staff = {"Authorization": f"Bearer {staff_token}"}
        square = [[-1.2590, 51.7510], [-1.2560, 51.7510], [-1.2560, 51.7530], [-1.2590, 51.7530]]
        place = await client.post(
            "/v1/geofences",
            json={
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [[*square, square[0]]]},
                "properties": {"name": "Central Library", "category": "library"},
            },
            headers=staff,
        )
        assert place.status_code == 201, place.text
        device = await client.post("/v1/devices", json={"organisation": org.slug})
        assert device.status_code == 201
        device_token = device.json()["token"]
        h = {"Authorization": f"Bearer {device_token}"}
        on = await client.put("/v1/me/background-location", json={"enabled": True}, headers=h)
        assert on.status_code == 200
        checkin = await client.post(
            "/v1/checkins", json={"lon": lon, "lat": lat, "accuracy_m": 5}, headers=h
        )
        assert checkin.status_code == 201, checkin.text
        now = datetime.now(UTC)
        pings = [
            {
                "id": f"log-{i}",
                "lon": lon,
                "lat": lat,
                "accuracy_m": 6,
                "recorded_at": (now - timedelta(seconds=30 - i)).isoformat(),
            }
            for i in range(5)
        ]
        assert (await client.post("/v1/pings", json={"pings": pings}, headers=h)).status_code == 200
        sub = subscription_json()
        assert (await client.post("/v1/push/subscriptions", json=sub, headers=h)).status_code == 201
        # a failed login and a bad token are logged too
        await client.post(
            "/v1/auth/token", data={"username": admin.email, "password": "wrong-pw-1"}
        )
        await client.get("/v1/me", headers={"Authorization": "Bearer hb_dev_not-a-real-token"})
        secrets += [staff_token, device_token, sub["endpoint"], sub["keys"]["auth"], "wrong-pw-1"]
        secrets += [sub["keys"]["p256dh"], "hb_dev_not-a-real-token"]
    finally:
        logging.getLogger().removeHandler(handler)
        configure_logging(settings.log_level, settings.log_json)
    logs = stream.getvalue()
    assert logs.count("\n") >= 5, "the scenario should have produced request logs"
    for coordinate in ("1.25771", "51.75209"):
        assert coordinate not in logs, f"a coordinate reached the logs: {coordinate}"
    for secret in secrets:
        assert secret not in logs, "a token, key or password reached the logs"
