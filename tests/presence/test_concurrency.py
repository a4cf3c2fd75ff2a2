"""Two copies of one batch racing (a client retry while the first is in flight): stored once.

And a ping group that meets a deadlock (40P01: on Citus a distributed deadlock over a reference
table's copies) is run again from its start, with the same outcome as without the deadlock.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import timedelta
from typing import Any

from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from app.core.config import Settings
from app.presence import repository, service
from app.presence.groups import PingGroups
from app.presence.models import SubjectKind
from tests.conftest import APP_CONNECT_ARGS
from tests.factories import create_organisation, create_resident
from tests.presence.helpers import T0, at, create_circle, remove_committed


async def test_concurrent_identical_batches_store_once_and_fire_once(
    engine: AsyncEngine, settings: Settings
) -> None:
    async with AsyncSession(engine, expire_on_commit=False) as setup, setup.begin():
        org = await create_organisation(setup)
        await create_circle(setup, org.id, 0, 0, 40, dwell_s=60)
        res = await create_resident(setup, org)
    org_id, device_id = org.id, res.id
    pings = []
    for i in range(50):
        lon, lat = at(0 if i < 30 else 1000, 0)
        pings.append(service.PingInput(f"r{i}", lon, lat, T0 + timedelta(seconds=10 * i), 10.0))
    subject = service.Subject(SubjectKind.device, device_id, org_id)

    # two API processes (each its own PingGroups), as a client's retry may reach another one
    async def attempt() -> service.BatchResult:
        async with AsyncSession(engine) as s:
            return await PingGroups(settings).ingest(s, service.BatchRequest(subject, pings))

    try:
        first, second = await asyncio.gather(attempt(), attempt())
        assert sorted([first.accepted, second.accepted]) == [0, 50]
        assert sorted([first.duplicates, second.duplicates]) == [0, 50]
        assert [e["type"] for e in first.events + second.events] == [
            "nearby",
            "enter",
            "dwell",
            "exit",
        ]
        async with AsyncSession(engine) as s:
            n = await s.scalar(
                text("SELECT count(*) FROM pings WHERE subject_id = :s"), {"s": device_id}
            )
            assert n == 50
    finally:
        await remove_committed(engine, org_id, [device_id])


def _retries(sqlstate: str) -> float:
    labels = {"what": "ping group", "sqlstate": sqlstate}
    return REGISTRY.get_sample_value("hereabouts_db_transaction_retries_total", labels) or 0.0


async def _wait_for_a_lock_wait(engine: AsyncEngine, task: asyncio.Task[Any]) -> None:
    """Until some backend of the test cluster waits for a lock (on Citus: on any node); fails
    at once with what `task` (the group that should wait) ended with if it ends first."""
    async with engine.connect() as probe:
        citus = await probe.scalar(text("SELECT count(*) FROM pg_extension WHERE extname='citus'"))
        query = (
            "SELECT count(*) FROM citus_lock_waits"
            if citus
            else "SELECT count(*) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        for _ in range(400):
            if await probe.scalar(text(query)):
                return
            # a backend reads pg_stat_activity once per transaction: a new one for each look, or
            # a group that connected after the first look is never seen (a busy machine's flake)
            await probe.rollback()
            if task.done():
                raise AssertionError(f"the ping group ended without waiting: {task.exception()!r}")
            await asyncio.sleep(0.05)
        activity = (
            await probe.execute(
                text(
                    "SELECT state, wait_event_type, wait_event, left(query, 120) "
                    "FROM pg_stat_activity WHERE datname = current_database()"
                )
            )
        ).all()
    stack = ""
    awaited: Any = task.get_coro()
    while awaited is not None:  # the chain of awaits the group is stopped in
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is not None:
            stack += f"\n  {frame.f_code.co_filename}:{frame.f_lineno}"
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    raise AssertionError(
        f"the ping group never waited for the held presence row: {activity}; its stack:{stack}"
    )


async def test_a_ping_group_that_meets_a_deadlock_runs_again(
    engine: AsyncEngine, settings: Settings
) -> None:
    async with AsyncSession(engine, expire_on_commit=False) as setup, setup.begin():
        org = await create_organisation(setup)
        await create_circle(setup, org.id, 0, 0, 40, dwell_s=60)
        control = await create_resident(setup, org)
        victim = await create_resident(setup, org)
    org_id = org.id
    # inside the place: the first batch makes a presence row, the second updates it and dwells
    track = [
        service.PingInput(f"r{i}", *at(5, 0), T0 + timedelta(seconds=10 * i), accuracy_m=10.0)
        for i in range(12)
    ]
    first, second = track[:4], track[4:]
    groups = PingGroups(settings)
    # A waiting backend looks for a deadlock once, `deadlock_timeout` after it starts to wait.
    # At the default 1 s a busy machine could run the second statement below later than that,
    # and then only that transaction's own look (60 s) would find the cycle and cancel it instead
    # of the group: the group's sessions look after 4 s.
    server_settings = {**APP_CONNECT_ARGS["server_settings"], "deadlock_timeout": "4s"}
    group_engine = create_async_engine(
        str(settings.database_url),
        poolclass=NullPool,
        connect_args={"server_settings": server_settings},
    )

    async def ingest(device_id: uuid.UUID, pings: list[service.PingInput]) -> service.BatchResult:
        subject = service.Subject(SubjectKind.device, device_id, org_id)
        async with AsyncSession(group_engine) as s:
            return await groups.ingest(s, service.BatchRequest(subject, pings))

    async def event_types(device_id: uuid.UUID) -> list[str]:
        async with AsyncSession(engine) as s:
            rows = await s.execute(
                text(
                    "SELECT type FROM presence_events WHERE device_id = :d "
                    "ORDER BY occurred_at, type"
                ),
                {"d": device_id},
            )
            return [r[0] for r in rows]

    try:
        # the ground truth: the same two batches with nobody in the way
        await ingest(control.id, first)
        expected = await ingest(control.id, second)
        assert "dwell" in [e["type"] for e in expected.events]

        await ingest(victim.id, first)
        before = _retries("40P01")
        async with engine.connect() as other:
            await other.begin()
            # this transaction is never the one PostgreSQL cancels
            await other.execute(text("SET LOCAL deadlock_timeout = '60s'"))
            held = await other.execute(
                text("SELECT geofence_id FROM presence WHERE subject_id = :s FOR UPDATE"),
                {"s": victim.id},
            )
            assert held.all(), "the first batch left no presence row to hold"
            # the group locks its subject's row, then waits for the presence row held here ...
            task = asyncio.create_task(ingest(victim.id, second))
            await _wait_for_a_lock_wait(engine, task)
            # ... and this transaction now waits for the subject's row: a deadlock, which
            # cancels the group; its rollback lets this statement through
            await other.execute(
                text("SELECT 1 FROM presence_subjects WHERE subject_id = :s FOR UPDATE"),
                {"s": victim.id},
            )
            assert not task.done()  # run again, it waits for this transaction's locks
            await other.rollback()
        result = await asyncio.wait_for(task, 60)

        assert _retries("40P01") == before + 1
        assert result.accepted == len(second)
        assert [e["type"] for e in result.events] == [e["type"] for e in expected.events]
        assert await event_types(victim.id) == await event_types(control.id)
        async with AsyncSession(engine) as s:
            n = await s.scalar(
                text("SELECT count(*) FROM pings WHERE subject_id = :s"), {"s": victim.id}
            )
            assert n == len(track)
    finally:
        await group_engine.dispose()
        await remove_committed(engine, org_id, [control.id, victim.id])


async def test_two_pipelined_groups_sharing_subjects_lock_them_in_one_order(
    engine: AsyncEngine, settings: Settings, monkeypatch: Any
) -> None:
    """Two groups of the same two subjects, given in opposite orders, each read a subject per
    pipelined chunk. Each group's first read waits (up to a second) for the other's, so that
    chunks in the order given would each hold one subject and want the other's: a deadlock.
    The chunks go in subject order, so the second group waits for the first and both store
    their fixes."""
    monkeypatch.setattr(service, "PIPELINE_SUBJECTS", 1)
    async with AsyncSession(engine, expire_on_commit=False) as setup, setup.begin():
        org = await create_organisation(setup)
        await create_circle(setup, org.id, 0, 0, 40)
        devices = [await create_resident(setup, org) for _ in range(2)]
    org_id = org.id
    ids = sorted(d.id for d in devices)

    read = repository.read_batches
    met: set[int] = set()
    both = asyncio.Event()

    async def read_then_meet(session: Any, batches: Any, gap: float) -> Any:
        views = await read(session, batches, gap)
        if id(session) not in met:  # a group's first chunk
            met.add(id(session))
            if len(met) == 2:
                both.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(both.wait(), 1.0)
        return views

    monkeypatch.setattr(repository, "read_batches", read_then_meet)

    async def group(prefix: str, order: list[uuid.UUID], t: int) -> list[Any]:
        requests = [
            service.BatchRequest(
                service.Subject(SubjectKind.device, sid, org_id),
                [service.PingInput(f"{prefix}-{sid}", *at(5, 0), T0 + timedelta(seconds=t), 10.0)],
            )
            for sid in order
        ]
        async with AsyncSession(engine) as s:
            out = await service.ingest_ping_batches(s, settings, requests)
            await s.commit()
        return out

    try:
        first, second = await asyncio.gather(
            group("a", ids, 10), group("b", list(reversed(ids)), 20)
        )
        assert [r.accepted for r in first + second] == [1, 1, 1, 1]
        async with AsyncSession(engine) as s:
            stored = await s.scalar(
                text("SELECT count(*) FROM pings WHERE subject_id = ANY(:s)"), {"s": ids}
            )
        assert stored == 4
    finally:
        await remove_committed(engine, org_id, ids)
