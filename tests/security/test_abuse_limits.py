"""Rate limits on ingest, push subscriptions, geofence imports and shift actions (429 with
Retry-After)."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.accounts.models import Role
from app.core.config import Settings
from app.core.db import get_session
from app.main import create_app
from tests import factories


@pytest.mark.parametrize(
    ("scope", "method", "path", "who"),
    [
        ("ingest", "POST", "/v1/pings", "resident"),
        ("subscriptions", "POST", "/v1/push/subscriptions", "resident"),
        ("imports", "POST", "/v1/geofences/import", "editor"),
        ("shifts", "POST", "/v1/me/tracking/pause", "worker"),
    ],
)
async def test_the_limit_answers_429_with_retry_after(
    *,
    db: AsyncSession,
    settings: Settings,
    engine: AsyncEngine,
    scope: str,
    method: str,
    path: str,
    who: str,
) -> None:
    limited = settings.model_copy(
        update={"rate_limit_per_caller_per_minute": {scope: 2.0}, "rate_limit_enabled": True}
    )
    app = create_app(limited, engine=engine)

    async def session_override():  # type: ignore[no-untyped-def]
        yield db

    app.dependency_overrides[get_session] = session_override
    org = await factories.create_organisation(db)
    caller = (
        await factories.create_resident(db, org)
        if who == "resident"
        else await factories.create_staff(
            db, settings, org, Role.field_worker if who == "worker" else Role.editor
        )
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        # bodies are empty: the limit is checked before the body is, so each call counts
        answers = [
            (await c.request(method, path, json={}, headers=caller.headers)) for _ in range(3)
        ]
    assert all(a.status_code != 429 for a in answers[:2])
    assert answers[2].status_code == 429
    assert int(answers[2].headers["Retry-After"]) >= 1
