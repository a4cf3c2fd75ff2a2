from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Role
from app.core.config import Settings
from tests import factories

PROBLEM = "application/problem+json"


async def test_unknown_route_and_wrong_method_are_problem_json(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == PROBLEM
    assert missing.json()["status"] == 404
    wrong = await client.delete("/v1/auth/token")
    assert wrong.status_code == 405
    assert wrong.headers["content-type"] == PROBLEM


async def test_malformed_json_is_a_clear_400(client: httpx.AsyncClient, db: AsyncSession) -> None:
    await factories.create_organisation(db)
    resp = await client.post(
        "/v1/devices", content=b'{"platform": "web",', headers={"content-type": "application/json"}
    )
    assert resp.status_code == 400
    assert resp.headers["content-type"] == PROBLEM
    assert resp.json()["title"] == "Malformed JSON"


async def test_validation_errors_name_the_failing_fields(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    org = await factories.create_organisation(db)
    admin = await factories.create_staff(db, settings, org, Role.admin)
    resp = await client.post(
        "/v1/users",
        json={"email": "not-an-email", "full_name": "", "password": "short", "role": "king"},
        headers=admin.headers,
    )
    assert resp.status_code == 422
    body = resp.json()
    assert body["type"].endswith("/validation")
    fields = {e["field"] for e in body["errors"]}
    assert fields == {"email", "full_name", "password", "role"}


async def test_oversized_body_is_413_before_parsing(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    big = b"[" + b"1," * (settings.max_body_bytes // 2) + b"1]"
    resp = await client.post(
        "/v1/devices", content=big, headers={"content-type": "application/json"}
    )
    assert resp.status_code == 413
    assert resp.headers["content-type"] == PROBLEM

    async def chunks() -> AsyncIterator[
        bytes
    ]:  # no Content-Length: the limit is enforced while streaming
        for _ in range(settings.max_body_bytes // 65536 + 2):
            yield b" " * 65536

    streamed = await client.post(
        "/v1/devices", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413


async def test_healthz_readyz_and_metrics(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    await client.get("/v1/me")
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    assert (
        'hereabouts_http_requests_total{method="GET",route="/v1/me",status="401"}' in metrics.text
    )
    assert "hereabouts_http_request_duration_seconds_bucket" in metrics.text


async def test_openapi_documents_both_auth_schemes(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["StaffLogin"]["flows"]["password"]["tokenUrl"] == "/v1/auth/token"
    assert schemes["DeviceToken"]["scheme"] == "bearer"
    assert (await client.get("/docs")).status_code == 200


def test_production_refuses_placeholder_secret() -> None:
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="JWT_SECRET"):
        Settings(environment="production", jwt_secret="changethis")
    with pytest.raises(ValidationError, match="JWT_SECRET"):
        Settings(environment="production", jwt_secret="dev-only-insecure-secret")
    ok = Settings(environment="production", jwt_secret="r" * 48)
    assert ok.jwt_secret == "r" * 48


def test_evaluator_slot_settings_refuse_values_out_of_range(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An operator's slot settings out of range stop the start with the setting's name, from
    the environment as from code; the documented values are taken."""
    from pydantic import ValidationError

    for name, bad in (
        ("PING_EVALUATOR_SLOTS", "0"),
        ("PING_EVALUATOR_SLOTS", "65"),
        ("PING_EVALUATOR_EXTRA_SLOTS_AFTER_MS", "-1"),
        ("PING_EVALUATOR_EXTRA_SLOTS_AFTER_MS", "60001"),
        ("PING_EVALUATOR_EXTRA_SLOTS_AFTER_MS", "soon"),
    ):
        with monkeypatch.context() as env:
            env.setenv(f"HEREABOUTS_{name}", bad)
            with pytest.raises(ValidationError, match=name.lower()):
                Settings()
    monkeypatch.setenv("HEREABOUTS_PING_EVALUATOR_SLOTS", "2")
    monkeypatch.setenv("HEREABOUTS_PING_EVALUATOR_EXTRA_SLOTS_AFTER_MS", "250")
    taken = Settings()
    assert (taken.ping_evaluator_slots, taken.ping_evaluator_extra_slots_after_ms) == (2, 250)


async def test_405_lists_every_allowed_method_of_the_path(client: httpx.AsyncClient) -> None:
    resp = await client.request("OPTIONS", "/v1/users")
    assert resp.status_code == 405
    assert resp.headers["allow"] == "GET, POST"


async def test_405_on_a_static_path_lists_only_its_own_methods(client: httpx.AsyncClient) -> None:
    resp = await client.patch("/v1/geofences/import", json={})
    assert resp.status_code == 405
    assert resp.headers["allow"] == "POST"
