"""One prompt and one alarm per visit across two real API replicas on one database, with both
replicas stopped (one killed) between the prompt and the alarm and started again.

Two `hereabouts serve` processes run their in-process push worker and scheduled jobs against
the same database; the fake push service (this process) checks VAPID and decrypts every push.
The clock: the visits' `due_at` is moved into the past by hand (as if their time had passed);
the grace before the prompt is 0 s, the alarm's 8 s, the ladder 1 h (no re-send in the test).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.core.cluster import EmbeddedCluster
from app.core.config import PROJECT_ROOT, Settings
from app.notifications.vapid import VapidSigner, generate_private_key, private_key_pem
from tests.conftest import fresh_database
from tests.live import create_admin, free_port
from tests.notifications.fake_push import FakePushService

LON, LAT = -1.2577, 51.752
WORKERS = 6
ALARM_GRACE_S = 8
GUARD_S = 120.0
START_GUARD_S = 180.0
PASSWORD = "replica-password-long-enough"


class Replica:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--no-migrate"]
            + ["--port", str(self.port), "--workers", "1"],
            cwd=PROJECT_ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # generous: the machine may be shared, and two replicas start at once
        async with asyncio.timeout(START_GUARD_S), httpx.AsyncClient() as c:
            while True:
                try:
                    if (await c.get(self.base + "/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                assert self.proc.poll() is None, "replica exited"
                await asyncio.sleep(0.2)

    async def stop(self, sig: int = signal.SIGINT) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        for _ in range(200):
            if self.proc.poll() is not None:
                break
            await asyncio.sleep(0.1)
        else:
            self.proc.kill()
            self.proc.wait()
        # its uvicorn worker goes with it (parent-death signal); wait until the port is free
        async with httpx.AsyncClient() as c:
            for _ in range(100):
                try:
                    await c.get(self.base + "/healthz", timeout=0.5)
                except httpx.HTTPError:
                    return
                await asyncio.sleep(0.1)


async def wait_for(check: Callable[[], Awaitable[bool]]) -> None:
    async with asyncio.timeout(GUARD_S):
        while not await check():
            await asyncio.sleep(0.1)


@pytest.fixture
async def database(pg_cluster: EmbeddedCluster) -> AsyncIterator[tuple[str, AsyncEngine]]:
    name = f"lone_replicas_{os.getpid()}"
    fresh_database(pg_cluster, name)
    engine = create_async_engine(pg_cluster.url(name))
    yield pg_cluster.url(name), engine
    await engine.dispose()
    pg_cluster.drop_database(name)


async def call(
    c: httpx.AsyncClient, method: str, url: str, token: str | None = None, **kw: Any
) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = await c.request(method, url, headers=headers, timeout=60, **kw)
    assert r.status_code < 300, f"{method} {url}: {r.status_code} {r.text}"
    return r.json() if r.content else None


async def login(c: httpx.AsyncClient, email: str) -> str:
    data = await call(c, "POST", "/v1/auth/token", data={"username": email, "password": PASSWORD})
    return str(data["access_token"])


def decoded(fake: FakePushService) -> list[tuple[str, dict[str, Any]]]:
    return [(r.token, orjson.loads(r.plaintext)) for r in fake.received if r.answered == 201]


async def test_one_prompt_and_one_alarm_per_visit_across_two_replicas_and_a_restart(
    database: tuple[str, AsyncEngine], settings: Settings
) -> None:
    url, engine = database
    key = generate_private_key()
    signer = VapidSigner.from_settings(
        settings.model_copy(update={"vapid_private_key": private_key_pem(key).decode()})
    )
    fake = await FakePushService(vapid_public_key=signer.public_key).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEREABOUTS_")} | {
        "HEREABOUTS_DATABASE_URL": url,
        "HEREABOUTS_ENVIRONMENT": "test",
        "HEREABOUTS_RATE_LIMIT_ENABLED": "false",
        "HEREABOUTS_RUN_WORKER_IN_PROCESS": "true",
        "HEREABOUTS_PUSH_ALLOW_LOOPBACK": "true",
        "HEREABOUTS_PUSH_POLL_INTERVAL_S": "0.2",
        "HEREABOUTS_VAPID_PRIVATE_KEY": private_key_pem(key).decode(),
        "HEREABOUTS_VAPID_SUBJECT": "mailto:lone-working@council.example",
        "HEREABOUTS_LOG_LEVEL": "ERROR",
        "HEREABOUTS_JWT_SECRET": "replica-secret-" + "z" * 32,
        "HEREABOUTS_ADMIN_PASSWORD": PASSWORD,
        "HEREABOUTS_LONE_WORKING_TICK_S": "0.2",
        "HEREABOUTS_LONE_WORKING_GRACE_S": "0",
        "HEREABOUTS_LONE_WORKING_ALARM_GRACE_S": str(ALARM_GRACE_S),
        "HEREABOUTS_LONE_WORKING_LADDER_S": "[3600]",
    }
    create_admin(url, "admin@replicas.example", "replica-town", PASSWORD)
    a, b = Replica(env), Replica(env)
    try:
        await asyncio.gather(a.start(), b.start())
        async with httpx.AsyncClient(base_url=a.base) as c:
            admin = await login(c, "admin@replicas.example")
            place = await call(
                c,
                "POST",
                "/v1/geofences",
                admin,
                json={
                    "type": "Feature",
                    "geometry": {"type": "Point", "coordinates": [LON, LAT]},
                    "properties": {"name": "Riverside Depot", "category": "park", "radius_m": 40},
                },
            )
            people: dict[str, tuple[str, str]] = {}  # email → (id, token)
            for n in range(WORKERS + 1):
                role = "editor" if n == WORKERS else "field_worker"
                email = f"{role}-{n}@replicas.example"
                user = await call(
                    c,
                    "POST",
                    "/v1/users",
                    admin,
                    json={
                        "email": email,
                        "full_name": f"Person {n}",
                        "password": PASSWORD,
                        "role": role,
                    },
                )
                people[email] = (user["id"], await login(c, email))
            editor_id, _ = people[f"editor-{WORKERS}@replicas.example"]
            await call(
                c,
                "PUT",
                "/v1/safety/on-call",
                admin,
                json={"contacts": [{"staff_id": editor_id, "rank": 1}]},
            )
            subs = {}
            for uid, token in people.values():
                sub = fake.subscribe()
                subs[sub.token] = uid
                await call(c, "POST", "/v1/push/subscriptions", token, json=sub.as_json())
            workers = [v for k, v in people.items() if k.startswith("field_worker")]
            for i, (uid, token) in enumerate(workers):
                # half the work through each replica
                base = a.base if i % 2 else b.base
                await call(
                    c,
                    "POST",
                    base + "/v1/tasks",
                    admin,
                    json={
                        "title": f"Check the depot {i}",
                        "geofence_id": place["id"],
                        "assignee_ids": [uid],
                        "expected_duration_min": 1,
                    },
                )
                await call(
                    c,
                    "POST",
                    base + "/v1/checkins",
                    token,
                    json={"lon": LON, "lat": LAT, "accuracy_m": 5},
                )
            visits = {
                uid: (await call(c, "GET", "/v1/me/visits", t))[0]["id"] for uid, t in workers
            }
        assert len(set(visits.values())) == WORKERS

        # the clock: every visit's time is up now
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE lone_visits SET due_at = now() - interval '1 minute'"))

        def of_kind(kind: str) -> list[tuple[str, dict[str, Any]]]:
            return [(t, p) for t, p in decoded(fake) if p["kind"] == kind]

        async def all_prompted() -> bool:
            return len(of_kind("safety.prompt")) >= WORKERS

        await wait_for(all_prompted)
        # both replicas go down before any alarm is due: one killed, one stopped
        await asyncio.gather(a.stop(signal.SIGKILL), b.stop())
        async with engine.connect() as conn:
            latest = (
                await conn.execute(
                    text(
                        "SELECT max(prompted_at) + make_interval(secs => :g) - now() "
                        "FROM lone_visits"
                    ),
                    {"g": ALARM_GRACE_S},
                )
            ).scalar_one()
            alerts_while_down = (
                await conn.execute(text("SELECT count(*) FROM safety_alerts"))
            ).scalar_one()
        assert alerts_while_down == 0  # the alarms are still to come
        await asyncio.sleep(max(0.0, latest.total_seconds()) + 0.5)  # all due while nobody runs
        await asyncio.gather(a.start(), b.start())

        async def all_alarmed() -> bool:
            return len(of_kind("safety.alert")) >= WORKERS

        await wait_for(all_alarmed)
        await asyncio.sleep(2.0)  # ten more ticks of each replica: nothing else may arrive

        prompts = of_kind("safety.prompt")
        alarms = of_kind("safety.alert")
        assert fake.violations == []
        # every worker asked exactly once, about their own visit
        assert Counter(subs[t] for t, _ in prompts) == Counter(dict.fromkeys(visits, 1))
        assert {subs[t]: p["data"]["visit_id"] for t, p in prompts} == visits
        assert all(p["title"] == "Are you OK? Tap to extend" for _, p in prompts)
        # the on-call editor alarmed exactly once per visit, and nobody else
        assert {subs[t] for t, _ in alarms} == {editor_id}
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text("SELECT id, visit_id, worker_id, kind, sends FROM safety_alerts")
                )
            ).all()
        assert sorted(str(r.visit_id) for r in rows) == sorted(visits.values())
        assert all((r.kind, r.sends) == ("overdue", 1) for r in rows)
        assert sorted(p["data"]["alert_id"] for _, p in alarms) == sorted(str(r.id) for r in rows)
        for _, p in alarms:
            assert p["title"].startswith("URGENT: Person ")
            assert p["body"].startswith("Last known: Riverside Depot at ")
        # urgency reached the push service
        assert {r.headers.get("Urgency") for r in fake.received} == {"high"}
    finally:
        await asyncio.gather(a.stop(), b.stop())
        await fake.stop()
