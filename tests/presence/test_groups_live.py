"""Group commit through a real server: many devices pinging at once, every answer right.

`test_groups.py` makes groups form deterministically in-process; here a real `hereabouts serve`
(one worker, its own database, commits for real) gets 40 devices' requests at the same time, so
requests wait, give their connection back and run in groups through the real HTTP stack and
pool. Every request must get its own answer, and what is stored must be exactly what was sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.core.cluster import EmbeddedCluster
from tests.geofences.helpers import feature
from tests.live import LiveServer, live_server

# a small square (about 130 m × 220 m) and a track that walks into it and out again
PLACE = [[-2.012, 53.742], [-2.010, 53.742], [-2.010, 53.744], [-2.012, 53.744], [-2.012, 53.742]]
# outside, inside twice (an enter needs two fixes), away twice (so does an exit)
TRACK = [
    (-2.020, 53.743),
    (-2.011, 53.743),
    (-2.0112, 53.7431),
    (-2.000, 53.743),
    (-1.999, 53.743),
]
DEVICES = 40


@pytest.fixture(scope="module")
def server(pg_cluster: EmbeddedCluster) -> Iterator[LiveServer]:
    with live_server(pg_cluster, "hereabouts_groups_live", organisation="group-town") as s:
        yield s


def _device(server: LiveServer) -> str:
    token = str(server.request("POST", "/v1/devices", json={"organisation": "group-town"})["token"])
    server.request("PUT", "/v1/me/background-location", token=token, json={"enabled": True})
    return token


async def _walk(
    client: httpx.AsyncClient, token: str, n: int, mode: str = "sync"
) -> list[dict[str, Any]]:
    """The track, one ping per request, each request after the previous one's answer."""
    start = datetime.now(UTC) - timedelta(minutes=5)
    answers = []
    for k, (lon, lat) in enumerate(TRACK):
        ping = {
            "id": f"{mode}{n}-{k}",
            "lon": lon,
            "lat": lat,
            "accuracy_m": 8,
            "recorded_at": (start + timedelta(seconds=50 * k)).isoformat(),
        }
        r = await client.post(
            f"/v1/pings?mode={mode}",
            json={"pings": [ping]},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == (200 if mode == "sync" else 202), r.text
        answers.append(r.json())
    return answers


def test_forty_devices_at_once_each_get_their_own_events(server: LiveServer) -> None:
    body = feature({"type": "Polygon", "coordinates": [PLACE]}, trigger_distance_m=0)
    place = server.request("POST", "/v1/geofences", headers=server.admin_headers(), json=body)
    tokens = [_device(server) for _ in range(DEVICES)]

    async def everyone() -> list[list[dict[str, Any]]]:
        limits = httpx.Limits(max_connections=DEVICES)
        async with httpx.AsyncClient(base_url=server.base, timeout=60, limits=limits) as client:
            return await asyncio.gather(*(_walk(client, t, n) for n, t in enumerate(tokens)))

    walks = asyncio.run(everyone())
    for n, answers in enumerate(walks):
        assert [a["accepted"] for a in answers] == [1, 1, 1, 1, 1]
        events = [(e["type"], e["ping_id"]) for a in answers for e in a["events"]]
        want = [("nearby", f"sync{n}-1"), ("enter", f"sync{n}-2"), ("exit", f"sync{n}-4")]
        assert events == want, n
        assert all(e["geofence_id"] == place["id"] for a in answers for e in a["events"])
    # what is stored is what was answered: each device is outside again, and a retry of every
    # device's last request is acknowledged as a duplicate (the ping was stored, once)
    for n, token in enumerate(tokens):
        assert server.request("GET", "/v1/me/presence", token=token) == []
        last = {
            "id": f"sync{n}-4",
            "lon": TRACK[4][0],
            "lat": TRACK[4][1],
            "accuracy_m": 8,
            "recorded_at": (datetime.now(UTC) - timedelta(minutes=2)).isoformat(),
        }
        again = server.request("POST", "/v1/pings?mode=sync", token=token, json={"pings": [last]})
        assert (again["accepted"], again["duplicates"], again["events"]) == (0, 1, [])
    metrics = httpx.get(server.base + "/metrics").text
    assert "hereabouts_ping_group_requests_count" in metrics


def test_forty_devices_answered_202_at_once_get_the_same_events_moments_later(
    server: LiveServer,
) -> None:
    """Single fixes answered 202 (grouped into shared commits), evaluated by the evaluator
    inside the server process: staff see each device's nearby, enter and exit, once each."""
    body = feature({"type": "Polygon", "coordinates": [PLACE]}, trigger_distance_m=0)
    place = server.request("POST", "/v1/geofences", headers=server.admin_headers(), json=body)
    tokens = [_device(server) for _ in range(DEVICES)]

    async def everyone() -> list[list[dict[str, Any]]]:
        limits = httpx.Limits(max_connections=DEVICES)
        async with httpx.AsyncClient(base_url=server.base, timeout=60, limits=limits) as client:
            return await asyncio.gather(
                *(_walk(client, t, n, "async") for n, t in enumerate(tokens))
            )

    walks = asyncio.run(everyone())
    for n, answers in enumerate(walks):
        assert [a["accepted_ids"] for a in answers] == [[f"async{n}-{k}"] for k in range(5)]
    staff = server.admin_headers()

    def events() -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        cursor = None
        while True:
            q = f"/v1/events?geofence_id={place['id']}&limit=500" + (
                f"&cursor={cursor}" if cursor else ""
            )
            page = server.request("GET", q, headers=staff)
            out += [(e["type"], e["ping_id"]) for e in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                return out

    deadline = time.monotonic() + 60
    while len(got := events()) < 3 * DEVICES and time.monotonic() < deadline:
        time.sleep(0.2)
    want = {
        (t, f"async{n}-{k}")
        for n in range(DEVICES)
        for t, k in (("nearby", 1), ("enter", 2), ("exit", 4))
    }
    assert sorted(got) == sorted(want)
