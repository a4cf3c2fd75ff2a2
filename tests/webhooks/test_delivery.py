"""Webhook delivery end to end: events recorded → outbox → worker → a real loopback receiver that
verifies every signature with the `standardwebhooks` library."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from standardwebhooks.webhooks import Webhook

from app.accounts import service as accounts_service
from app.accounts.models import Role
from app.accounts.principal import Principal
from app.core.config import Settings
from app.core.db import create_sessionmaker
from app.core.subject import SubjectRef
from app.events import service as events_service
from app.events.types import Event, EventType, Source
from app.main import create_app
from app.notifications.endpoints import AddressGuard
from app.webhooks import service as webhooks_service
from app.webhooks.schemas import EndpointCreate, ReplayRequest
from app.webhooks.worker import WebhookWorker
from tests.webhooks.conftest import Receiver

GUARD_S = 60.0


async def wait_for(check: Callable[[], Awaitable[bool] | bool], guard_s: float = GUARD_S) -> None:
    async with asyncio.timeout(guard_s):
        while True:
            got = check()
            if not isinstance(got, bool):
                got = await got
            if got:
                return
            await asyncio.sleep(0.05)


async def rows(engine: AsyncEngine, sql: str, **params: Any) -> list[Any]:
    async with engine.connect() as conn:
        return list(await conn.execute(text(sql), params))


class World:
    def __init__(self, engine: AsyncEngine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.sessionmaker = create_sessionmaker(engine)

    async def admin(self) -> Principal:
        async with self.sessionmaker() as s, s.begin():
            slug = f"org-{secrets.token_hex(4)}"
            org = await accounts_service.create_organisation(s, slug, "Hook Town")
            user = await accounts_service.create_user(
                s,
                org.id,
                email=f"admin-{secrets.token_hex(4)}@example.org",
                full_name="Admin",
                password="correct horse battery staple",
                role=Role.admin,
            )
            return Principal("staff", user.id, org.id, Role.admin)

    async def endpoint(
        self,
        admin: Principal,
        receiver: Receiver,
        name: str,
        types: list[str] | None = None,
        **kw: Any,
    ) -> uuid.UUID:
        async with self.sessionmaker() as s, s.begin():
            ep, secret = await webhooks_service.create_endpoint(
                s,
                self.settings,
                admin,
                EndpointCreate(url=receiver.url(name), event_types=types or ["*"], **kw),
            )
        receiver.routes[name].secret = secret
        return ep.id

    async def record(self, events: list[Event]) -> None:
        async with self.sessionmaker() as s, s.begin():
            await events_service.record(s, events, self.settings)


def event(org: uuid.UUID, type_: EventType, person: uuid.UUID | None = None, **kw: Any) -> Event:
    source = {
        "place": Source.ping,
        "checkin": Source.checkin,
        "task": Source.task,
        "offer": Source.offer,
        "broadcast": Source.broadcast,
        "report": Source.report,
    }[type_.value.split(".")[0]]
    return Event(
        id=uuid.uuid4(),
        organisation_id=org,
        type=type_,
        source=source,
        occurred_at=datetime.now(UTC),
        subject=SubjectRef("device", person or uuid.uuid4(), org),
        explanation={"why": type_.value},
        **kw,
    )


@pytest.fixture
async def world(wh_engine: AsyncEngine, wh_settings: Settings) -> World:
    # The events here are made up, about people and places that do not exist: only the webhook
    # fan-out runs on them (the activity feed's store, registered by any app an earlier test
    # created, would refuse them: its rows reference devices and places; an app registers its
    # hooks again when it is created).
    for name in events_service.hook_names():
        events_service.unregister_hook(name)
    webhooks_service.register()
    return World(wh_engine, wh_settings)


@pytest.fixture
async def run_worker(
    wh_engine: AsyncEngine, wh_settings: Settings
) -> AsyncIterator[Callable[..., WebhookWorker]]:
    started: list[tuple[WebhookWorker, asyncio.Task[None]]] = []

    def start(settings: Settings | None = None, guard: AddressGuard | None = None) -> WebhookWorker:
        w = WebhookWorker(settings or wh_settings, wh_engine, guard=guard)
        started.append((w, asyncio.create_task(w.run())))
        return w

    yield start
    for w, task in started:
        w.stop()
        await asyncio.wait_for(task, 20)


async def test_every_event_type_arrives_signed_with_pseudonymous_people(
    world: World, receiver: Receiver, run_worker: Callable[..., WebhookWorker]
) -> None:
    admin = await world.admin()
    await world.endpoint(admin, receiver, "all")
    person = uuid.uuid4()
    await world.record([event(admin.organisation_id, t, person) for t in EventType])
    run_worker()
    route = receiver.routes["all"]
    await wait_for(lambda: len(route.received) >= len(EventType))
    assert route.bad_signatures == 0
    assert sorted(r["body"]["type"] for r in route.received) == sorted(t.value for t in EventType)
    people = {r["body"]["data"]["person"]["id"] for r in route.received}
    assert len(people) == 1  # one stable pseudonym for one person …
    (pseudonym,) = people
    assert pseudonym.startswith("psn_")
    assert str(person) not in str(route.received)
    assert all(r["body"]["version"] == 1 for r in route.received)
    assert all(
        r["body"]["data"]["explanation"] == {"why": r["body"]["type"]} for r in route.received
    )


async def test_types_and_place_filters_choose_what_an_endpoint_gets(
    world: World, receiver: Receiver, run_worker: Callable[..., WebhookWorker]
) -> None:
    admin = await world.admin()
    place = uuid.uuid4()
    await world.endpoint(admin, receiver, "tasks", ["task.*"])
    await world.endpoint(admin, receiver, "here", ["place.entered"], geofence_ids=[place])
    org = admin.organisation_id
    await world.record(
        [
            event(org, EventType.task_done),
            event(org, EventType.place_entered, geofence_id=place),
            event(org, EventType.place_entered, geofence_id=uuid.uuid4()),
            event(org, EventType.offer_redeemed),
        ]
    )
    run_worker()
    await wait_for(lambda: len(receiver.routes["tasks"].received) == 1)
    await wait_for(lambda: len(receiver.routes["here"].received) == 1)
    await asyncio.sleep(0.5)
    assert [r["body"]["type"] for r in receiver.routes["tasks"].received] == ["task.done"]
    here = receiver.routes["here"].received
    assert [r["body"]["data"]["event_id"] for r in here]
    assert len(here) == 1
    webhook_rows = "SELECT count(*) FROM outbox WHERE channel = 'webhook'"
    assert (await rows(world.engine, webhook_rows))[0][0] == 2


async def test_a_receiver_answering_500_then_200_gets_the_message_exactly_once(
    world: World, receiver: Receiver, run_worker: Callable[..., WebhookWorker]
) -> None:
    admin = await world.admin()
    ep = await world.endpoint(admin, receiver, "flaky")
    receiver.routes["flaky"].answers = [500, 302]  # a redirect is not followed: a failure
    await world.record([event(admin.organisation_id, EventType.checkin_created)])
    run_worker()
    route = receiver.routes["flaky"]
    await wait_for(lambda: len(route.received) == 1)
    await asyncio.sleep(0.5)
    assert len(route.received) == 1
    assert route.requests == 3
    assert "elsewhere" not in receiver.routes or receiver.routes["elsewhere"].requests == 0
    log = await rows(
        world.engine,
        "SELECT attempt, status, http_status, latency_ms FROM webhook_attempts "
        "WHERE endpoint_id = :e ORDER BY attempt",
        e=ep,
    )
    assert [(r[0], r[1], r[2]) for r in log] == [
        (1, "retry", 500),
        (2, "retry", 302),
        (3, "delivered", 200),
    ]
    assert all(r[3] is not None and r[3] >= 0 for r in log)
    (state,) = await rows(
        world.engine, "SELECT status, failing_since FROM webhook_endpoints WHERE id = :e", e=ep
    )
    assert state == ("enabled", None)  # the success reset the breaker
    # per-endpoint metrics on the API's /metrics
    app = create_app(world.settings, engine=world.engine)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        text_ = (await client.get("/metrics")).text
    for result, n in (("delivered", 1.0), ("retried", 2.0)):
        line = f'hereabouts_webhook_deliveries_total{{endpoint="{ep}",result="{result}"}} {n}'
        assert line in text_
    assert f'hereabouts_webhook_latency_seconds_count{{endpoint="{ep}"}} 3.0' in text_


async def test_a_hanging_receiver_times_out_and_does_not_block_the_others(
    world: World,
    receiver: Receiver,
    run_worker: Callable[..., WebhookWorker],
    wh_settings: Settings,
) -> None:
    admin = await world.admin()
    slow = await world.endpoint(admin, receiver, "slow")
    await world.endpoint(admin, receiver, "fast")
    receiver.routes["slow"].hang = True
    org = admin.organisation_id
    await world.record([event(org, EventType.place_entered) for _ in range(20)])
    settings = wh_settings.model_copy(
        update={"webhook_per_endpoint_concurrency": 2, "webhook_worker_concurrency": 4}
    )
    started = time.monotonic()
    run_worker(settings)
    await wait_for(lambda: len(receiver.routes["fast"].received) == 20)
    # 20 messages through 2 free slots while the hanging endpoint holds the other 2
    assert time.monotonic() - started < 10
    await wait_for(lambda: _has_timeout(world.engine, slow))


async def _has_timeout(engine: AsyncEngine, endpoint: uuid.UUID) -> bool:
    got = await rows(
        engine,
        "SELECT count(*) FROM webhook_attempts WHERE endpoint_id = :e AND status = 'retry' "
        "AND error = 'timed out' AND latency_ms >= 900",
        e=endpoint,
    )
    return bool(got[0][0])


async def _admin_told(engine: AsyncEngine, admin: Principal) -> list[Any]:
    return await rows(
        engine,
        "SELECT title, body FROM notifications WHERE staff_user_id = :a AND kind = 'webhook'",
        a=admin.id,
    )


async def test_a_receiver_answering_410_is_disabled_and_its_admin_told(
    world: World, receiver: Receiver, run_worker: Callable[..., WebhookWorker]
) -> None:
    admin = await world.admin()
    ep = await world.endpoint(admin, receiver, "gone")
    receiver.routes["gone"].answers = [410]
    await world.record([event(admin.organisation_id, EventType.task_created)])
    run_worker()
    await wait_for(lambda: _status(world.engine, ep, "disabled"))
    (row,) = await rows(
        world.engine, "SELECT disabled_reason FROM webhook_endpoints WHERE id = :e", e=ep
    )
    assert "410" in row[0]
    told = await _admin_told(world.engine, admin)
    assert len(told) == 1
    assert "disabled" in told[0][0]
    # nothing more is sent to a disabled endpoint
    await world.record([event(admin.organisation_id, EventType.task_created)])
    await asyncio.sleep(0.6)
    assert receiver.routes["gone"].requests == 1


async def _status(engine: AsyncEngine, ep: uuid.UUID, want: str) -> bool:
    got = await rows(engine, "SELECT status FROM webhook_endpoints WHERE id = :e", e=ep)
    return bool(got) and got[0][0] == want


async def test_a_receiver_failing_for_the_whole_retry_window_is_disabled_and_its_admin_told(
    world: World,
    receiver: Receiver,
    run_worker: Callable[..., WebhookWorker],
    wh_settings: Settings,
) -> None:
    # the 3-day window, shortened to 1.5 s; the same code path decides
    admin = await world.admin()
    ep = await world.endpoint(admin, receiver, "down")
    receiver.routes["down"].answers = [503] * 1000
    await world.record([event(admin.organisation_id, EventType.offer_redeemed)])
    run_worker(wh_settings.model_copy(update={"webhook_retry_for_s": 1.5}))
    await wait_for(lambda: _status(world.engine, ep, "disabled"))
    (row,) = await rows(
        world.engine, "SELECT disabled_reason FROM webhook_endpoints WHERE id = :e", e=ep
    )
    assert "failed" in row[0]
    assert len(await _admin_told(world.engine, admin)) == 1
    statuses = await rows(world.engine, "SELECT status FROM outbox WHERE endpoint_id=:e", e=ep)
    assert [s[0] for s in statuses] == ["dead"]
    assert receiver.routes["down"].requests >= 2
    assert not receiver.routes["down"].received


async def test_a_replay_arrives_with_the_same_webhook_id(
    world: World, receiver: Receiver, run_worker: Callable[..., WebhookWorker]
) -> None:
    admin = await world.admin()
    ep = await world.endpoint(admin, receiver, "r")
    org = admin.organisation_id
    before = datetime.now(UTC)
    await world.record([event(org, EventType.place_exited), event(org, EventType.place_dwelled)])
    run_worker()
    route = receiver.routes["r"]
    await wait_for(lambda: len(route.received) == 2)
    first = {r["id"] for r in route.received}
    (message_id,) = (
        await rows(
            world.engine,
            "SELECT id FROM outbox WHERE endpoint_id = :e AND event_type='place.exited'",
            e=ep,
        )
    )[0]
    async with world.sessionmaker() as s, s.begin():
        await webhooks_service.replay(s, org, ep, ReplayRequest(message_id=message_id))
    await wait_for(lambda: len(route.received) == 3)
    assert route.received[2]["id"] in first
    assert route.received[2]["body"]["type"] == "place.exited"
    async with world.sessionmaker() as s, s.begin():
        copies = await webhooks_service.replay(
            s,
            org,
            ep,
            ReplayRequest(since=before, until=datetime.now(UTC) + timedelta(seconds=1)),
        )
    assert len(copies) == 2  # the originals, not the earlier replay
    await wait_for(lambda: len(route.received) == 5)
    assert {r["id"] for r in route.received[3:]} == first


async def test_a_rotated_secret_signs_next_to_the_old_one(
    world: World, receiver: Receiver, run_worker: Callable[..., WebhookWorker]
) -> None:
    admin = await world.admin()
    ep = await world.endpoint(admin, receiver, "rot")
    old = receiver.routes["rot"].secret
    async with world.sessionmaker() as s, s.begin():
        new, until = await webhooks_service.rotate_secret(
            s, world.settings, admin.organisation_id, ep
        )
    assert new != old
    assert until - datetime.now(UTC) > timedelta(hours=23)
    receiver.routes["rot"].secret = new  # the receiver verifies with the new secret …
    await world.record([event(admin.organisation_id, EventType.broadcast_sent)])
    worker = run_worker()
    await wait_for(lambda: len(receiver.routes["rot"].received) == 1)
    # … and a message signed now also verifies with the old one (both signatures are sent)
    job = (
        await rows(world.engine, "SELECT msg_id, payload FROM outbox WHERE endpoint_id=:e", e=ep)
    )[0]
    from app.webhooks import signing

    ts = int(time.time())
    header = signing.signature_header(
        webhooks_service.signing_secrets(new, old, until, datetime.now(UTC)),
        job[0],
        ts,
        job[1].encode(),
    )
    headers = {"webhook-id": job[0], "webhook-timestamp": str(ts), "webhook-signature": header}
    for key in (old, new):
        Webhook(key).verify(job[1].encode(), headers)
    assert len(header.split(" ")) == 2
    assert worker.stats.sent == 1


async def test_private_targets_are_refused_at_connect_time(
    world: World, receiver: Receiver, run_worker: Callable[..., WebhookWorker]
) -> None:
    # registered while loopback was allowed; the worker's guard (as in production) refuses it
    admin = await world.admin()
    ep = await world.endpoint(admin, receiver, "inside")
    await world.record([event(admin.organisation_id, EventType.place_nearby)])
    run_worker(guard=AddressGuard(allow_loopback=False))
    await wait_for(lambda: _attempted(world.engine, ep))
    log = await rows(world.engine, "SELECT status, http_status, error FROM webhook_attempts")
    assert log[0][0] == "retry"
    assert log[0][1] is None
    assert "refused at connect time" in log[0][2]
    assert receiver.routes["inside"].requests == 0


async def _attempted(engine: AsyncEngine, ep: uuid.UUID) -> bool:
    got = await rows(engine, "SELECT count(*) FROM webhook_attempts WHERE endpoint_id=:e", e=ep)
    return bool(got[0][0])


async def test_a_429_with_retry_after_is_retried_no_sooner_than_asked(
    world: World, receiver: Receiver, run_worker: Callable[..., WebhookWorker]
) -> None:
    admin = await world.admin()
    ep = await world.endpoint(admin, receiver, "busy")
    receiver.routes["busy"].answers = [429]
    receiver.routes["busy"].retry_after = "2"  # the test backoff alone would retry within 0.2 s
    await world.record([event(admin.organisation_id, EventType.place_entered)])
    run_worker()
    await wait_for(lambda: len(receiver.routes["busy"].received) == 1)
    await wait_for(lambda: _attempts(world.engine, ep, 2))
    log = await rows(
        world.engine,
        "SELECT http_status, attempted_at FROM webhook_attempts WHERE endpoint_id = :e "
        "ORDER BY attempt",
        e=ep,
    )
    assert [r[0] for r in log] == [429, 200]
    assert (log[1][1] - log[0][1]).total_seconds() >= 1.9


async def _attempts(engine: AsyncEngine, ep: uuid.UUID, n: int) -> bool:
    got = await rows(engine, "SELECT count(*) FROM webhook_attempts WHERE endpoint_id=:e", e=ep)
    return bool(got[0][0] >= n)
