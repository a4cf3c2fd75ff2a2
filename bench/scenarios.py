"""Request files for each scenario, built from the synthetic city (deterministic per seed)."""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import urlencode

from app.ingest.service import KNOTS_TO_MPS
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


def single_ping_requests(
    city: City, devices: int, fixes: int, tokens: list[str], first: int = 0, last: int | None = None
) -> list[Req]:
    """One ping per request; consecutive lines belong to different devices, each in track order.

    `first`, `last`: only the fixes of those positions of each `fixes`-long track (their times
    as in the whole track's file: the fixes from `first` on continue a file of those before)."""
    tracks = [city.track(d, fixes) for d in range(devices)]
    out = []
    for k in range(first, fixes if last is None else last):
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


# -- the GPS apps' formats (docs/ingest.md): the same tracks as pings_single / pings_batch100 --
def _number_placeholders(body: str) -> str:
    """`"@E12@"` → `@E12@`: an epoch placeholder that becomes a JSON number when filled."""
    return re.sub(r'"(@E\d+@)"', r"\1", body)


def overland_requests(city: City, devices: int, per_batch: int, tokens: list[str]) -> list[Req]:
    """Overland (iOS): `per_batch` fixes of one device as GeoJSON Features, as the app sends its
    queue; the same fixes as `batch_ping_requests`."""
    out = []
    for d in range(devices):
        track = city.track(d, per_batch)
        last = track[-1].seconds
        features = [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [f.lon, f.lat]},
                "properties": {
                    # milliseconds vary per request: replays are new fixes (see bench/load.py)
                    "timestamp": f"@U{last - f.seconds}@",
                    "altitude": 60,
                    "speed": f.speed_mps,
                    "horizontal_accuracy": f.accuracy_m,
                    "vertical_accuracy": 8,
                    "motion": ["walking"],
                    "battery_state": "unplugged",
                    "battery_level": 0.8,
                    "wifi": "",
                },
            }
            for f in track
        ]
        body = _dump({"locations": features})
        out.append(Req("POST", "/v1/ingest/overland", tokens[d % len(tokens)], body))
    return out


def owntracks_requests(city: City, devices: int, fixes: int, tokens: list[str]) -> list[Req]:
    """OwnTracks (HTTP mode): one `_type: location` per request, HTTP Basic with the device
    token as password; the same fixes, in the same order, as `single_ping_requests`."""
    tracks = [city.track(d, fixes) for d in range(devices)]
    out = []
    for k in range(fixes):
        for d, track in enumerate(tracks):
            f = track[k]
            ago = track[-1].seconds - f.seconds
            token = tokens[d % len(tokens)]
            basic = base64.b64encode(f"resident:{token}".encode()).decode()
            message = {
                "_type": "location",
                "lat": f.lat,
                "lon": f.lon,
                "tst": f"@E{ago}@",
                "created_at": f"@E{ago}@",
                "acc": round(f.accuracy_m),
                "vel": round(f.speed_mps * 3.6),
                "alt": 60,
                "batt": 80,
                "bs": 1,
                "conn": "m",
                "m": 1,
                "t": "u",
                "tid": "rs",
            }
            body = _number_placeholders(_dump(message))
            out.append(Req("POST", "/v1/ingest/owntracks", f"Basic {basic}", body))
    return out


def traccar_requests(city: City, devices: int, fixes: int, keys: list[str]) -> list[Req]:
    """Traccar Client (OsmAnd protocol): one fix per POST in the query string, `id` = the
    device's ingest key, speed in knots; the same fixes as `single_ping_requests`."""
    tracks = [city.track(d, fixes) for d in range(devices)]
    out = []
    for k in range(fixes):
        for d, track in enumerate(tracks):
            f = track[k]
            ago = track[-1].seconds - f.seconds
            query = urlencode(
                {
                    "id": keys[d % len(keys)],
                    "lat": f.lat,
                    "lon": f.lon,
                    "timestamp": "TS",
                    "speed": round(f.speed_mps / KNOTS_TO_MPS, 2),
                    "accuracy": f.accuracy_m,
                    "altitude": 60,
                    "batt": 80,
                }
            ).replace("timestamp=TS", f"timestamp=@E{ago}@")
            out.append(Req("POST", f"/v1/ingest/traccar?{query}"))
    return out
