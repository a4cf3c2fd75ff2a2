"""Outbox workers against the fake push service, on a database of their own (committed rows).

Every test waits for an observable state (rows settled, requests held) with a generous guard
timeout that only turns a hang into a failure; nothing asserts on how long things took.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.accounts import service as accounts_service
from app.core.config import Settings
from app.core.db import create_sessionmaker
from app.notifications import service
from app.notifications.models import Delivery, PushSubscription
from app.notifications.schemas import NotificationPayload, Recipient
from app.notifications.worker import DeliveryWorker
from tests.notifications.fake_push import FakePushService, FakeSubscription

GUARD_S = 120.0


async def wait_for(
    check: Callable[[], Awaitable[bool]], guard_s: float = GUARD_S, step: float = 0.05
) -> None:
    async with asyncio.timeout(guard_s):
        while not await check():
            await asyncio.sleep(step)


async def scalar(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar_one()


async def statuses(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT status, count(*) FROM outbox GROUP BY 1"))
        return {r[0]: r[1] for r in rows}


async def all_settled(engine: AsyncEngine) -> bool:
    return int(await scalar(engine, "SELECT count(*) FROM outbox WHERE status='pending'")) == 0


class World:
    """An organisation with residents whose browsers are subscribed at fake push services."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessionmaker = create_sessionmaker(engine)
        self.org_id: uuid.UUID | None = None

    async def people(self, n: int) -> list[Recipient]:
        async with self.sessionmaker() as s, s.begin():
            if self.org_id is None:
                org = await accounts_service.create_organisation(
                    s, f"org-{secrets.token_hex(4)}", "Push Town"
                )
                self.org_id = org.id
            out = []
            for _ in range(n):
                slug = (
                    await s.execute(text("SELECT slug FROM organisations LIMIT 1"))
                ).scalar_one()
                device, _token = await accounts_service.register_device(s, slug, "web")
                out.append(Recipient("device", device.id, device.organisation_id))
            return out

    async def subscribe(
        self, who: Recipient, fake: FakePushService, n: int = 1
    ) -> list[FakeSubscription]:
        subs = [fake.subscribe() for _ in range(n)]
        async with self.sessionmaker() as s, s.begin():
            for sub in subs:
                s.add(
                    PushSubscription(
                        organisation_id=who.organisation_id,
                        device_id=who.id,
                        endpoint=sub.endpoint,
                        origin=fake.origin,
                        p256dh=sub.p256dh,
                        auth=sub.auth_b64,
                    )
                )
        return subs

    async def notify(
        self, recipients: list[Recipient], per_person: int = 1, **kw: Any
    ) -> list[uuid.UUID]:
        ids = []
        async with self.sessionmaker() as s, s.begin():
            for who in recipients:
                for i in range(per_person):
                    note = await service.enqueue(
                        s,
                        recipient=who,
                        payload=NotificationPayload(title=f"Hello {i}", tag=f"t{i}"),
                        **kw,
                    )
                    ids.append(note.id)
        return ids


def worker(settings: Settings, engine: AsyncEngine, **overrides: Any) -> DeliveryWorker:
    return DeliveryWorker(settings.model_copy(update=overrides), engine)


async def run_until(
    workers: list[DeliveryWorker],
    done: Callable[[], Awaitable[bool]],
    listen: bool = True,
) -> None:
    tasks = [asyncio.create_task(w.run(listen=listen)) for w in workers]
    try:
        await wait_for(done)
    finally:
        for w in workers:
            w.stop()
        await asyncio.gather(*tasks)


async def test_notification_reaches_every_subscription_and_is_logged(
    push_engine: AsyncEngine, push_settings: Settings, fake_push: FakePushService
) -> None:
    world = World(push_engine)
    [alice] = await world.people(1)
    await world.subscribe(alice, fake_push, 3)
    [note_id] = await world.notify([alice])
    await run_until([worker(push_settings, push_engine)], lambda: all_settled(push_engine))
    assert fake_push.violations == []
    assert await statuses(push_engine) == {"delivered": 3}
    payloads = {orjson.loads(r.plaintext)["id"] for r in fake_push.received}
    assert payloads == {str(note_id)}
    topics = {r.headers["Topic"] for r in fake_push.received}
    assert len(topics) == 1
    assert all(
        0 < int(r.headers["TTL"]) <= push_settings.push_default_ttl_s for r in fake_push.received
    )
    async with push_engine.connect() as conn:
        logged = (await conn.execute(select(Delivery))).all()
    assert len(logged) == 3
    assert {d.status for d in logged} == {"delivered"}
    assert all(d.push_origin == fake_push.origin and d.latency_ms is not None for d in logged)


