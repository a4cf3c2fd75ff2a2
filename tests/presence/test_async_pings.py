"""POST /v1/pings answered 202 (stored, evaluated moments later) and the evaluator's sets.

The evaluation runs here in the test's transaction (`service.evaluate_queued`), so every step
can be checked; tests/rules/test_async_walk.py runs the evaluator loop end to end, and
tests/presence/test_evaluator_crash.py kills an evaluator process half-way through a set.
"""

from __future__ import annotations

import importlib
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import patch

import httpx
import pytest
from hypothesis import example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Organisation
from app.core.config import Settings
from app.core.sqlfiles import read_sql
from app.presence import repository, service
from app.presence.errors import BackgroundLocationOff
from app.presence.models import SubjectKind
from tests.conftest import ON_CITUS
from tests.factories import Resident, Staff, create_organisation, create_resident
from tests.presence.helpers import T0, P, at, create_circle, create_rectangle, send
from tests.presence.test_properties import PROPERTY_SETTINGS, _inputs, track_strategy


async def _count(db: AsyncSession, table: str, subject_id: uuid.UUID) -> int:
    n = await db.scalar(
        text(f"SELECT count(*) FROM {table} WHERE subject_id = :s"), {"s": subject_id}
    )
    return int(n or 0)


async def _events_of(db: AsyncSession, subject_id: uuid.UUID) -> list[tuple[Any, ...]]:
    rows = await db.execute(
        text(
            "SELECT type, ping_id, occurred_at FROM presence_events "
            "WHERE device_id = :s OR staff_user_id = :s ORDER BY occurred_at, type"
        ),
        {"s": subject_id},
    )
    return [tuple(r) for r in rows]


async def _drain(db: AsyncSession, settings: Settings, max_subjects: int = 500) -> int:
    fixes = 0
    await service.prepare_queued(db)
    while True:
        r = await service.evaluate_queued(db, settings, max_subjects)
        if not r.subjects:
            return fixes
        fixes += r.fixes


async def _shard_of(db: AsyncSession, subject_id: uuid.UUID) -> int:
    shard = await db.scalar(
        text("SELECT get_shard_id_for_distribution_column('ping_queue', CAST(:s AS uuid))"),
        {"s": subject_id},
    )
    return int(shard or 0)


async def _nodes_holding(db: AsyncSession, subjects: list[uuid.UUID]) -> int:
    """On Citus: how many nodes hold the subjects' `ping_queue` shards."""
    n = await db.scalar(
        text(
            "SELECT count(DISTINCT s.nodeport) FROM citus_shards s "
            "WHERE s.table_name = 'ping_queue'::regclass AND s.shardid IN "
            "(SELECT get_shard_id_for_distribution_column('ping_queue', w) "
            "FROM unnest(CAST(:s AS uuid[])) AS w)"
        ),
        {"s": subjects},
    )
    return int(n or 0)


def _input(p: P) -> service.PingInput:
    return service.PingInput(p.id, *at(p.east, p.north), p.t, p.acc)


def _walk_in(prefix: str = "w") -> list[P]:
    """Towards a 40 m circle at the origin, into it (enter) and out again (exit)."""
    spots = [200, 120, 60, 10, 0, -5, 5, 150, 250, 300]
    return [P(f"{prefix}{i}", e, 0, T0 + timedelta(seconds=10 * i)) for i, e in enumerate(spots)]


