"""Hypothesis: the order a batch arrives in, and repeating it, never change the outcome."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.presence import repository, service
from app.presence.models import SubjectKind
from tests.factories import create_organisation, create_resident
from tests.presence.helpers import T0, at, create_circle, create_rectangle

# where a fix may be: inside / at the edge of / near / far from two places, or in between
SPOTS = [(0, 0), (35, 0), (60, 0), (90, 0), (300, 0), (600, 50), (650, 40), (700, 120), (2000, 0)]

fix_strategy = st.tuples(
    st.sampled_from(SPOTS),
    st.floats(min_value=-12, max_value=12),
    st.integers(min_value=0, max_value=120),  # seconds after the previous fix (0: same instant)
    st.sampled_from([5.0, 15.0, 40.0, 150.0, 300.0, None, -1.0]),
)
track_strategy = st.lists(fix_strategy, min_size=1, max_size=40)


def _inputs(track: list[tuple[Any, float, int, float | None]]) -> list[service.PingInput]:
    out, t = [], T0
    for i, ((east, north), noise, gap, acc) in enumerate(track):
        t += timedelta(seconds=gap)
        lon, lat = at(east + noise, north - noise)
        out.append(service.PingInput(f"f{i:03d}", lon, lat, t, acc))
    return out


async def _run(
    db: AsyncSession, settings: Settings, batches: list[list[service.PingInput]]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[service.BatchResult]]:
    org = await create_organisation(db)
    lib = await create_circle(db, org.id, 0, 0, 40, trigger_distance_m=30, dwell_s=60)
    park = await create_rectangle(db, org.id, 600, 0, 700, 100, trigger_distance_m=20, dwell_s=90)
    kiosk = await create_circle(db, org.id, 300, 0, 8, trigger_distance_m=0, name="Kiosk")
    res = await create_resident(db, org)
    subject = service.Subject(SubjectKind.device, res.id, org.id)
    results = []
    now = datetime.now(UTC)
    for batch in batches:
        results.append(await service.ingest_ping_batch(db, settings, subject, batch, now=now))
    # places are new in every run: name them, so runs compare
    names = {lib: "library", park: "park", kiosk: "kiosk"}
    # within one fix, events for different places come in place-id order: compare by name
    events = sorted(
        (e["occurred_at"], e["ping_id"], e["type"], names[e["geofence_id"]])
        for r in results
        for e in r.events
    )
    presence = sorted(
        (names[p.geofence_id], p.state, p.since, p.last_fix_at, p.dwell_emitted)
        for p in await repository.presence_of(db, res.id)
    )
    return events, presence, results


PROPERTY_SETTINGS = hsettings(
    max_examples=25,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@PROPERTY_SETTINGS
@given(track=track_strategy, seed=st.integers(0, 10_000))
async def test_shuffling_a_batch_gives_the_same_events_and_presence(
    db: AsyncSession, settings: Settings, track: list[Any], seed: int
) -> None:
    pings = _inputs(track)
    shuffled = list(pings)
    random.Random(seed).shuffle(shuffled)
    in_order = await _run(db, settings, [pings])
    any_order = await _run(db, settings, [shuffled])
    assert any_order[0] == in_order[0]
    assert any_order[1] == in_order[1]


@PROPERTY_SETTINGS
@given(track=track_strategy, seed=st.integers(0, 10_000))
async def test_repeating_a_batch_adds_nothing(
    db: AsyncSession, settings: Settings, track: list[Any], seed: int
) -> None:
    pings = _inputs(track)
    again = list(pings)
    random.Random(seed).shuffle(again)
    once = await _run(db, settings, [pings])
    twice = await _run(db, settings, [pings, again])
    assert twice[0] == once[0]
    assert twice[1] == once[1]
    repeat = twice[2][1]
    assert (repeat.accepted, repeat.duplicates, repeat.events) == (0, len(pings), [])


@PROPERTY_SETTINGS
@given(track=track_strategy, cuts=st.lists(st.integers(1, 39), max_size=5))
# found by the queued apps' property test: a hop to the kiosk and back, the library's presence
# begun in the first piece (measured at the hop) or in the same batch (not measured there)
@example(
    track=[
        ((0, 0), 0.0, 0, 5.0),
        ((0, 0), 0.0, 1, 40.0),
        ((300, 0), 0.0, 4, 5.0),
        ((0, 0), 0.0, 4, 15.0),
        ((0, 0), -6.7, 1, 5.0),
    ],
    cuts=[1],
)
async def test_sending_in_chronological_pieces_equals_one_batch(
    db: AsyncSession, settings: Settings, track: list[Any], cuts: list[int]
) -> None:
    pings = _inputs(track)
    bounds = sorted({0, len(pings), *(c for c in cuts if c < len(pings))})
    pieces = [pings[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    whole = await _run(db, settings, [pings])
    split = await _run(db, settings, pieces)
    assert split[0] == whole[0]
    assert split[1] == whole[1]
