"""kill -9 of a `hereabouts worker` evaluating a set: nothing lost, nothing evaluated twice.

Its own database (the worker commits for real). Six devices' walks are queued as single-fix
202 pings; six twins send the same fixes synchronously, which is the ground truth. The test
holds a row lock on the place, so the worker's set stops half-way: the subjects claimed, the
fixes read and evaluated, the write waiting on the place's row (its events refer to it). Then
the worker is killed with SIGKILL, and a second worker evaluates the queue.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from app.core.cluster import EmbeddedCluster
from app.core.config import PROJECT_ROOT, Settings
from app.core.db import create_sessionmaker
from app.core.heap import YOUNG_THRESHOLD
from app.core.metrics import PING_EVAL_SLOT_WAITS
from app.presence import repository, service
from app.presence.models import SubjectKind
from tests.conftest import ON_CITUS, migrated_database
from tests.factories import create_organisation, create_resident
from tests.presence.helpers import at, create_circle

DEVICES = 6
# The worker's backend writing its set, waiting for the place's row. On Citus the coordinator's
# backend waits for the worker node that applies the write (wait event type 'Extension'), and
# that node's backend waits for the lock: found in citus_stat_activity (every node's backends).
WAITING_WRITE_SQL = (
    "SELECT a.pid FROM pg_stat_activity a WHERE a.datname = current_database() "
    "AND a.pid <> pg_backend_pid() AND a.state = 'active' "
    "AND a.query LIKE 'SELECT hereabouts_ping_write(%' "
    + (
        "AND a.wait_event_type = 'Extension' AND EXISTS (SELECT 1 FROM citus_stat_activity c "
        "WHERE c.datname = current_database() AND c.wait_event_type = 'Lock')"
        if ON_CITUS
        else "AND a.wait_event_type = 'Lock'"
    )
)
WALK_M = [200, 120, 60, 10, 0, -5, 5, 20, 150, 250, 300]


@pytest.fixture(scope="module")
def crash_url(pg_cluster: EmbeddedCluster) -> Iterator[str]:
    with migrated_database(pg_cluster, "hereabouts_evalcrash") as url:
        yield url


@pytest.fixture
async def crash_engine(crash_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(crash_url, poolclass=NullPool)
    yield engine
    await engine.dispose()


def _worker(
    url: str, args: list[str] | None = None, *, stdout: int = subprocess.DEVNULL
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEREABOUTS_")} | {
        "HEREABOUTS_DATABASE_URL": url,
        "HEREABOUTS_ENVIRONMENT": "test",
        "HEREABOUTS_LOG_LEVEL": "ERROR",
        "HEREABOUTS_JWT_SECRET": "crash-test-secret-" + "z" * 32,
        "HEREABOUTS_PING_EVALUATOR_MAX_SUBJECTS": "100",
        "HEREABOUTS_PING_EVALUATOR_POLL_S": "0.2",
    }
    return subprocess.Popen(
        [sys.executable, *(args or ["-m", "app.cli", "worker", "--no-push"])],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=stdout,
        stderr=subprocess.DEVNULL,
    )


async def _scalar(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar()


async def _events(engine: AsyncEngine, device_id: uuid.UUID) -> list[tuple[Any, ...]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT type, ping_id, occurred_at, explanation FROM presence_events "
                "WHERE device_id = :d ORDER BY occurred_at, type"
            ),
            {"d": device_id},
        )
        return [(t, p, o, json.dumps(x, sort_keys=True)) for t, p, o, x in rows]


async def _until(check: Any, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.1)


async def test_kill_9_mid_set_loses_nothing_and_doubles_nothing(
    crash_url: str, crash_engine: AsyncEngine, settings: Settings
) -> None:
    sessions = create_sessionmaker(crash_engine)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    async with sessions() as s, s.begin():
        org = await create_organisation(s)
        place = await create_circle(s, org.id, 0, 0, 40, trigger_distance_m=30, dwell_s=60)
        pairs = []
        for _ in range(DEVICES):
            a, b = await create_resident(s, org), await create_resident(s, org)
            await service.set_background_location(s, a.id, True)
            await service.set_background_location(s, b.id, True)
            pairs.append((a.id, b.id))
        org_id = org.id
    walk = [
        service.PingInput(f"p{i}", *at(e, 0), start + timedelta(seconds=10 * i), 8.0)
        for i, e in enumerate(WALK_M)
    ]
    for queued, twin in pairs:
        async with sessions() as s, s.begin():  # the ground truth: evaluated synchronously
            twin_s = service.Subject(SubjectKind.device, twin, org_id)
            assert (await service.ingest_ping_batch(s, settings, twin_s, walk)).events
        subject = service.Subject(SubjectKind.device, queued, org_id)
        for p in walk:
            async with sessions() as s, s.begin():
                ack = await service.enqueue_ping_batch(s, settings, subject, [p])
                assert ack.accepted == [p.id]
    total = DEVICES * len(WALK_M)

    blocker = await crash_engine.connect()
    await blocker.begin()
    await blocker.execute(text("SELECT 1 FROM geofences WHERE id = :g FOR UPDATE"), {"g": place})
    first = _worker(crash_url)
    try:
        waiting_pid = await _until(lambda: _scalar(crash_engine, WAITING_WRITE_SQL))
        # mid-set: it holds every subject, so another evaluator gets none of them (SKIP LOCKED)
        async with sessions() as s:
            assert await repository.claim_queued(s, 100) == []
            await s.rollback()
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
        await blocker.rollback()
        await blocker.close()
    await _until(
        lambda: _scalar(
            crash_engine,
            "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = :p",
            p=waiting_pid,
        )
    )

    # nothing of the set stayed: every fix still queued, no ping, no event, no watermark moved
    assert await _scalar(crash_engine, "SELECT count(*) FROM ping_queue") == total
    queued_ids = [q for q, _ in pairs]
    for table, column in (("pings", "subject_id"), ("presence_events", "device_id")):
        n = await _scalar(
            crash_engine,
            f"SELECT count(*) FROM {table} WHERE {column} = ANY(:ids)",
            ids=queued_ids,
        )
        assert n == 0, table
    moved = await _scalar(
        crash_engine,
        "SELECT count(*) FROM presence_subjects WHERE subject_id = ANY(:ids) "
        "AND last_fix_at IS NOT NULL",
        ids=queued_ids,
    )
    assert moved == 0

    second = _worker(crash_url)
    try:
        await _until(
            lambda: _scalar(crash_engine, "SELECT count(*) = 0 FROM ping_queue"), timeout_s=90
        )
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(timeout=20)
        except subprocess.TimeoutExpired:
            second.kill()
    assert second.returncode == 0

    for queued, twin in pairs:
        got, want = await _events(crash_engine, queued), await _events(crash_engine, twin)
        assert want
        assert got == want  # the same events, each once
        n = await _scalar(
            crash_engine, "SELECT count(*) FROM pings WHERE subject_id = :s", s=queued
        )
        assert n == len(WALK_M)


async def test_a_subject_whose_set_fails_holds_up_no_one_else(
    crash_engine: AsyncEngine, settings: Settings
) -> None:
    """The evaluator loop: a set that fails is retried one subject at a time; the faulty
    subject's fixes stay queued, everyone else's are evaluated."""
    from app.presence import evaluator

    sessions = create_sessionmaker(crash_engine)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20)
    async with sessions() as s, s.begin():
        org = await create_organisation(s)
        await create_circle(s, org.id, 0, 0, 40, trigger_distance_m=30, dwell_s=60)
        devices = [await create_resident(s, org) for _ in range(4)]
        for d in devices:
            await service.set_background_location(s, d.id, True)
        org_id = org.id
    ids = [d.id for d in devices]
    faulty = ids[2]
    walk = [
        service.PingInput(f"q{i}", *at(e, 0), start + timedelta(seconds=10 * i), 8.0)
        for i, e in enumerate(WALK_M)
    ]
    for device in ids:
        async with sessions() as s, s.begin():
            subject = service.Subject(SubjectKind.device, device, org_id)
            await service.enqueue_ping_batch(s, settings, subject, walk)

    async def broken(_session: Any, events: list[dict[str, Any]]) -> None:
        if any(e["device_id"] == faulty for e in events):
            raise RuntimeError("a hook that fails for one device")

    stop = asyncio.Event()
    quick = settings.model_copy(
        update={"ping_evaluator_poll_s": 0.1, "ping_evaluator_max_subjects": 10}
    )
    task = asyncio.create_task(evaluator.run_evaluator(quick, crash_engine, stop, on_events=broken))
    try:
        left = "SELECT count(DISTINCT subject_id) FROM ping_queue WHERE subject_id = ANY(:ids)"
        await _until(lambda: _scalar(crash_engine, f"SELECT ({left}) = 1", ids=ids))
        await asyncio.sleep(0.5)  # and it stays so
        assert await _scalar(crash_engine, left, ids=ids) == 1
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
    queued = await _scalar(
        crash_engine, "SELECT count(*) FROM ping_queue WHERE subject_id = :s", s=faulty
    )
    assert queued == len(WALK_M)
    assert await _events(crash_engine, faulty) == []
    for device in ids:
        if device != faulty:
            assert {e[0] for e in await _events(crash_engine, device)} >= {"enter", "exit"}


async def test_the_worker_settles_its_heap_as_an_api_process_does(
    crash_url: str, crash_engine: AsyncEngine
) -> None:
    """`hereabouts worker` freezes its startup heap and collects young objects less often
    (app/core/heap.py), as each API process does: without it, the evaluator's sets paid for the
    collector traversing the startup heap again and again (docs/benchmarks.md)."""
    # the real command, in its own process; its collector's settings printed as it exits
    code = (
        "import atexit, gc, runpy, sys\n"
        "atexit.register(lambda: print('gc', gc.get_threshold()[0], gc.get_freeze_count(),"
        " flush=True))\n"
        "sys.argv = ['hereabouts', 'worker', '--no-push']\n"
        "runpy.run_module('app.cli', run_name='__main__')\n"
    )
    proc = _worker(crash_url, ["-c", code], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert "running" in line, line
        # its evaluator has connected: the signal handlers are in place, the heap settled
        await _until(
            lambda: _scalar(
                crash_engine,
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name = 'hereabouts'",
            )
        )
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    _, threshold, frozen = out.decode().split()
    assert int(threshold) == YOUNG_THRESHOLD
    assert int(frozen) > 10_000  # the modules, mappers and models loaded at startup


ADVISORY_WAIT_SQL = (
    "SELECT count(*) > 0 FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
    "WHERE d.datname = current_database() AND l.locktype = 'advisory' AND NOT l.granted"
)


@pytest.mark.parametrize(
    ("slots", "lag_ms"), [(1, 0), (2, 0), (2, 600_000)], ids=["one", "two", "two-when-behind"]
)
async def test_no_more_sets_than_slots_are_evaluated_at_once(
    crash_engine: AsyncEngine, settings: Settings, slots: int, lag_ms: int
) -> None:
    """`ping_evaluator_slots`: with one slot, a second evaluator waits while a set is being
    evaluated and the fixes queued meanwhile stay queued until that set commits; with two, the
    second evaluates them at once. With two opened only behind
    (`ping_evaluator_extra_slots_after_ms`), the second waits while the queue's oldest fix is
    younger than that, and takes the second slot once it is older. Either way every fix is
    evaluated once, with the events its synchronous twin got."""
    from app.presence import evaluator

    sessions = create_sessionmaker(crash_engine)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=40)
    far = 2000.0  # the second place, 2 km north of the first
    async with sessions() as s, s.begin():
        org = await create_organisation(s)
        await create_circle(s, org.id, 0, 0, 40, trigger_distance_m=30, dwell_s=60)
        await create_circle(s, org.id, 0, far, 40, trigger_distance_m=30, dwell_s=60)
        people = [await create_resident(s, org) for _ in range(4)]
        for p in people:
            await service.set_background_location(s, p.id, True)
        org_id = org.id
    first, first_twin, second, second_twin = (p.id for p in people)

    def walk(north_m: float) -> list[service.PingInput]:
        return [
            service.PingInput(f"s{i}", *at(e, north_m), start + timedelta(seconds=10 * i), 8.0)
            for i, e in enumerate(WALK_M)
        ]

    async def queue(device: uuid.UUID, fixes: list[service.PingInput]) -> None:
        subject = service.Subject(SubjectKind.device, device, org_id)
        for p in fixes:
            async with sessions() as s, s.begin():
                assert (await service.enqueue_ping_batch(s, settings, subject, [p])).accepted

    async def queued(device: uuid.UUID) -> int:
        sql = "SELECT count(*) FROM ping_queue WHERE subject_id = :s"
        return int(await _scalar(crash_engine, sql, s=device))

    for twin, north in ((first_twin, 0.0), (second_twin, far)):  # the ground truth
        async with sessions() as s, s.begin():
            subject = service.Subject(SubjectKind.device, twin, org_id)
            assert (await service.ingest_ping_batch(s, settings, subject, walk(north))).events
    await queue(first, walk(0.0))

    quick = settings.model_copy(
        update={
            "ping_evaluator_poll_s": 0.2,
            "ping_evaluator_delay_ms": 0,
            "ping_evaluator_slots": slots,
            "ping_evaluator_extra_slots_after_ms": lag_ms,
        }
    )
    # the first device's set stops in its events' hook, inside its transaction (holding its
    # slot) until released; a row lock would do on one node, but on Citus a row lock on a
    # place (a reference table) makes every set's write wait, not only the first's
    held, release = asyncio.Event(), asyncio.Event()

    async def hold(_session: Any, events: list[dict[str, Any]]) -> None:
        if not release.is_set() and any(e["device_id"] == first for e in events):
            held.set()
            await release.wait()

    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(evaluator.run_evaluator(quick, crash_engine, stop, on_events=hold))
    ]
    try:
        await asyncio.wait_for(held.wait(), 60)  # its set holds a slot
        await queue(second, walk(far))
        tasks.append(
            asyncio.create_task(evaluator.run_evaluator(quick, crash_engine, stop, on_events=hold))
        )
        if slots == 1 or lag_ms:
            await _until(lambda: _scalar(crash_engine, ADVISORY_WAIT_SQL))
            await asyncio.sleep(1.0)  # five polls
            assert await queued(second) == len(WALK_M)
        if lag_ms:
            # the queue falls behind: every fix in it, the held set's first one (the oldest)
            # included, is now older than the lag. (Only the second device's, with a lag of a
            # minute, and the second slot opened when the first device's fixes grew that old
            # in real time: the test passed by waiting a minute.)
            async with crash_engine.begin() as conn:  # UTC: IMMUTABLE, as Citus asks
                await conn.execute(
                    text(
                        "UPDATE ping_queue SET received_at = "
                        "(received_at AT TIME ZONE 'UTC' - interval '20 minutes') "
                        "AT TIME ZONE 'UTC' WHERE subject_id = ANY(:s)"
                    ),
                    {"s": [first, second]},
                )
        if slots > 1:
            # a minute at most, well within the lag (10 minutes): the second slot opens because
            # the queue is behind, not because its fixes grow older than the lag meanwhile
            await _until(lambda: _is_zero(queued(second)))
        assert await queued(first) == len(WALK_M)  # its set still waits, uncommitted
    finally:
        release.set()
        try:
            await _until(
                lambda: _scalar(crash_engine, "SELECT count(*) = 0 FROM ping_queue"), timeout_s=30
            )
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 20)
    for device, twin in ((first, first_twin), (second, second_twin)):
        got, want = await _events(crash_engine, device), await _events(crash_engine, twin)
        assert got == want
        n = await _scalar(
            crash_engine, "SELECT count(*) FROM pings WHERE subject_id = :s", s=device
        )
        assert n == len(WALK_M)


async def _is_zero(value: Awaitable[int]) -> bool:
    return await value == 0


@pytest.mark.parametrize("timeout", ["lock_timeout", "statement_timeout"])
async def test_an_evaluator_waits_for_a_taken_slot_only_so_long(
    crash_engine: AsyncEngine, settings: Settings, timeout: str
) -> None:
    """`take_slot` with every slot taken: False after `ping_evaluator_poll_s` (its lock
    timeout), or sooner if the connection's statement timeout is shorter; True once free."""
    from app.presence import evaluator

    one = settings.model_copy(
        update={
            "ping_evaluator_slots": 1,
            "ping_evaluator_poll_s": 0.3 if timeout == "lock_timeout" else 30,
        }
    )
    sessions = create_sessionmaker(crash_engine)
    holder = await crash_engine.connect()
    await holder.begin()
    await holder.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": evaluator.SLOT_KEY})
    try:
        async with sessions() as s:
            if timeout == "statement_timeout":
                await s.execute(text("SET statement_timeout = 300"))
            started = time.monotonic()
            waits = PING_EVAL_SLOT_WAITS._value.get()
            assert not await evaluator.take_slot(s, one)
            assert time.monotonic() - started < 10
            assert PING_EVAL_SLOT_WAITS._value.get() == waits + 1  # what operators see
            await s.rollback()
    finally:
        await holder.rollback()
        await holder.close()
    async with sessions() as s:
        assert await evaluator.take_slot(s, one)
        # the set's own statements wait as long as the session says again
        assert await s.scalar(text("SHOW lock_timeout")) == "0"
        await s.rollback()