async def test_a_single_fix_is_answered_202_stored_and_evaluated_later(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    org: Organisation,
    resident: Resident,
) -> None:
    await create_circle(db, org.id, 0, 0, 40, trigger_distance_m=30)
    twin = await create_resident(db, org)
    await service.set_background_location(db, twin.id, True)
    walk = _walk_in()
    for p in walk:
        r = await client.post("/v1/pings", json={"pings": [p.ping()]}, headers=resident.headers)
        assert r.status_code == 202, r.text
        assert r.headers["preference-applied"] == "respond-async"
        body = r.json()
        assert body["status"] == "queued"
        assert (body["accepted"], body["accepted_ids"], body["duplicates"]) == (1, [p.id], 0)
        assert "events" not in body
    # stored durably, nothing evaluated yet: no pings, no events
    assert await _count(db, "ping_queue", resident.id) == len(walk)
    assert await _count(db, "pings", resident.id) == 0
    assert await _events_of(db, resident.id) == []

    assert await _drain(db, settings) == len(walk)
    assert await _count(db, "ping_queue", resident.id) == 0
    assert await _count(db, "pings", resident.id) == len(walk)
    got = await _events_of(db, resident.id)
    # judged against the track: entered once at a fix inside the 40 m circle, left once at a
    # fix beyond it after that, nothing else but being nearby before entering
    order = [p.id for p in walk]
    inside = {p.id for p in walk if abs(p.east) < 40}
    types = [t for t, _, _ in got]
    assert (types.count("enter"), types.count("exit")) == (1, 1), got
    assert set(types) <= {"nearby", "enter", "exit"}, got
    enter_ping = next(ping for t, ping, _ in got if t == "enter")
    exit_ping = next(ping for t, ping, _ in got if t == "exit")
    assert enter_ping in inside, got
    assert exit_ping not in inside, got
    assert order.index(exit_ping) > order.index(enter_ping), got

    # the same fixes, synchronously, one request each: the same events
    for p in walk:
        await send(client, twin.headers, [p.ping()])
    assert await _events_of(db, twin.id) == got
    assert await _drain(db, settings) == 0  # nothing left, nothing evaluated twice
    assert await _events_of(db, resident.id) == got


async def test_a_set_of_202_walkers_on_every_shard_gives_each_its_synchronous_events(
    client: httpx.AsyncClient, db: AsyncSession, settings: Settings, org: Organisation
) -> None:
    """Eight residents walk through a place as single-fix 202 requests; eight twins send the
    same fixes synchronously. The evaluator claims them all in one set (on Citus, subjects on
    both workers: the claim's read of the queue, its fixes and the delete span shards): each
    walker gets exactly its twin's events, judged against the track too, and the queue ends
    empty with every fix stored once."""
    await create_circle(db, org.id, 0, 0, 40, trigger_distance_m=30)
    on_citus = bool(
        await db.scalar(text("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname='citus')"))
    )
    walkers = [await create_resident(db, org) for _ in range(8)]
    # on Citus, walkers on both workers (8 random subjects all on one: 1 time in 128)
    while on_citus and await _nodes_holding(db, [w.id for w in walkers]) < 2:
        walkers[0] = await create_resident(db, org)
    twins = [await create_resident(db, org) for _ in walkers]
    for d in walkers + twins:
        await service.set_background_location(db, d.id, True)
    walk = _walk_in()
    for i, p in enumerate(walk):  # interleaved, as phones send them
        for w in walkers:
            fix = P(f"{p.id}", p.east, p.north + i, p.t).ping()
            r = await client.post("/v1/pings", json={"pings": [fix]}, headers=w.headers)
            assert r.status_code == 202, r.text
            assert r.json()["accepted_ids"] == [p.id]
    queued = await db.scalar(
        text("SELECT count(*) FROM ping_queue WHERE subject_id = ANY(:s)"),
        {"s": [w.id for w in walkers]},
    )
    assert queued == len(walkers) * len(walk)
    if on_citus:
        # each walker's queued fixes sit in its subject's shard only (no copy on other nodes)
        placed = await db.scalar(
            text(
                "SELECT count(*) FROM citus_shards s WHERE s.table_name = 'ping_queue'::regclass "
                "AND s.shardid IN (SELECT get_shard_id_for_distribution_column('ping_queue', w) "
                "FROM unnest(CAST(:s AS uuid[])) AS w)"
            ),
            {"s": [w.id for w in walkers]},
        )
        shards = len({await _shard_of(db, w.id) for w in walkers})
        assert placed == shards  # one placement per shard: not a reference table's copies

    await service.prepare_queued(db)
    result = await service.evaluate_queued(db, settings, 100)
    assert (result.subjects, result.fixes) == (len(walkers), len(walkers) * len(walk))
    assert await service.evaluate_queued(db, settings, 100) == service.EvaluationResult()
    inside = {p.id for p in walk if abs(p.east) < 40}
    order = [p.id for p in walk]
    for i, p in enumerate(walk):
        for t in twins:
            await send(client, t.headers, [P(p.id, p.east, p.north + i, p.t).ping()])
    for w, t in zip(walkers, twins, strict=True):
        got = await _events_of(db, w.id)
        assert got == await _events_of(db, t.id)
        types = [e[0] for e in got]
        assert (types.count("enter"), types.count("exit")) == (1, 1), got
        enter_ping = next(ping for k, ping, _ in got if k == "enter")
        exit_ping = next(ping for k, ping, _ in got if k == "exit")
        assert enter_ping in inside, got
        assert exit_ping not in inside, got
        assert order.index(exit_ping) > order.index(enter_ping), got
        assert await _count(db, "pings", w.id) == len(walk)
        assert await _count(db, "ping_queue", w.id) == 0


