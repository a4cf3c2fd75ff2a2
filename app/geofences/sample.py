"""A generated but realistic-looking council GIS export: libraries, schools, parks, depots...

Deterministic (seeded), so tests, the demo and benchmarks see the same file. Buildings are small
rotated rectangles or L-shapes, parks are irregular polygons (some with a pond as a hole), school
sites are sometimes split into two parts (MultiPolygon), and small things are circles.

    uv run python -m app.geofences.sample demo/places-sample.geojson --count 60
"""

from __future__ import annotations

import argparse
import math
import random
from pathlib import Path
from typing import Any

import orjson

from app.core.geo import destination

# Market towns of the Calder valley and around (centres only; the places are invented).
TOWNS: list[tuple[str, float, float]] = [
    ("Calderbridge", -2.0120, 53.7420),
    ("Todmorden", -2.0970, 53.7130),
    ("Mytholmroyd", -1.9830, 53.7300),
    ("Sowerby Bridge", -1.9110, 53.7080),
    ("Halifax", -1.8600, 53.7210),
    ("Brighouse", -1.7820, 53.7030),
    ("Elland", -1.8380, 53.6850),
    ("Hebble End", -2.0300, 53.7520),
    ("Ripponden", -1.9440, 53.6720),
    ("Luddenden", -1.9530, 53.7300),
]
STREETS = [
    "Market Street", "Mill Lane", "Station Road", "Church Street", "Bridge Gate", "Albert Road",
    "Burnley Road", "New Road", "Hope Street", "Valley Road", "Park Road", "Commercial Street",
    "Carr Lane", "Wharf Street", "Crown Street", "Hangingroyd Lane",
]  # fmt: skip
KINDS: list[tuple[str, str, float]] = [
    # (category, name pattern, weight)
    ("library", "{town} {street} Library", 0.10),
    ("leisure_centre", "{town} Leisure Centre", 0.05),
    ("park", "{street_short} Park", 0.17),
    ("museum", "{town} Heritage Museum", 0.03),
    ("council_office", "{town} Customer Service Centre", 0.05),
    ("depot", "{street} Highways Depot", 0.05),
    ("school", "{street_short} Primary School", 0.20),
    ("other", "{street} Community Centre", 0.15),
    ("other", "{street} Recycling Point", 0.20),
]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")


def _rect(lon: float, lat: float, w: float, h: float, angle: float) -> list[list[float]]:
    """A w × h metre rectangle centred on (lon, lat), rotated by `angle` degrees."""
    half_diag = math.hypot(w, h) / 2
    base = math.degrees(math.atan2(w, h))
    corners = [angle + base, angle + 180 - base, angle + 180 + base, angle + 360 - base]
    ring = [list(destination(lon, lat, b, half_diag)) for b in corners]
    ring = [[round(x, 6), round(y, 6)] for x, y in ring]
    return [*ring, ring[0]]


def _blob(rng: random.Random, lon: float, lat: float, radius: float, n: int) -> list[list[float]]:
    ring = []
    for i in range(n):
        r = radius * rng.uniform(0.75, 1.0)
        x, y = destination(lon, lat, 360.0 * i / n, r)
        ring.append([round(x, 6), round(y, 6)])
    ring.reverse()  # counter-clockwise, as RFC 7946 likes (either is accepted)
    return [*ring, ring[0]]


def _hours(rng: random.Random, category: str) -> dict[str, Any] | None:
    if category in ("park", "other") and rng.random() < 0.6:
        return None
    open_at, close_at = rng.choice([("09:00", "17:00"), ("08:30", "18:00"), ("10:00", "16:00")])
    weekly: dict[str, list[list[str]]] = {d: [[open_at, close_at]] for d in WEEKDAYS}
    if category == "leisure_centre":
        weekly = {d: [["06:30", "22:00"]] for d in (*WEEKDAYS, "sat", "sun")}
    elif category == "library":
        weekly["sat"] = [["09:30", "12:30"]]
    return {
        "time_zone": "Europe/London",
        "weekly": weekly,
        "closed_dates": ["2026-12-25", "2026-12-26", "2027-01-01"],
    }


def _feature(rng: random.Random, index: int) -> dict[str, Any]:
    town, tlon, tlat = TOWNS[index % len(TOWNS)]
    category, pattern = rng.choices([(c, p) for c, p, _ in KINDS], weights=[w for *_, w in KINDS])[
        0
    ]
    street = rng.choice(STREETS)
    lon, lat = destination(tlon, tlat, rng.uniform(0, 360), rng.uniform(50, 2500))
    name = pattern.format(town=town, street=street, street_short=street.split()[0])
    props: dict[str, Any] = {
        "name": name,
        "category": category,
        "external_id": f"CBC-{category[:3].upper()}-{index:05d}",
        "tags": sorted(rng.sample(["wifi", "toilets", "parking", "step-free", "cafe"], k=2)),
        "dwell_s": rng.choice([120, 300, 600]),
        "metadata": {"uprn": str(100_050_000_000 + index * 7), "ward": f"{town} Ward"},
    }
    hours = _hours(rng, category)
    if hours:
        props["opening_hours"] = hours
    angle = rng.uniform(0, 90)
    geometry: dict[str, Any]
    if "Recycling" in name:
        props["radius_m"] = rng.choice([15, 20, 25])
        geometry = {"type": "Point", "coordinates": [round(lon, 6), round(lat, 6)]}
    elif category == "park":
        outer = _blob(rng, lon, lat, rng.uniform(80, 300), rng.randint(8, 24))
        rings = [outer]
        if rng.random() < 0.3:  # a pond
            pond = _blob(rng, lon, lat, 20, 8)
            rings.append(list(reversed(pond)))
        geometry = {"type": "Polygon", "coordinates": rings}
    elif category == "school" and rng.random() < 0.3:  # main building and a detached field
        field_lon, field_lat = destination(lon, lat, angle + 90, 140)
        geometry = {
            "type": "MultiPolygon",
            "coordinates": [
                [_rect(lon, lat, 70, 40, angle)],
                [_rect(field_lon, field_lat, 90, 60, angle)],
            ],
        }
    else:
        w, h = rng.uniform(20, 80), rng.uniform(15, 50)
        geometry = {"type": "Polygon", "coordinates": [_rect(lon, lat, w, h, angle)]}
    return {"type": "Feature", "geometry": geometry, "properties": props}


def generate(count: int, seed: int = 1974) -> dict[str, Any]:
    rng = random.Random(seed)
    return {"type": "FeatureCollection", "features": [_feature(rng, i) for i in range(count)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("output", type=Path)
    parser.add_argument("--count", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1974)
    args = parser.parse_args()
    data = generate(args.count, args.seed)
    args.output.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")


if __name__ == "__main__":
    main()
