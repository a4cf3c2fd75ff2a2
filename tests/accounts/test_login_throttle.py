"""Issue 18, finding 9: failing logins on purpose must not lock the owner out.

Before the fix failures were counted per account only: anyone who knew a staff email could lock
that account for everyone, from any IP. Now failures count per (account, IP) pair, and a slower
per-account limit (against guessing from many IPs) spares IPs that logged in to the account
before.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.accounts.models import Role
from app.core.config import Settings
from app.core.db import get_session
from app.main import create_app
from tests import factories

EMAIL = "target@example.org"
PAIR_LIMIT = 3
ACCOUNT_LIMIT = 6


@pytest.fixture
async def login_app(settings: Settings, engine: AsyncEngine, db: AsyncSession) -> Any:
    org = await factories.create_organisation(db)
    await factories.create_staff(db, settings, org, Role.editor, email=EMAIL)
    app = create_app(
        settings.model_copy(
            update={
                "login_failures_per_account_ip_per_hour": PAIR_LIMIT,
                "login_failures_per_account_per_hour": ACCOUNT_LIMIT,
            }
        ),
        engine=engine,
    )

    async def session_override() -> AsyncIterator[AsyncSession]:
        await db.commit()
        yield db
        await db.commit()

    app.dependency_overrides[get_session] = session_override
    return app


@pytest.fixture
def login(login_app: Any) -> Callable[..., Any]:
    async def attempt(ip: str, password: str) -> int:
        transport = httpx.ASGITransport(app=login_app, client=(ip, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            res = await c.post("/v1/auth/token", data={"username": EMAIL, "password": password})
            if res.status_code == 429:
                assert int(res.headers["retry-after"]) >= 1
                assert res.headers["content-type"] == "application/problem+json"
            return res.status_code

    return attempt


async def test_an_attacker_failing_from_one_ip_does_not_lock_out_the_owner(
    login: Callable[..., Any],
) -> None:
    for _ in range(PAIR_LIMIT):
        assert await login("198.51.100.66", "guess-guess") == 401
    # the attacker's IP is throttled for this account, even with the right password
    assert await login("198.51.100.66", factories.DEFAULT_PASSWORD) == 429
    # the owner, elsewhere, logs in
    assert await login("203.0.113.10", factories.DEFAULT_PASSWORD) == 200


async def test_guessing_from_many_ips_hits_the_slower_account_limit_but_not_known_ips(
    login: Callable[..., Any],
) -> None:
    assert await login("203.0.113.10", factories.DEFAULT_PASSWORD) == 200  # the owner's IP
    for i in range(ACCOUNT_LIMIT):
        assert await login(f"198.51.100.{i}", "guess-guess") == 401  # each IP below its limit
    # a new IP now waits, even with the right password ...
    assert await login("192.0.2.77", factories.DEFAULT_PASSWORD) == 429
    assert await login("192.0.2.78", "guess-guess") == 429
    # ... but the owner's own IP still gets in
    assert await login("203.0.113.10", factories.DEFAULT_PASSWORD) == 200


async def test_the_owner_failing_at_home_is_still_throttled_per_pair(
    login: Callable[..., Any],
) -> None:
    assert await login("203.0.113.10", factories.DEFAULT_PASSWORD) == 200
    for _ in range(PAIR_LIMIT):
        assert await login("203.0.113.10", "typo-typo-typo") == 401
    assert await login("203.0.113.10", factories.DEFAULT_PASSWORD) == 429
