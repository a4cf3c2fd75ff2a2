"""The 202 path of `POST /v1/pings` in plain ASGI (app/presence/fastpath.py) answers exactly as
the route does, and leaves to the route everything it must not decide.

A real app with its lifespan (the token cache listens), on a database of its own where requests
commit for real; the evaluator is off so queued fixes stay countable. Each answer taken by the
fast path is told apart from the route's by its counter, `hereabouts_ping_fast_path_requests_total`.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import serialize_response
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.cluster import EmbeddedCluster
from app.core.config import Settings
from app.core.db import create_engine
from app.core.metrics import PING_FAST_PATH
from app.main import create_app
from app.presence import fastpath
from app.presence.router import router as pings_router
from app.presence.schemas import PingBatchCreate, PingBatchRead
from tests.conftest import migrated_database
from tests.factories import create_organisation
from tests.presence.helpers import at, create_circle

ORG = "fast-town"


@pytest.fixture(scope="module")
def url(pg_cluster: EmbeddedCluster) -> Iterator[str]:
    with migrated_database(pg_cluster, "hereabouts_fastpath") as u:
        yield u


def _settings(settings: Settings, url: str, **update: Any) -> Settings:
    return settings.model_copy(
        update={"database_url": url, "run_ping_evaluator_in_process": False, **update}
    )


async def _served(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    engine = create_engine(settings)
    async with AsyncSession(engine) as s:
        await s.execute(text("DELETE FROM organisations WHERE slug = :s"), {"s": ORG})
        await create_organisation(s, ORG)
        await s.commit()
    await engine.dispose()
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            start = time.monotonic()
            while not app.state.device_tokens.live:
                assert time.monotonic() - start < 5, "the token cache never went live"
                await asyncio.sleep(0.01)
            yield app, client


@pytest.fixture
async def served(settings: Settings, url: str) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async for pair in _served(_settings(settings, url, rate_limit_enabled=False)):
        yield pair


async def _device(client: httpx.AsyncClient, *, background: bool = True) -> dict[str, str]:
    r = await client.post("/v1/devices", json={"organisation": ORG})
    assert r.status_code == 201, r.text
    auth = {"Authorization": f"Bearer {r.json()['token']}"}
    r = await client.put("/v1/me/background-location", json={"enabled": background}, headers=auth)
    assert r.status_code == 200, r.text  # the token is in the cache from here on
    return auth


def _fix(pid: str, seconds_ago: float = 5, **extra: Any) -> dict[str, Any]:
    at = datetime.now(UTC) - timedelta(seconds=seconds_ago)
    return {"id": pid, "lon": -1.5491, "lat": 53.8008, "recorded_at": at.isoformat(), **extra}


def _fast() -> float:
    return float(PING_FAST_PATH._value.get())


async def _queued(app: FastAPI) -> int:
    async with app.state.sessionmaker() as s:
        n = await s.scalar(
            text(
                "SELECT count(*) FROM ping_queue q JOIN organisations o"
                " ON o.id = q.organisation_id WHERE o.slug = :s"
            ),
            {"s": ORG},
        )
        return int(n or 0)


async def _post(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    body: Any,
    *,
    route: bool = False,
    headers: dict[str, str] | None = None,
) -> tuple[httpx.Response, bool]:
    """POST /v1/pings; `route=True` asks the route itself (`?mode=async`: same meaning for one
    fix). Also says whether the fast path answered."""
    before = _fast()
    r = await client.post(
        "/v1/pings",
        params={"mode": "async"} if route else None,
        json=body,
        headers={**auth, **(headers or {})},
    )
    return r, _fast() == before + 1


def _in_json(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)[1:-1]


def _same_answer(fast: httpx.Response, routed: httpx.Response, ids: dict[str, str]) -> None:
    """Status, headers and JSON to the byte, the route's ids renamed to the fast path's."""
    assert fast.status_code == routed.status_code
    assert fast.headers.items() == routed.headers.items() or (
        {k: v for k, v in fast.headers.items() if k != "content-length"}
        == {k: v for k, v in routed.headers.items() if k != "content-length"}
    )
    text_routed = routed.text
    for theirs, ours in ids.items():  # as they are written in JSON text
        text_routed = text_routed.replace(_in_json(theirs), _in_json(ours))
    assert fast.text == text_routed


async def test_a_single_fix_is_answered_by_the_fast_path_exactly_as_by_the_route(
    served: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = served
    auth = await _device(client)
    odd = 'ü\u2028\t"\\x'  # JSON escapes and non-ASCII: both encoders must agree
    cases = [
        (f"a-{odd}", f"b-{odd}", {}),  # accepted
        ("a-far", "b-far", {"lon": 500}),  # rejected
        ("a-vague", "b-vague", {"accuracy_m": 900}),  # flagged
    ]
    for ours, theirs, extra in cases:
        fast, by_fast = await _post(client, auth, {"pings": [_fix(ours, **extra)]})
        routed, by_fast_too = await _post(
            client, auth, {"pings": [_fix(theirs, **extra)]}, route=True
        )
        assert by_fast
        assert not by_fast_too
        assert fast.status_code == 202, fast.text
        assert fast.headers["preference-applied"] == "respond-async"
        assert fast.headers["x-content-type-options"] == "nosniff"  # the middlewares still ran
        _same_answer(fast, routed, {theirs: ours})
    body = (await _post(client, auth, {"pings": [_fix("a-vague", accuracy_m=900)]}))[0].json()
    assert body["duplicates"] == 1
    assert body["duplicate_ids"] == ["a-vague"]
    assert await _queued(app) == 4  # accepted + flagged, by each path


async def test_a_batch_with_prefer_respond_async_takes_the_fast_path(
    served: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = served
    auth = await _device(client)
    pings = [_fix(f"p{i}", seconds_ago=50 - i) for i in range(5)] + [_fix("p0")]
    r, by_fast = await _post(
        client, auth, {"pings": pings}, headers={"Prefer": "wait=5, respond-async"}
    )
    assert by_fast
    assert r.status_code == 202, r.text
    assert r.json()["accepted_ids"] == [f"p{i}" for i in range(5)]
    assert r.json()["duplicate_ids"] == ["p0"]
    # without the preference a batch is synchronous: evaluated now, 200 with its events
    r, by_fast = await _post(client, auth, {"pings": [_fix("q0", 20), _fix("q1", 10)]})
    assert by_fast
    assert r.status_code == 200
    assert "preference-applied" not in r.headers
    assert r.json()["accepted"] == 2
    assert "events" in r.json()
    assert await _queued(app) == 5  # nothing of it queued


async def test_a_synchronous_batch_answers_as_the_route_with_the_same_events(
    served: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    """Two devices walk the same track into a place: one through the fast path, one through the
    route (`?mode=sync`). Same events (types, places, fixes, times), and the fast path's body is
    exactly what FastAPI writes for the route's model holding the same values."""
    app, client = served
    async with app.state.sessionmaker() as s:
        org = await s.scalar(text("SELECT id FROM organisations WHERE slug = :s"), {"s": ORG})
        place = await create_circle(s, org, 400, 0, 40, trigger_distance_m=30, dwell_s=60)
        await s.commit()
    now = datetime.now(UTC)
    track = [(e, 330 - 10 * k) for k, e in enumerate(range(250, 450, 10))]  # walks in, stays
    track += [(420, 130 - 10 * k) for k in range(12)]
    odd = 'ü\u2028\t"\\x'

    def fix(pid: str, ago: float, **extra: Any) -> dict[str, Any]:
        return {**_fix(pid), "recorded_at": (now - timedelta(seconds=ago)).isoformat(), **extra}

    def body(prefix: str) -> dict[str, Any]:
        pings = []
        for k, (east, ago) in enumerate(track):
            lon, lat = at(east, 0)
            pings.append(fix(f"{prefix}-{odd}-{k}", ago, lon=lon, lat=lat, accuracy_m=5.0))
        pings.append(dict(pings[0]))  # repeated: a duplicate
        pings.append(fix(f"{prefix}-far", 30, lon=500))  # rejected
        pings.append(fix(f"{prefix}-vague", 25, accuracy_m=900))  # flagged
        return {"pings": pings}

    fast_auth, route_auth = await _device(client), await _device(client)
    fast, by_fast = await _post(client, fast_auth, body("f"))
    routed = await client.post(
        "/v1/pings", params={"mode": "sync"}, json=body("r"), headers=route_auth
    )
    assert by_fast
    assert fast.status_code == routed.status_code == 200, (fast.text, routed.text)
    assert fast.headers["content-type"] == routed.headers["content-type"] == "application/json"
    assert fast.headers["x-content-type-options"] == "nosniff"
    mine, theirs = fast.json(), routed.json()
    events = mine.pop("events")
    assert [(e["type"], e["geofence_id"], e["ping_id"][2:], e["occurred_at"]) for e in events] == [
        (e["type"], e["geofence_id"], e["ping_id"][2:], e["occurred_at"])
        for e in theirs.pop("events")
    ]
    assert {e["type"] for e in events} >= {"enter", "dwell"}
    assert {e["geofence_id"] for e in events} == {str(place)}
    assert json.dumps(mine).replace('"f-', '"r-') == json.dumps(theirs)
    assert mine["rejected"]
    assert mine["flagged"]
    assert mine["duplicates"] == 1
    # byte for byte what FastAPI writes for the route's answer model holding these values
    route = next(r for r in pings_router.routes if getattr(r, "path", "") == "/v1/pings")
    content = await serialize_response(
        field=route.response_field,  # type: ignore[attr-defined]
        response_content=PingBatchRead.model_validate_json(fast.content),
        dump_json=True,
    )
    assert fast.content == content
    assert await _queued(app) == 0


