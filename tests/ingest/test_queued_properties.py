"""OwnTracks' and Traccar Client's single fixes are queued (as a single `POST /v1/pings` fix,
answered 202) and evaluated moments later: over generated tracks, the stored pings and the events
are exactly those of the same fixes sent in one synchronous `/v1/pings` batch.

The approach of tests/presence/test_async_pings.py (the async == sync property), through the
apps' HTTP endpoints: each phone sends its track in chronological pieces; inside a piece the
fixes come in any order and some twice (an app's retry), and the evaluator runs between pieces
or not.
"""

from __future__ import annotations

import random
from typing import Any

import httpx
from fastapi import FastAPI
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.ingest import service as ingest_service
from app.presence import service
from app.presence.models import SubjectKind
from tests.factories import create_organisation, create_resident
from tests.ingest.helpers import basic, drain, events, stored
from tests.presence.helpers import create_circle, create_rectangle
from tests.presence.test_properties import PROPERTY_SETTINGS, _inputs, track_strategy


def _owntracks(p: service.PingInput) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "_type": "location",
        "lat": p.lat,
        "lon": p.lon,
        "tst": int(p.recorded_at.timestamp()),
        "tid": "PT",
    }
    if p.accuracy_m is not None:
        msg["acc"] = p.accuracy_m
    return msg


def _events(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The events, without the suppressed candidates: those are an explanation reported once
    per evaluated batch and (place, type, reason) against the presence of that moment
    (docs/presence.md, "Late pings"), so the twin's one batch and the apps' sets, cut
    elsewhere, may explain a jump differently; what happened must not differ."""
    return [r for r in rows if r[-1] is None]


def _traccar(key: str, p: service.PingInput) -> dict[str, str]:
    params = {
        "id": key,
        "lat": repr(p.lat),
        "lon": repr(p.lon),
        "timestamp": str(int(p.recorded_at.timestamp())),
    }
    if p.accuracy_m is not None:
        params["accuracy"] = repr(p.accuracy_m)
    return params


@hsettings(PROPERTY_SETTINGS, max_examples=20)
@given(
    track=track_strategy,
    cuts=st.lists(st.integers(1, 39), max_size=4),
    seed=st.integers(0, 10_000),
)
async def test_queued_app_fixes_give_the_events_of_one_sync_batch(
    app: FastAPI,
    client: httpx.AsyncClient,
    db: AsyncSession,
    settings: Settings,
    *,
    track: list[Any],
    cuts: list[int],
    seed: int,
) -> None:
    app.state.settings = settings.model_copy(update={"rate_limit_enabled": False})
    rnd = random.Random(seed)
    # a phone reports one position per instant: the track's fixes of one instant but the first
    # are left out. Two fixes of one instant are ordered by their ids (engine.sort_key), and
    # each app's ids are hashes with its own prefix, so the twin and the apps would order such
    # a pair differently (which is a jump from which); two alike in time and position are one
    # fix to the apps, the first to arrive, an order the twin's shuffle does not share
    pings, instants = [], set()
    for p in _inputs(track):
        if p.recorded_at not in instants:
            instants.add(p.recorded_at)
            pings.append(p)
    org = await create_organisation(db)
    await create_circle(db, org.id, 0, 0, 40, trigger_distance_m=30, dwell_s=60)
    await create_rectangle(db, org.id, 600, 0, 700, 100, trigger_distance_m=20, dwell_s=90)
    await create_circle(db, org.id, 300, 0, 8, trigger_distance_m=0, name="Kiosk")
    twin, owntracks, traccar = [await create_resident(db, org) for _ in range(3)]
    for d in (twin, owntracks, traccar):
        await service.set_background_location(db, d.id, True)
    subject = service.Subject(SubjectKind.device, traccar.id, org.id)
    _, key = await ingest_service.create_key(db, subject, "property")

    # the apps' ids are derived from time and position (two fixes alike are one fix to them):
    # the twin's too, so all three dedupe alike
    shuffled = [
        {
            "id": ingest_service.ping_id("tw", p.recorded_at, p.lon, p.lat),
            "lon": p.lon,
            "lat": p.lat,
            "recorded_at": p.recorded_at.isoformat(),
            "accuracy_m": p.accuracy_m,
        }
        for p in pings
    ]
    rnd.shuffle(shuffled)
    r = await client.post("/v1/pings?mode=sync", json={"pings": shuffled}, headers=twin.headers)
    assert r.status_code == 200, r.text

    cut_ok = [c for c in cuts if c < len(pings)]
    bounds = sorted({0, len(pings), *cut_ok})
    sent: list[service.PingInput] = []
    accepted = {"traccar": 0}
    for a, b in zip(bounds, bounds[1:], strict=False):
        piece = pings[a:b]
        for app_name in ("owntracks", "traccar"):
            order = list(piece) + rnd.sample(sent + piece, k=min(2, len(piece)))
            rnd.shuffle(order)
            for p in order:
                if app_name == "owntracks":
                    r = await client.post(
                        "/v1/ingest/owntracks", json=_owntracks(p), headers=basic(owntracks.token)
                    )
                    assert r.status_code == 200, r.text
                    assert isinstance(r.json(), list)  # the app's answer, as before
                else:
                    r = await client.get("/v1/ingest/traccar", params=_traccar(key, p))
                    assert r.status_code == 200, r.text
                    accepted["traccar"] += r.json()["accepted"]
        sent += piece
        if rnd.random() < 0.6:
            await drain(db)

    want_pings = await stored(db, twin.id)  # (stored() and events() evaluate the queue first)
    want_events = _events(await events(db, twin.id))
    assert await stored(db, owntracks.id) == want_pings
    assert _events(await events(db, owntracks.id)) == want_events
    assert await stored(db, traccar.id) == want_pings
    assert _events(await events(db, traccar.id)) == want_events
    distinct = {ingest_service.ping_id("tc", p.recorded_at, p.lon, p.lat) for p in pings}
    assert accepted["traccar"] == len(distinct)  # every fix acknowledged once as new
    assert await drain(db) == 0
