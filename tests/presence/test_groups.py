"""Group commit of ping requests (app/presence/groups.py) against the real database.

Requests that arrive while a group is running wait and are then evaluated together, in one
transaction and the same two statements, each exactly as if it were alone: its own events,
its own refusal, its own failure. The first group is held open by an event hook that waits on
a gate, so the followers' arrival is deterministic (no timing in these tests).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.core import pace
from app.core.config import Settings
from app.presence import service
from app.presence.errors import BackgroundLocationOff
from app.presence.groups import PingGroups
from app.presence.models import SubjectKind
from tests.factories import create_organisation, create_resident
from tests.presence.helpers import at, create_circle, remove_committed


@dataclass
class Town:
    org_id: uuid.UUID
    place: uuid.UUID
    devices: list[uuid.UUID]  # background location on
    off: uuid.UUID  # background location off


@pytest.fixture
async def town(engine: AsyncEngine) -> AsyncIterator[Town]:
    async with AsyncSession(engine, expire_on_commit=False) as s, s.begin():
        org = await create_organisation(s)
        place = await create_circle(s, org.id, 0, 0, 40, trigger_distance_m=0)
        devices = [(await create_resident(s, org)).id for _ in range(6)]
        for d in devices:
            await service.set_background_location(s, d, True)
        off = (await create_resident(s, org)).id
    yield Town(org.id, place, devices, off)
    await remove_committed(engine, org.id, [*devices, off])


def walk_in(
    device: uuid.UUID, org_id: uuid.UUID, tag: str, east_m: float, ago_s: float = 5.0
) -> service.BatchRequest:
    """Two fixes 2 s apart at `east_m` metres from the place's centre (inside when < 40), the
    first `ago_s` ago: enough to enter, or to leave."""
    lon, lat = at(east_m, 0)
    now = datetime.now(UTC)
    fixes = [
        service.PingInput(
            f"{tag}{k}-{device}", lon, lat, now - timedelta(seconds=ago_s - 2 * k), 5.0
        )
        for k in range(2)
    ]
    subject = service.Subject(SubjectKind.device, device, org_id)
    return service.BatchRequest(subject, fixes, check_background_location=True)


class Gate:
    """An event hook that records each call's subjects and holds the first call until opened."""

    def __init__(self) -> None:
        self.calls: list[set[uuid.UUID]] = []
        self.opened = asyncio.Event()

    async def __call__(self, session: AsyncSession, events: list[dict[str, Any]]) -> None:
        self.calls.append({e["device_id"] for e in events})
        if len(self.calls) == 1:
            await self.opened.wait()


@pytest.fixture
def gate() -> Gate:
    return Gate()


async def run(
    engine: AsyncEngine, groups: PingGroups, request: service.BatchRequest
) -> service.BatchResult:
    async with AsyncSession(engine, expire_on_commit=False) as s:
        return await groups.ingest(s, request)


async def until(condition: Any) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never happened")


async def test_waiting_requests_run_as_one_group_each_with_its_own_answer(
    engine: AsyncEngine, settings: Settings, town: Town, gate: Gate
) -> None:
    groups = PingGroups(settings.model_copy(update={"ping_group_slots": 1}), on_events=gate)
    first = asyncio.create_task(
        run(engine, groups, walk_in(town.devices[0], town.org_id, "a", 0, ago_s=200))
    )
    await until(lambda: len(gate.calls) == 1)  # group 1 (device 0 alone) is held open
    later = [
        asyncio.create_task(run(engine, groups, walk_in(d, town.org_id, "b", 10)))
        for d in town.devices[1:]
    ]
    # device 0 again (it walks out: after its first batch, never beside it) and the opted-out one
    again = asyncio.create_task(
        run(engine, groups, walk_in(town.devices[0], town.org_id, "c", 500))
    )
    refused = asyncio.create_task(run(engine, groups, walk_in(town.off, town.org_id, "d", 0)))
    await until(lambda: len(groups._waiting) == 7)
    gate.opened.set()
    a = await first
    results = await asyncio.gather(*later)
    with pytest.raises(BackgroundLocationOff):
        await refused
    c = await again

    assert [e["type"] for e in a.events] == ["nearby", "enter"]
    # the six waiting requests ran as ONE group: one hook call with the five enters and the exit
    assert gate.calls[1] == {*town.devices}
    assert len(gate.calls) == 2
    for d, r in zip(town.devices[1:], results, strict=True):
        assert r.accepted == 2
        assert [(e["type"], e["device_id"], e["ping_id"]) for e in r.events] == [
            ("nearby", d, f"b0-{d}"),
            ("enter", d, f"b1-{d}"),
        ]
    assert [(e["type"], e["ping_id"]) for e in c.events] == [("exit", f"c1-{town.devices[0]}")]
    async with AsyncSession(engine) as s:
        stored = await s.scalar(
            text("SELECT count(*) FROM pings WHERE organisation_id = :o"), {"o": town.org_id}
        )
        assert stored == 14  # everyone's but the refused device's
        touched = await s.scalar(
            text(
                "SELECT (SELECT count(*) FROM presence_subjects WHERE subject_id = :d)"
                " + (SELECT count(*) FROM presence_events WHERE device_id = :d)"
            ),
            {"d": town.off},
        )
        assert touched == 0