async def test_a_set_failing_mid_pipeline_stores_nothing_and_the_set_is_evaluated_after(
    db: AsyncSession, settings: Settings, org: Organisation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three walkers' queued fixes in one set, read and written a subject per chunk: while the
    second is evaluated, PostgreSQL writes the first and reads the third. The evaluation fails
    there. The set fails with that error, the statement in flight ends before the rollback
    (which needs the connection), nothing of the set is stored, and the same session then
    evaluates the whole set: each walker's events are its synchronous twin's."""
    monkeypatch.setattr(service, "PIPELINE_SUBJECTS", 1)
    org_id = org.id  # the rollback below expires the loaded rows
    await create_circle(db, org_id, 0, 0, 40, trigger_distance_m=30)
    walkers = [await create_resident(db, org) for _ in range(3)]
    twin = await create_resident(db, org)
    for d in [*walkers, twin]:
        await service.set_background_location(db, d.id, True)
    walk = _walk_in()[:6]  # towards the place and into it
    for w in walkers:
        subject = service.Subject(SubjectKind.device, w.id, org_id)
        for p in walk:
            await service.enqueue_ping_batch(db, settings, subject, [_input(p)])
    await service.prepare_queued(db)
    await db.commit()

    evaluate = service._evaluate
    calls = 0

    async def failing_second(session: AsyncSession, job: Any, params: Any, before: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("an evaluation fault")
        return await evaluate(session, job, params, before)

    monkeypatch.setattr(service, "_evaluate", failing_second)
    with pytest.raises(service.EvaluationFailed) as failed:
        await service.evaluate_queued(db, settings, 10)
    assert isinstance(failed.value.__cause__, RuntimeError)
    assert sorted(failed.value.subjects) == sorted(w.id for w in walkers)
    await db.rollback()
    for w in walkers:
        assert await _count(db, "pings", w.id) == 0
        assert await _count(db, "ping_queue", w.id) == len(walk)
        assert await _events_of(db, w.id) == []

    monkeypatch.setattr(service, "_evaluate", evaluate)
    result = await service.evaluate_queued(db, settings, 10)
    assert (result.subjects, result.fixes) == (3, 3 * len(walk))
    twin_subject = service.Subject(SubjectKind.device, twin.id, org_id)
    await service.ingest_ping_batch(db, settings, twin_subject, [_input(p) for p in walk])
    want = await _events_of(db, twin.id)
    # one enter, at a fix that was inside the 40 m circle (the walk stops inside it)
    enters = [ping for k, ping, _ in want if k == "enter"]
    assert len(enters) == 1, want
    assert enters[0] in {p.id for p in walk if abs(p.east) < 40}, want
    for w in walkers:
        assert await _events_of(db, w.id) == want
        assert await _count(db, "ping_queue", w.id) == 0


async def test_prefer_respond_async_queues_a_batch_and_mode_sync_keeps_a_single_fix_sync(
    client: httpx.AsyncClient, db: AsyncSession, org: Organisation, resident: Resident
) -> None:
    await create_circle(db, org.id, 0, 0, 40, trigger_distance_m=30)
    walk = [p.ping() for p in _walk_in()]
    r = await client.post(
        "/v1/pings",
        json={"pings": walk[:5]},
        headers={**resident.headers, "Prefer": "wait=10, Respond-Async"},
    )
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == 5
    # a batch without the preference stays synchronous (200, events in the answer)
    r = await client.post("/v1/pings", json={"pings": walk[5:7]}, headers=resident.headers)
    assert r.status_code == 200, r.text
    assert "events" in r.json()
    # a single fix asking for the synchronous mode
    r = await client.post(
        "/v1/pings?mode=sync", json={"pings": walk[7:8]}, headers=resident.headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 1
    # and a batch asking for the asynchronous one by query
    r = await client.post(
        "/v1/pings?mode=async", json={"pings": walk[8:]}, headers=resident.headers
    )
    assert r.status_code == 202, r.text
    assert await _count(db, "ping_queue", resident.id) == 5 + 2


async def test_ack_counts_rejected_duplicate_and_flagged_fixes_and_stores_only_the_good(
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    org: Organisation,
    resident: Resident,
) -> None:
    good = P("g1", 500, 500, T0).ping()
    stored = P("s1", 510, 500, T0 - timedelta(seconds=30)).ping()
    await send(client, resident.headers, [stored])  # already evaluated and stored
    pings = [
        good,
        dict(good),  # repeated in the request
        stored,  # already stored
        P("far", 500, 500, T0).ping() | {"lon": 200.0},
        P("future", 500, 500, datetime.now(UTC) + timedelta(hours=1)).ping(),
        P("old", 500, 500, datetime.now(UTC) - timedelta(days=3)).ping(),
        P("null", 0, 0, T0).ping() | {"lon": 0.0, "lat": 0.0},
        P("coarse", 520, 500, T0 + timedelta(seconds=5), acc=900.0).ping(),
        P("noacc", 530, 500, T0 + timedelta(seconds=6), acc=None).ping(),
    ]
    r = await client.post(
        "/v1/pings", json={"pings": pings}, headers={**resident.headers, "Prefer": "respond-async"}
    )
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["accepted_ids"] == ["g1", "coarse", "noacc"]
    assert sorted(body["duplicate_ids"]) == ["g1", "s1"]
    assert body["duplicates"] == 2
    assert {x["id"]: x["reason"] for x in body["rejected"]} == {
        "far": "coordinates_out_of_range",
        "future": "recorded_at_in_future",
        "old": "older_than_retention",
        "null": "null_island",
    }
    assert {x["id"]: x["reason"] for x in body["flagged"]} == {
        "coarse": "low_accuracy",
        "noacc": "unusable_accuracy",
    }
    ids = await db.scalars(
        text("SELECT client_id FROM ping_queue WHERE subject_id = :s ORDER BY client_id"),
        {"s": resident.id},
    )
    assert list(ids) == ["coarse", "g1", "noacc"]
    # a retry of a queued fix is a duplicate too, and queues nothing more
    r = await client.post("/v1/pings", json={"pings": [good]}, headers=resident.headers)
    assert (r.status_code, r.json()["duplicate_ids"], r.json()["accepted"]) == (202, ["g1"], 0)
    assert await _count(db, "ping_queue", resident.id) == 3
    assert await _drain(db, settings) == 3
    assert await _count(db, "pings", resident.id) == 4


async def test_bad_requests_store_nothing_in_the_queue(
    client: httpx.AsyncClient, db: AsyncSession, org: Organisation, resident: Resident
) -> None:
    off = await create_resident(db, org)  # background location never switched on
    ok = P("x1", 500, 500, T0).ping()
    async_h = {**resident.headers, "Prefer": "respond-async"}
    cases = [
        ({"pings": [ok | {"extra": 1}]}, 422),
        ({"pings": [{k: v for k, v in ok.items() if k != "lat"}]}, 422),
        ({"pings": [ok | {"recorded_at": "yesterday"}]}, 422),
        ({"pings": [ok | {"id": ""}]}, 422),
        ({"pings": [ok], "more": True}, 422),
        ({"pings": [P(f"b{i}", 500, 500, T0).ping() for i in range(1001)]}, 413),
    ]
    for body, status in cases:
        r = await client.post("/v1/pings", json=body, headers=async_h)
        assert r.status_code == status, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    r = await client.post("/v1/pings?mode=later", json={"pings": [ok]}, headers=async_h)
    assert r.status_code == 422
    assert await _count(db, "ping_queue", resident.id) == 0

    # background location off: 409, nothing queued (single fix and batch alike)
    for body in ({"pings": [ok]}, {"pings": [ok, P("x2", 1, 1, T0).ping()]}):
        r = await client.post("/v1/pings?mode=async", json=body, headers=off.headers)
        assert r.status_code == 409, r.text
        assert r.json()["type"].endswith("background-location-off")
    # ... even when every fix of it is rejected
    r = await client.post("/v1/pings", json={"pings": [ok | {"lon": 500.0}]}, headers=off.headers)
    assert r.status_code == 409
    assert await _count(db, "ping_queue", off.id) == 0


async def test_field_workers_queue_and_editors_may_not(
    client: httpx.AsyncClient, db: AsyncSession, worker: Staff, editor: Staff
) -> None:
    ok = P("x1", 500, 500, T0).ping()
    r = await client.post("/v1/pings", json={"pings": [ok]}, headers=worker.headers)
    assert r.status_code == 202, r.text
    r = await client.post("/v1/pings", json={"pings": [ok]}, headers=editor.headers)
    assert r.status_code == 403
    assert await _count(db, "ping_queue", worker.id) == 1
    assert await _count(db, "ping_queue", editor.id) == 0


# --- the property: the asynchronous path gives the synchronous path's events -----------------


async def _places(db: AsyncSession, org_id: uuid.UUID) -> dict[uuid.UUID, str]:
    lib = await create_circle(db, org_id, 0, 0, 40, trigger_distance_m=30, dwell_s=60)
    park = await create_rectangle(db, org_id, 600, 0, 700, 100, trigger_distance_m=20, dwell_s=90)
    kiosk = await create_circle(db, org_id, 300, 0, 8, trigger_distance_m=0, name="Kiosk")
    return {lib: "library", park: "park", kiosk: "kiosk"}


def _key(e: dict[str, Any], names: dict[uuid.UUID, str]) -> tuple[Any, ...]:
    explanation = json.dumps(e["explanation"], sort_keys=True, default=str)
    return (e["occurred_at"], e["ping_id"], e["type"], names[e["geofence_id"]], explanation)


async def _presence(db: AsyncSession, subject_id: uuid.UUID, names: dict[uuid.UUID, str]) -> Any:
    return sorted(
        (names[p.geofence_id], p.state, p.since, p.last_fix_at, p.dwell_emitted)
        for p in await repository.presence_of(db, subject_id)
    )


@hsettings(PROPERTY_SETTINGS, max_examples=50)
@example(  # an exit 260 m out, from a presence stored two fixes before (found by Hypothesis)
    track=[((0, 0), 0.0, 0, 5.0)] * 22 + [((60, 0), 0.0, 1, 5.0), ((300, 0), 0.0, 4, 5.0)],
    cuts=[2],
    seed=1,
    max_subjects=1,
    chunk=128,
)
@example(  # the same in one set of three, a subject per pipelined chunk
    track=[((0, 0), 0.0, 0, 5.0)] * 22 + [((60, 0), 0.0, 1, 5.0), ((300, 0), 0.0, 4, 5.0)],
    cuts=[2],
    seed=1,
    max_subjects=3,
    chunk=1,
)
@given(
    track=track_strategy,
    cuts=st.lists(st.integers(1, 39), max_size=4),
    seed=st.integers(0, 10_000),
    max_subjects=st.integers(1, 3),
    chunk=st.sampled_from([1, 2, 128]),
)
async def test_async_single_fixes_give_the_sync_events_over_shuffles_and_replays(
    db: AsyncSession,
    settings: Settings,
    *,
    track: list[Any],
    cuts: list[int],
    seed: int,
    max_subjects: int,
    chunk: int,
) -> None:
    """Three devices send the same track as single-fix 202 requests; one sends it as one batch.

    The async devices send it in chronological pieces (a phone's fixes come in time order, and
    a fix that arrives after newer ones were evaluated is late under both modes alike); inside a
    piece the fixes come in any order and some again (replays), and the evaluator runs between
    pieces (or not) in sets of 1-3 subjects, so sets mix devices and split them, read and
    written in pipelined chunks of `chunk` subjects.
    """
    with patch.object(service, "PIPELINE_SUBJECTS", chunk):
        rnd = random.Random(seed)
        pings = _inputs(track)
        now = datetime.now(UTC)
        org = await create_organisation(db)
        names = await _places(db, org.id)
        sync_dev = await create_resident(db, org)
        async_devs = [await create_resident(db, org) for _ in range(3)]
        for d in [sync_dev, *async_devs]:
            await service.set_background_location(db, d.id, True)

        shuffled = list(pings)
        rnd.shuffle(shuffled)
        sync_subject = service.Subject(SubjectKind.device, sync_dev.id, org.id)
        sync = await service.ingest_ping_batch(db, settings, sync_subject, shuffled, now=now)
        expected = sorted(_key(e, names) for e in sync.events)

        bounds = sorted({0, len(pings), *(c for c in cuts if c < len(pings))})
        pieces = [pings[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
        got: dict[uuid.UUID, list[tuple[Any, ...]]] = {d.id: [] for d in async_devs}
        sent: dict[uuid.UUID, list[service.PingInput]] = {d.id: [] for d in async_devs}
        accepted: dict[uuid.UUID, int] = {d.id: 0 for d in async_devs}
        for piece in pieces:
            for d in async_devs:
                order = list(piece) + rnd.sample(sent[d.id] + piece, k=min(2, len(piece)))
                rnd.shuffle(order)
                subject = service.Subject(SubjectKind.device, d.id, org.id)
                for p in order:
                    ack = await service.enqueue_ping_batch(db, settings, subject, [p], now=now)
                    accepted[d.id] += len(ack.accepted)
                sent[d.id] += piece
            if rnd.random() < 0.6:
                await service.prepare_queued(db)
                while (
                    r := await service.evaluate_queued(db, settings, max_subjects, now=now)
                ).fixes:
                    for e in r.events:
                        got[e["device_id"]].append(_key(e, names))
        await service.prepare_queued(db)
        while (r := await service.evaluate_queued(db, settings, max_subjects, now=now)).fixes:
            for e in r.events:
                got[e["device_id"]].append(_key(e, names))

        want_presence = await _presence(db, sync_dev.id, names)
        for d in async_devs:
            assert sorted(got[d.id]) == expected
            assert await _presence(db, d.id, names) == want_presence
            # every fix was acknowledged once as new, whatever the replays
            assert accepted[d.id] == len(pings)
            assert await _count(db, "pings", d.id) == len(pings)
        assert await repository.queued_count(db) == 0


async def test_background_location_off_refuses_before_anything_is_queued(
    db: AsyncSession, settings: Settings, org: Organisation
) -> None:
    res = await create_resident(db, org)
    s = service.Subject(SubjectKind.device, res.id, org.id)
    try:
        await service.enqueue_ping_batch(db, settings, s, _inputs([((0, 0), 0.0, 0, 10.0)]))
    except BackgroundLocationOff:
        pass
    else:
        raise AssertionError("expected BackgroundLocationOff")
    assert await _count(db, "ping_queue", res.id) == 0


QUEUE_SCANS_SQL = (
    "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables "
    "WHERE relname = 'ping_queue'"
)


@pytest.mark.skipif(ON_CITUS, reason="on Citus the queue's scans are counted on the workers")
async def test_a_claim_of_fewer_subjects_than_it_wants_reads_the_queue_once(
    db: AsyncSession, settings: Settings, org: Organisation
) -> None:
    """Three subjects wait and the evaluator wants up to 500: it reads who is in line once,
    locks the three and reads their fixes. Before migration 0044 it read the line a second time
    to look for more (on Citus a read of every shard). This transaction's own table statistics
    count the scans of `ping_queue` for a claim by 0043's function (undone) and by the current
    one in the same state: one read of the line fewer, whatever plans the statements get. The
    claim is what it was: the three, each with its two fixes in time order."""
    subjects = []
    for n in range(3):
        res = await create_resident(db, org)
        await service.set_background_location(db, res.id, True)
        subject = service.Subject(SubjectKind.device, res.id, org.id)
        pings = _inputs([((10.0 * n, 0.0), 0.0, 0, 10.0), ((10.0 * n, 5.0), 0.0, 10, 10.0)])
        ack = await service.enqueue_ping_batch(db, settings, subject, pings)
        assert len(ack.accepted) == 2
        subjects.append(res.id)
    await service.prepare_queued(db)
    await db.commit()

    async def scans() -> int:
        return int((await db.execute(text(QUEUE_SCANS_SQL))).scalar_one())

    old = importlib.import_module("migrations.versions.20261204_0044_claim_reads_the_queue_once")
    async with db.begin_nested() as before_0044:
        await db.execute(text(read_sql(old.CLAIM).replace(old.NOW, old.BEFORE, 1)))
        start = await scans()
        old_rows = await repository.claim_queued(db, 500)
        old_scans = await scans() - start
        await before_0044.rollback()  # the function and the locks as they were
    start = await scans()
    rows = await repository.claim_queued(db, 500)
    new_scans = await scans() - start
    assert new_scans < old_scans
    mine = [r for r in rows if r.subject.id in subjects]
    assert [(r.subject.id, r.client_id) for r in mine] == [
        (r.subject.id, r.client_id) for r in old_rows if r.subject.id in subjects
    ]
    assert sorted(r.subject.id for r in mine) == sorted(s for s in subjects for _ in range(2))
    for a, b in zip(mine[::2], mine[1::2], strict=True):  # by subject, then time
        assert (a.subject.id, a.client_id) == (b.subject.id, "f000")
        assert a.recorded_at < b.recorded_at
    await db.rollback()
