"""Request files for each scenario, built from the synthetic city (deterministic per seed)."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from bench.city import City
from bench.load import Req


def _dump(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


def baseline_requests(city: City, n: int) -> list[Req]:
    return [
        Req("POST", "/lookup", "", _dump({"lon": lon, "lat": lat}))
        for lon, lat in city.points_near_places(n, salt=1)
    ]


def resolve_requests(city: City, n: int, tokens: list[str]) -> list[Req]:
    out = []
    for i, (lon, lat) in enumerate(city.points_near_places(n, salt=2)):
        query = urlencode({"lon": lon, "lat": lat, "accuracy_m": 20})
        out.append(Req("GET", f"/v1/geofences/resolve?{query}", tokens[i % len(tokens)]))
    return out


def checkin_requests(city: City, n: int, tokens: list[str]) -> list[Req]:
    """A resident taps the place they stand at (with `geofence_id`: several places within reach
    of a point are common in a town centre, and without it the API answers 409 ambiguous-place)."""
    out = []
    for i, (gid, lon, lat) in enumerate(city.checkin_points(n, spread_m=30, salt=3)):
        body = {
            "lon": lon,
            "lat": lat,
            "accuracy_m": 12.0,
            "geofence_id": str(gid),
            "recorded_at": "@T1@",
        }
        out.append(Req("POST", "/v1/checkins", tokens[i % len(tokens)], _dump(body)))
    return out


def _ping(fix_lon: float, fix_lat: float, acc: float, ago: int, speed: float) -> dict[str, object]:
    return {
        "id": "@ID@",
        "lon": fix_lon,
        "lat": fix_lat,
        "accuracy_m": acc,
        "recorded_at": f"@T{ago}@",
        "speed_mps": speed,
    }


def single_ping_requests(city: City, devices: int, fixes: int, tokens: list[str]) -> list[Req]:
    """One ping per request; consecutive lines belong to different devices, each in track order."""
    tracks = [city.track(d, fixes) for d in range(devices)]
    out = []
    for k in range(fixes):
        for d, track in enumerate(tracks):
            f = track[k]
            ago = track[-1].seconds - f.seconds
            body = {"pings": [_ping(f.lon, f.lat, f.accuracy_m, ago, f.speed_mps)]}
            out.append(Req("POST", "/v1/pings", tokens[d % len(tokens)], _dump(body)))
    return out


def batch_ping_requests(city: City, devices: int, per_batch: int, tokens: list[str]) -> list[Req]:
    """`per_batch` consecutive fixes of one device per request (a phone catching up)."""
    out = []
    for d in range(devices):
        track = city.track(d, per_batch)
        last = track[-1].seconds
        pings = [_ping(f.lon, f.lat, f.accuracy_m, last - f.seconds, f.speed_mps) for f in track]
        out.append(Req("POST", "/v1/pings", tokens[d % len(tokens)], _dump({"pings": pings})))
    return out