async def test_rolled_back_transaction_sends_nothing(
    push_engine: AsyncEngine, push_settings: Settings, fake_push: FakePushService
) -> None:
    world = World(push_engine)
    [alice] = await world.people(1)
    await world.subscribe(alice, fake_push)
    async with world.sessionmaker() as s:
        await service.enqueue(s, recipient=alice, payload=NotificationPayload(title="never"))
        await s.rollback()
    assert int(await scalar(push_engine, "SELECT count(*) FROM outbox")) == 0


async def test_gone_subscription_is_removed_and_failures_keep_it(
    push_engine: AsyncEngine, push_settings: Settings, fake_push: FakePushService
) -> None:
    world = World(push_engine)
    [alice, bob] = await world.people(2)
    [gone] = await world.subscribe(alice, fake_push)
    [rejected] = await world.subscribe(bob, fake_push)
    fake_push.script(gone, 410)
    fake_push.script(rejected, 413)
    await world.notify([alice, bob])
    await run_until([worker(push_settings, push_engine)], lambda: all_settled(push_engine))
    assert await statuses(push_engine) == {"gone": 1, "failed": 1}
    async with push_engine.connect() as conn:
        endpoints = (await conn.execute(select(PushSubscription.endpoint))).scalars().all()
        logged = (await conn.execute(select(Delivery.status, Delivery.http_status))).all()
    assert endpoints == [rejected.endpoint]
    assert sorted(logged) == [("failed", 413), ("gone", 410)]


async def test_429_and_500_are_retried_until_delivered(
    push_engine: AsyncEngine, push_settings: Settings, fake_push: FakePushService
) -> None:
    world = World(push_engine)
    [alice] = await world.people(1)
    [sub] = await world.subscribe(alice, fake_push)
    fake_push.script(sub, (429, "0"), 500)
    await world.notify([alice])
    await run_until([worker(push_settings, push_engine)], lambda: all_settled(push_engine))
    assert await statuses(push_engine) == {"delivered": 1}
    async with push_engine.connect() as conn:
        attempts = (
            await conn.execute(
                select(Delivery.attempt, Delivery.status, Delivery.http_status).order_by(
                    Delivery.attempt
                )
            )
        ).all()
    assert [tuple(a) for a in attempts] == [
        (1, "retry", 429),
        (2, "retry", 500),
        (3, "delivered", 201),
    ]


async def test_retry_after_is_honoured(
    push_engine: AsyncEngine, push_settings: Settings, fake_push: FakePushService
) -> None:
    world = World(push_engine)
    [alice] = await world.people(1)
    [sub] = await world.subscribe(alice, fake_push)
    fake_push.script(sub, (429, "3600"))
    await world.notify([alice])
    w = worker(push_settings, push_engine)
    await run_until([w], lambda: _attempts_logged(push_engine, 1))
    delay = await scalar(
        push_engine,
        "SELECT EXTRACT(EPOCH FROM next_attempt_at - now()) FROM outbox",
    )
    assert 3500 < float(delay) <= 3600
    assert await statuses(push_engine) == {"pending": 1}


async def _attempts_logged(engine: AsyncEngine, n: int) -> bool:
    return int(await scalar(engine, "SELECT count(*) FROM push_deliveries")) >= n


async def test_dead_letter_after_max_attempts(
    push_engine: AsyncEngine, push_settings: Settings, fake_push: FakePushService
) -> None:
    world = World(push_engine)
    [alice] = await world.people(1)
    [sub] = await world.subscribe(alice, fake_push)
    fake_push.script(sub, *([500] * push_settings.push_max_attempts))
    await world.notify([alice])
    await run_until([worker(push_settings, push_engine)], lambda: all_settled(push_engine))
    assert await statuses(push_engine) == {"dead": 1}
    assert fake_push.requests == push_settings.push_max_attempts