async def test_the_fast_path_accepts_exactly_the_bodies_the_route_model_accepts() -> None:
    """Its plain-dict validator and the route's model: same verdicts, same values."""
    good = _fix("v-1", accuracy_m=12.5, speed_mps=-1, heading=None)
    bodies: list[Any] = [
        {"pings": [good]},
        {"pings": []},
        {"pings": [{**good, "lon": "1.5"}]},
        {"pings": [{**good, "lon": True}]},
        {"pings": [{**good, "id": 7}]},
        {"pings": [{**good, "id": ""}]},
        {"pings": [{**good, "id": "x" * 65}]},
        {"pings": [{**good, "id": "x" * 64}]},
        {"pings": [{**good, "recorded_at": "2026-12-03T10:00:00"}]},
        {"pings": [{**good, "recorded_at": "2026-12-03"}]},
        {"pings": [{**good, "recorded_at": 1_764_000_000}]},
        {"pings": [{**good, "recorded_at": "3000-01-01T00:00:00+00:00"}]},
        {"pings": [{**good, "recorded_at": "2999-12-31T23:30:00-01:00"}]},
        {"pings": [{**good, "recorded_at": "1900-01-01T00:30:00+01:00"}]},
        {"pings": [{**good, "accuracy_m": None, "extra": 1}]},
        {"pings": [{k: v for k, v in good.items() if k != "lat"}]},
        {"pings": [good], "more": []},
        {"pings": {"0": good}},
        {"pings": None},
        [good],
    ]
    for raw in bodies:
        try:
            want: Any = PingBatchCreate.model_validate(raw).model_dump(exclude_unset=True)
        except ValidationError:
            want = "refused"
        try:
            got: Any = fastpath._BODY.validate_python(raw)
        except ValidationError:
            got = "refused"
        assert got == want, raw