async def test_a_failing_batch_fails_alone(
    engine: AsyncEngine, settings: Settings, town: Town, gate: Gate
) -> None:
    groups = PingGroups(settings.model_copy(update={"ping_group_slots": 1}), on_events=gate)
    first = asyncio.create_task(run(engine, groups, walk_in(town.devices[0], town.org_id, "a", 0)))
    await until(lambda: len(gate.calls) == 1)
    good = [
        asyncio.create_task(run(engine, groups, walk_in(d, town.org_id, "b", 0)))
        for d in town.devices[1:4]
    ]
    # a client id longer than the column (the API refuses it; here it reaches the database and
    # makes the whole group's write fail)
    bad_request = walk_in(town.devices[4], town.org_id, "x" * 80, 0)
    bad = asyncio.create_task(run(engine, groups, bad_request))
    await until(lambda: len(groups._waiting) == 4)
    gate.opened.set()
    await first
    results = await asyncio.gather(*good)
    with pytest.raises(Exception, match="too long"):
        await bad
    assert [[e["type"] for e in r.events] for r in results] == [["nearby", "enter"]] * 3
    async with AsyncSession(engine) as s:
        stored = await s.scalar(
            text("SELECT count(DISTINCT subject_id) FROM pings WHERE organisation_id = :o"),
            {"o": town.org_id},
        )
        assert stored == 4  # device 0 and the three good ones; nothing of the bad batch


async def test_a_large_set_lets_the_process_run_other_work_while_it_is_evaluated(
    db: AsyncSession, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Evaluating a set's subjects waits for nothing (tens of milliseconds of Python for
    hundreds of them), so the loop over them breathes (app/core/pace.py): once its slice has
    passed, the event loop runs the process's other work (the 202 acknowledgments beside an
    embedded evaluator). With the slice at 0 that is before every subject; with a slice no set
    reaches, never inside the loop."""
    org = await create_organisation(db)
    await create_circle(db, org.id, 0, 0, 40)
    residents = [await create_resident(db, org) for _ in range(12)]
    now = datetime.now(UTC)
    ticks = 0

    async def other_work() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    seen: list[int] = []  # the other work's progress as each subject's evaluation starts
    evaluate = service._evaluate

    async def counted(session: AsyncSession, job: Any, params: Any, before_query: Any) -> Any:
        seen.append(ticks)
        return await evaluate(session, job, params, before_query)

    monkeypatch.setattr(service, "_evaluate", counted)
    for slice_s, tag in ((0.0, "a"), (3600.0, "b")):
        monkeypatch.setattr(pace, "SLICE_S", slice_s)
        requests = [
            service.BatchRequest(
                service.Subject(SubjectKind.device, r.id, org.id),
                [service.PingInput(f"{tag}-{r.id}", *at(5, 0), now - timedelta(seconds=5), 10.0)],
            )
            for r in residents
        ]
        seen.clear()
        task = asyncio.create_task(other_work())
        try:
            results = await service.ingest_ping_batches(db, settings, requests)
        finally:
            task.cancel()
        assert [r.accepted for r in results if isinstance(r, service.BatchResult)] == [1] * 12
        moved = [i for i in range(1, len(seen)) if seen[i] > seen[i - 1]]
        # one fix each, no jump: nothing inside a subject's evaluation lets the loop run
        assert moved == (list(range(1, 12)) if slice_s == 0.0 else [])