async def test_dead_letter_past_ttl_without_sending(
    push_engine: AsyncEngine, push_settings: Settings, fake_push: FakePushService
) -> None:
    world = World(push_engine)
    [alice] = await world.people(1)
    await world.subscribe(alice, fake_push)
    await world.notify([alice], ttl_s=60)
    async with push_engine.begin() as conn:
        await conn.execute(text("UPDATE outbox SET expires_at = now() - interval '1 s'"))
    await run_until([worker(push_settings, push_engine)], lambda: all_settled(push_engine))
    assert await statuses(push_engine) == {"dead": 1}
    assert fake_push.requests == 0


class DiesAfterSending(DeliveryWorker):
    """A worker that sends but never gets to record (as if killed right after the POST)."""

    async def record(self, items: list[Any]) -> None:
        await asyncio.Event().wait()


async def test_worker_killed_between_send_and_record_is_redelivered_after_its_lease(
    push_engine: AsyncEngine, push_settings: Settings, fake_push: FakePushService
) -> None:
    world = World(push_engine)
    people = await world.people(5)
    for who in people:
        await world.subscribe(who, fake_push)
    await world.notify(people)
    doomed = DiesAfterSending(push_settings.model_copy(update={"push_lease_s": 1.0}), push_engine)
    task = asyncio.create_task(doomed.run())

    async def all_sent_once() -> bool:
        return len(fake_push.received) == 5

    await wait_for(all_sent_once)
    task.cancel()  # the kill: nothing after the POST was written
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await statuses(push_engine) == {"pending": 5}
    await run_until([worker(push_settings, push_engine)], lambda: all_settled(push_engine))
    assert await statuses(push_engine) == {"delivered": 5}
    per_message = fake_push.deliveries_per_message()
    assert sorted(per_message.values()) == [2] * 5  # at-least-once: sent again, same Topic
    assert len({r.headers["Topic"] for r in fake_push.received}) == 1


@pytest.mark.slow
@pytest.mark.parametrize("n_workers", [2, 4])
async def test_concurrent_workers_send_each_of_5000_rows_exactly_once(
    push_engine: AsyncEngine,
    push_settings: Settings,
    fake_push: FakePushService,
    n_workers: int,
) -> None:
    world = World(push_engine)
    people = await world.people(50)
    for who in people:
        await world.subscribe(who, fake_push, 10)
    await world.notify(people, per_person=10)
    assert int(await scalar(push_engine, "SELECT count(*) FROM outbox")) == 5000
    fake_push.decrypt = False  # decryption is covered elsewhere; here count the messages
    settings = push_settings.model_copy(
        update={"push_worker_concurrency": 64, "push_worker_batch": 50, "push_lease_s": 60.0}
    )
    workers = [DeliveryWorker(settings, push_engine, name=f"w{i}") for i in range(n_workers)]
    await run_until(workers, lambda: all_settled(push_engine))
    assert fake_push.violations == []
    assert await statuses(push_engine) == {"delivered": 5000}
    assert fake_push.requests == 5000
    async with push_engine.connect() as conn:
        logged = (
            await conn.execute(
                select(Delivery.outbox_id, func.count()).group_by(Delivery.outbox_id)
            )
        ).all()
    assert len(logged) == 5000
    assert {c for _id, c in logged} == {1}
    assert all(w.stats.claimed > 0 for w in workers)  # the work really was shared