async def test_bad_input_is_left_to_the_route_and_stores_nothing(
    served: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = served
    auth = await _device(client)
    too_many = {"pings": [_fix(f"m{i}") for i in range(1001)]}
    bad: list[tuple[Any, dict[str, str], int]] = [
        ({"pings": [{"id": "x", "lon": 1, "lat": 2}]}, {}, 422),  # no recorded_at
        ({"pings": [_fix("x", color="red")]}, {}, 422),  # unknown field
        ({"pings": [_fix("")]}, {}, 422),  # id too short
        ({"ping": [_fix("x")]}, {}, 422),
        (too_many, {"Prefer": "respond-async"}, 413),
        ({"pings": [_fix("x", recorded_at="yesterday")]}, {}, 422),
    ]
    for body, headers, status in bad:
        r, by_fast = await _post(client, auth, body, headers=headers)
        assert r.status_code == status, (body, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert not by_fast
    r = await client.post("/v1/pings", content=b'{"pings": [', headers={**auth, **_JSON})
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/problem+json"
    assert await _queued(app) == 0


_JSON = {"Content-Type": "application/json"}


async def test_nan_and_other_json_the_fast_path_does_not_parse_go_to_the_route(
    served: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = served
    auth = await _device(client)
    fix = _fix("nan-1")
    raw = (
        '{"pings": [{"id": "nan-1", "lon": -1.5491, "lat": 53.8008, "accuracy_m": NaN, '
        f'"recorded_at": "{fix["recorded_at"]}"}}]}}'
    )
    before = _fast()
    r = await client.post("/v1/pings", content=raw.encode(), headers={**auth, **_JSON})
    assert _fast() == before  # orjson refuses NaN: the route (json) decides, as before
    assert r.status_code == 202, r.text
    assert r.json()["flagged"] == [{"id": "nan-1", "reason": "no_accuracy"}] or r.json()[
        "accepted_ids"
    ] == ["nan-1"]
    # another content type: the route's answer
    r = await client.post(
        "/v1/pings",
        content=b'{"pings": []}',
        headers={**auth, "Content-Type": "text/plain"},
    )
    assert r.status_code != 202 or r.json()["accepted"] == 0
    assert _fast() == before


async def test_background_location_off_is_the_routes_409(
    served: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = served
    auth = await _device(client, background=False)
    fast, by_fast = await _post(client, auth, {"pings": [_fix("off-1")]})
    routed, _ = await _post(client, auth, {"pings": [_fix("off-1")]}, route=True)
    assert by_fast
    assert fast.status_code == 409
    assert fast.headers["content-type"] == "application/problem+json"
    _same_answer(fast, routed, {})
    batch = {"pings": [_fix("off-2", 20), _fix("off-3", 10)]}  # the synchronous mode too
    fast, by_fast = await _post(client, auth, batch)
    routed = await client.post("/v1/pings", params={"mode": "sync"}, json=batch, headers=auth)
    assert by_fast
    assert fast.status_code == 409
    _same_answer(fast, routed, {})
    assert await _queued(app) == 0
    async with app.state.sessionmaker() as s:
        stored = await s.scalar(
            text("SELECT count(*) FROM pings WHERE client_id IN ('off-2', 'off-3')")
        )
    assert stored == 0


async def test_unknown_erased_and_staff_callers_are_the_routes(
    served: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = served
    auth = await _device(client)
    r, by_fast = await _post(client, auth, {"pings": [_fix("e-1")]})
    assert by_fast
    assert r.status_code == 202
    assert (await client.delete("/v1/me", headers=auth)).status_code == 204
    r, by_fast = await _post(client, auth, {"pings": [_fix("e-2")]})
    assert r.status_code == 401
    assert not by_fast
    assert r.headers["content-type"] == "application/problem+json"
    nobody = {"Authorization": "Bearer hd_" + uuid.uuid4().hex}
    r, by_fast = await _post(client, nobody, {"pings": [_fix("n-1")]})
    assert r.status_code == 401
    assert not by_fast
    r, by_fast = await _post(client, {}, {"pings": [_fix("n-2")]})
    assert r.status_code == 401
    assert not by_fast
    assert await _queued(app) == 0  # the erasure took the first fix with the device


async def test_rate_limits_hold_through_the_fast_path(settings: Settings, url: str) -> None:
    limited = _settings(
        settings,
        url,
        rate_limit_enabled=True,
        rate_limit_per_caller_per_minute={"ingest": 3.0, "devices": 100.0},
        rate_limit_per_ip_per_minute={"ingest": 1000.0, "devices": 100.0},
    )
    async for app, client in _served(limited):
        auth = await _device(client)
        answers = [await _post(client, auth, {"pings": [_fix(f"r{i}")]}) for i in range(5)]
        assert [r.status_code for r, _ in answers] == [202, 202, 202, 429, 429]
        assert [by_fast for _, by_fast in answers] == [True, True, True, False, False]
        assert answers[3][0].headers["retry-after"] == "20"
        assert answers[3][0].headers["content-type"] == "application/problem+json"
        assert await _queued(app) == 3
        other = await _device(client)  # its own bucket
        r, by_fast = await _post(client, other, {"pings": [_fix("o1")]})
        assert r.status_code == 202
        assert by_fast
