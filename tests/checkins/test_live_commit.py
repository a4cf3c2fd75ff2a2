"""Check-ins and resolve against a real server, whose statements commit for real.

The other check-in tests run inside one rolled-back transaction, so they cannot see how a request
commits. A resident's check-in reads and writes outside BEGIN/COMMIT (the write is one atomic
statement; docs/benchmarks.md): here a second request, on whatever pooled connection it gets,
must see the first one's check-in, and refused check-ins must store nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.core.cluster import EmbeddedCluster
from tests.geofences.helpers import feature
from tests.live import LiveServer, live_server

LIBRARY = [[-2.012, 53.742], [-2.010, 53.742], [-2.010, 53.744], [-2.012, 53.744], [-2.012, 53.742]]


@pytest.fixture(scope="module")
def server(pg_cluster: EmbeddedCluster) -> Iterator[LiveServer]:
    with live_server(pg_cluster, "hereabouts_checkins_live", organisation="live-town") as s:
        yield s


def _place(server: LiveServer) -> str:
    body = feature({"type": "Polygon", "coordinates": [LIBRARY]}, trigger_distance_m=30)
    created = server.request("POST", "/v1/geofences", headers=server.admin_headers(), json=body)
    return str(created["id"])


def _resident(server: LiveServer) -> str:
    device = server.request("POST", "/v1/devices", json={"organisation": "live-town"})
    return str(device["token"])


def _post(server: LiveServer, token: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        server.base + "/v1/checkins",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def test_a_committed_check_in_is_seen_by_the_next_request(server: LiveServer) -> None:
    place = _place(server)
    token = _resident(server)
    first = _post(server, token, {"lon": -2.011, "lat": 53.743, "accuracy_m": 10})
    assert first.status_code == 201, first.text
    assert first.json()["place"] == {
        "id": place,
        "name": "Central Library",
        "category": "library",
        "distance_m": 0.0,
        "inside": True,
        "open": True,
    }
    again = _post(server, token, {"lon": -2.011, "lat": 53.743, "accuracy_m": 10})
    assert again.status_code == 200
    assert again.json()["repeated"] is True
    assert again.json()["checkin"] == first.json()["checkin"]
    history = server.request("GET", "/v1/me/checkins", token=token)
    assert [c["id"] for c in history["items"]] == [first.json()["checkin"]["id"]]
    resolved = server.request(
        "GET", "/v1/geofences/resolve", token=token, params={"lon": -2.011, "lat": 53.743}
    )
    assert [p["id"] for p in resolved["places"]] == [place]


def test_refused_check_ins_store_nothing(server: LiveServer) -> None:
    place = _place(server)
    token = _resident(server)
    too_far = _post(
        server, token, {"lon": -2.0, "lat": 53.743, "accuracy_m": 10, "geofence_id": place}
    )
    assert too_far.status_code == 422
    assert too_far.json()["type"].endswith("/too-far")
    nowhere = _post(server, token, {"lon": -1.5, "lat": 53.0, "accuracy_m": 10})
    assert nowhere.status_code == 422
    assert nowhere.json()["type"].endswith("/no-place-here")
    unknown = _post(server, "hd_not-a-token", {"lon": -2.011, "lat": 53.743, "accuracy_m": 10})
    assert unknown.status_code == 401
    assert server.request("GET", "/v1/me/checkins", token=token)["items"] == []