async def test_queue_drains_by_polling_when_the_listen_connection_drops(
    push_engine: AsyncEngine, push_settings: Settings, fake_push: FakePushService
) -> None:
    world = World(push_engine)
    people = await world.people(3)
    for who in people:
        await world.subscribe(who, fake_push)
    w = worker(push_settings, push_engine)
    task = asyncio.create_task(w.run())

    async def listening() -> bool:
        return w._listen_conn is not None

    await wait_for(listening)
    conn_ = w._listen_conn
    assert conn_ is not None
    pid = conn_.get_server_pid()
    w.listen_dsn = "postgresql://nobody@127.0.0.1:9/none"  # it cannot come back
    async with push_engine.connect() as conn:
        # typed: Citus adds pg_terminate_backend(bigint) for its cluster-wide process ids
        await conn.execute(text("SELECT pg_terminate_backend(CAST(:pid AS integer))"), {"pid": pid})

    async def disconnected() -> bool:
        return w._listen_conn is None

    await wait_for(disconnected)
    await world.notify(people)  # its NOTIFY reaches nobody
    try:
        await wait_for(lambda: all_settled(push_engine))
    finally:
        w.stop()
        await task
    assert await statuses(push_engine) == {"delivered": 3}


async def test_a_hanging_push_service_does_not_stall_other_origins(
    push_engine: AsyncEngine,
    push_settings: Settings,
    fake_push: FakePushService,
    other_fake_push: FakePushService,
) -> None:
    world = World(push_engine)
    slow_people = await world.people(6)
    fast_people = await world.people(20)
    for who in slow_people:
        for sub in await world.subscribe(who, fake_push):
            fake_push.script(sub, "hang")
    for who in fast_people:
        await world.subscribe(who, other_fake_push)
    await world.notify(slow_people)
    await world.notify(fast_people)
    w = worker(push_settings, push_engine, push_worker_concurrency=4, push_per_origin_concurrency=2)
    task = asyncio.create_task(w.run())

    async def fast_done() -> bool:
        return len(other_fake_push.received) == 20

    try:
        await wait_for(fast_done)
        # All of the other origin went through while the slow one still holds its requests.
        assert fake_push.hanging == 2
        assert len(fake_push.received) == 0
        fake_push.release.set()
        await wait_for(lambda: all_settled(push_engine))
    finally:
        w.stop()
        await task
    assert await statuses(push_engine) == {"delivered": 26}


KILLED_WORKER = """
import asyncio, os, signal
from app.core.config import Settings
from app.core.db import create_engine
from app.notifications.worker import DeliveryWorker

class DiesBeforeRecording(DeliveryWorker):
    async def record(self, items):
        os.kill(os.getpid(), signal.SIGKILL)

async def main():
    settings = Settings()
    await DiesBeforeRecording(settings, create_engine(settings, settings.database_url)).run()

asyncio.run(main())
"""


async def test_worker_process_sigkilled_after_sending_is_redelivered_after_its_lease(
    push_engine: AsyncEngine,
    push_settings: Settings,
    push_database_url: str,
    vapid_pem: str,
    fake_push: FakePushService,
) -> None:
    import os
    import signal
    import sys

    from app.core.config import PROJECT_ROOT

    world = World(push_engine)
    people = await world.people(5)
    for who in people:
        await world.subscribe(who, fake_push)
    await world.notify(people)
    env = {
        **os.environ,
        "HEREABOUTS_ENVIRONMENT": "test",
        "HEREABOUTS_DATABASE_URL": push_database_url,
        "HEREABOUTS_VAPID_PRIVATE_KEY": vapid_pem,
        "HEREABOUTS_VAPID_SUBJECT": push_settings.vapid_subject,
        "HEREABOUTS_PUSH_ALLOW_LOOPBACK": "true",
        "HEREABOUTS_PUSH_LEASE_S": "1",
        "HEREABOUTS_LOG_LEVEL": "WARNING",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", KILLED_WORKER, env=env, cwd=str(PROJECT_ROOT)
    )
    async with asyncio.timeout(GUARD_S):
        returncode = await proc.wait()
    assert returncode == -signal.SIGKILL
    sent_before_kill = set(fake_push.deliveries_per_message())
    assert sent_before_kill  # it did send before dying
    assert int(await scalar(push_engine, "SELECT count(*) FROM push_deliveries")) == 0
    await run_until([worker(push_settings, push_engine)], lambda: all_settled(push_engine))
    assert await statuses(push_engine) == {"delivered": 5}
    per_message = fake_push.deliveries_per_message()
    assert len(per_message) == 5
    assert all(per_message[m] == 2 for m in sent_before_kill)
    assert int(await scalar(push_engine, "SELECT count(*) FROM push_deliveries")) == 5
