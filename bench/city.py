"""A deterministic synthetic city: geofences clustered in towns, devices with tracks, staff.

Everything is derived from one integer seed, so the same seed and sizes give byte-identical rows
(`City.fingerprint()` hashes them). Geofences are generated one by one from a per-place random
stream, so a million of them stream straight into PostgreSQL's COPY without being held in memory,
and any place's anchor point can be recomputed on its own (for request bodies "near places").

Shapes (roughly like a real council's estate):
- 55 % buildings: rotated rectangles and L-shapes, 10-80 m across;
- 30 % circles: 25-300 m radius (stored as a 32-gon in `geom`, with `center` and `radius_m`);
- 15 % parks and open spaces: irregular star-shaped polygons, 80-700 m across, 12-40 vertices.
Towns are spread over England's bounding box; bigger towns get more places.
"""

from __future__ import annotations

import hashlib
import math
import random
import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

GENERATOR_VERSION = 1

# England's bounding box (lon/lat), a little inside the coast so towns are mostly on land.
REGION = (-5.5, 50.2, 1.6, 55.6)
EARTH_M_PER_DEG = 111_320.0
SRID_FLAG = 0x20000000

BUILDING_CATEGORIES = ["library", "leisure_centre", "museum", "council_office", "depot", "school"]
CIRCLE_CATEGORIES = ["library", "school", "other", "council_office", "leisure_centre"]

# what a track moves like: (name, weight, speed m/s, seconds between fixes)
MODES = [("walk", 0.6, 1.4, 15), ("cycle", 0.25, 5.0, 10), ("drive", 0.15, 13.0, 5)]

_TAG_TOWNS = 0x7011
_TAG_GEOFENCE = 0x6E0F
_TAG_DEVICE = 0xDE71
_TAG_STAFF = 0x57AF
_TAG_POINTS = 0x9017


def _rng(seed: int, tag: int, index: int = 0) -> random.Random:
    # integer seeding is deterministic across processes (no str hash randomisation involved)
    return random.Random((seed << 48) ^ (tag << 32) ^ index)


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def ewkb_point(lon: float, lat: float) -> bytes:
    """A point as EWKB with SRID 4326 (PostGIS's binary COPY format for geometry)."""
    return struct.pack("<BIIdd", 1, 1 | SRID_FLAG, 4326, lon, lat)


def ewkb_polygon(ring: list[tuple[float, float]]) -> bytes:
    """A one-ring polygon as EWKB with SRID 4326; `ring` must be closed."""
    flat = [c for point in ring for c in point]
    return struct.pack("<BIIII", 1, 3 | SRID_FLAG, 4326, 1, len(ring)) + struct.pack(
        f"<{len(flat)}d", *flat
    )


def offset(lon: float, lat: float, dx_m: float, dy_m: float) -> tuple[float, float]:
    """Move a point by metres east (dx) and north (dy) — flat-earth, fine at town scale."""
    dlat = dy_m / EARTH_M_PER_DEG
    dlon = dx_m / (EARTH_M_PER_DEG * math.cos(math.radians(lat)))
    return lon + dlon, lat + dlat


def _ring(lon: float, lat: float, pts_m: list[tuple[float, float]]) -> list[tuple[float, float]]:
    ring = [offset(lon, lat, x, y) for x, y in pts_m]
    ring = [(round(x, 6), round(y, 6)) for x, y in ring]
    ring.append(ring[0])
    return ring


def _rotate(pts: list[tuple[float, float]], angle: float) -> list[tuple[float, float]]:
    c, s = math.cos(angle), math.sin(angle)
    return [(x * c - y * s, x * s + y * c) for x, y in pts]


@dataclass(frozen=True)
class Town:
    name: str
    lon: float
    lat: float
    radius_m: float
    weight: float


@dataclass(frozen=True)
class Place:
    """One generated geofence (the row minus database defaults)."""

    id: uuid.UUID
    index: int
    name: str
    category: str
    shape_kind: str
    anchor: tuple[float, float]
    ring: list[tuple[float, float]]
    radius_m: float | None
    trigger_distance_m: float
    dwell_s: int
    tags: list[str]


@dataclass(frozen=True)
class TrackFix:
    lon: float
    lat: float
    accuracy_m: float
    seconds: int  # since the track started
    speed_mps: float


@dataclass(frozen=True)
class CityConfig:
    seed: int = 42
    geofences: int = 100_000
    devices: int = 100_000
    staff_share: float = 0.01
    organisation_slug: str = "bench-city"
    # towns' radii × this: below 1 the same places crowd into smaller towns and overlap (the
    # dense map of bench/pings_async.py)
    town_scale: float = 1.0

    @property
    def key(self) -> str:
        """Identifies a loaded dataset (the cache key of the bench database)."""
        dense = "" if self.town_scale == 1.0 else f"_t{int(self.town_scale * 1000)}"
        return f"s{self.seed}_g{self.geofences}_d{self.devices}_v{GENERATOR_VERSION}{dense}"

    @property
    def staff(self) -> int:
        return max(3, int(self.devices * self.staff_share))


STAFF_PASSWORD = "bench-password-123"


@dataclass
class City:
    config: CityConfig
    organisation_id: uuid.UUID = field(init=False)
    towns: list[Town] = field(init=False)

    def __post_init__(self) -> None:
        rng = _rng(self.config.seed, _TAG_TOWNS)
        self.organisation_id = _uuid(rng)
        n_towns = max(3, min(400, self.config.geofences // 250))
        west, south, east, north = REGION
        towns = []
        for i in range(n_towns):
            # a few cities, many small towns (Pareto-ish sizes)
            weight = min(50.0, rng.paretovariate(1.2))
            towns.append(
                Town(
                    name=f"Town {i + 1}",
                    lon=round(rng.uniform(west, east), 6),
                    lat=round(rng.uniform(south, north), 6),
                    radius_m=(1_500 + 700 * weight) * self.config.town_scale,
                    weight=weight,
                )
            )
        self._town_weights = [t.weight for t in towns]
        self.towns = towns

    # -- places ----------------------------------------------------------------------------
    def place(self, index: int) -> Place:
        rng = _rng(self.config.seed, _TAG_GEOFENCE, index)
        pid = _uuid(rng)
        town = rng.choices(self.towns, weights=self._town_weights)[0]
        r = abs(rng.gauss(0, town.radius_m / 2))
        theta = rng.uniform(0, 2 * math.pi)
        lon, lat = offset(town.lon, town.lat, r * math.cos(theta), r * math.sin(theta))
        anchor = (round(lon, 6), round(lat, 6))
        kind = rng.random()
        radius_m: float | None = None
        if kind < 0.55:
            category = rng.choice(BUILDING_CATEGORIES)
            w, h = rng.uniform(10, 80), rng.uniform(10, 60)
            if rng.random() < 0.7:
                pts = [(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)]
            else:  # L-shape
                pts = [
                    (-w / 2, -h / 2),
                    (w / 2, -h / 2),
                    (w / 2, 0),
                    (0, 0),
                    (0, h / 2),
                    (-w / 2, h / 2),
                ]
            ring = _ring(lon, lat, _rotate(pts, rng.uniform(0, math.pi)))
            shape, trigger, dwell = "polygon", rng.choice([25.0, 50.0, 75.0]), 300
        elif kind < 0.85:
            category = rng.choice(CIRCLE_CATEGORIES)
            radius_m = round(rng.uniform(25, 300), 1)
            pts = [
                (radius_m * math.cos(a), radius_m * math.sin(a))
                for a in (2 * math.pi * k / 32 for k in range(32))
            ]
            ring = _ring(lon, lat, pts)
            shape, trigger, dwell = "circle", 50.0, 300
        else:
            category = "park"
            base = rng.uniform(40, 350)
            n = rng.randint(12, 40)
            angles = sorted(rng.uniform(0, 2 * math.pi) for _ in range(n))
            pts = [
                (base * f * math.cos(a), base * f * math.sin(a))
                for a, f in ((a, rng.uniform(0.6, 1.0)) for a in angles)
            ]
            ring = _ring(lon, lat, pts)
            shape, trigger, dwell = "polygon", 100.0, 600
        tags = [town.name.lower().replace(" ", "-")]
        if rng.random() < 0.2:
            tags.append("accessible")
        return Place(
            id=pid,
            index=index,
            name=f"{category.replace('_', ' ').title()} {index + 1}",
            category=category,
            shape_kind=shape,
            anchor=anchor,
            ring=ring,
            radius_m=radius_m,
            trigger_distance_m=trigger,
            dwell_s=dwell,
            tags=tags,
        )

    def places(self, start: int = 0, stop: int | None = None) -> Iterator[Place]:
        for i in range(start, self.config.geofences if stop is None else stop):
            yield self.place(i)

    def geofence_records(self) -> Iterator[tuple[Any, ...]]:
        """Rows for `GEOFENCE_COLUMNS` (geometry as EWKB bytes; `geog` is generated)."""
        org = self.organisation_id
        for p in self.places():
            yield (
                p.id,
                org,
                f"bench-{p.index}",
                p.name,
                p.category,
                p.tags,
                p.shape_kind,
                p.radius_m,
                ewkb_point(*p.anchor) if p.shape_kind == "circle" else None,
                ewkb_polygon(p.ring),
                p.trigger_distance_m,
                p.dwell_s,
            )

    # -- devices and staff -----------------------------------------------------------------
    def device_id(self, index: int) -> uuid.UUID:
        return _uuid(_rng(self.config.seed, _TAG_DEVICE, index))

    def device_token(self, index: int) -> str:
        """The device's bearer token (only its SHA-256 is stored, as the product does)."""
        digest = hashlib.sha256(f"bench:{self.config.seed}:{index}".encode()).hexdigest()
        return "hd_bench" + digest[:40]

    def device_records(self) -> Iterator[tuple[Any, ...]]:
        platforms = ["android", "ios", "web"]
        for i in range(self.config.devices):
            token_hash = hashlib.sha256(self.device_token(i).encode()).hexdigest()
            yield (self.device_id(i), self.organisation_id, token_hash, platforms[i % 3])

    def staff_email(self, index: int) -> str:
        return f"staff{index}@bench.example"

    def staff_role(self, index: int) -> str:
        if index == 0:
            return "admin"
        return "editor" if index % 20 == 1 else "field_worker"

    def staff_records(self, password_hash: str) -> Iterator[tuple[Any, ...]]:
        for i in range(self.config.staff):
            yield (
                _uuid(_rng(self.config.seed, _TAG_STAFF, i)),
                self.organisation_id,
                self.staff_email(i),
                f"Bench Staff {i}",
                password_hash,
                self.staff_role(i),
            )

    def staff_tasks(self, index: int, per_worker: int = 5) -> list[uuid.UUID]:
        """Places a field worker has tasks at (loaded once the product has a tasks table)."""
        if self.staff_role(index) != "field_worker":
            return []
        rng = _rng(self.config.seed, _TAG_STAFF, 1_000_000 + index)
        return [self.place(rng.randrange(self.config.geofences)).id for _ in range(per_worker)]

    # -- movement --------------------------------------------------------------------------
    def track(self, device_index: int, fixes: int = 100) -> list[TrackFix]:
        """A walk, ride or drive that starts near a place and heads across town past others."""
        rng = _rng(self.config.seed, _TAG_DEVICE, 2_000_000 + device_index)
        start = self.place(rng.randrange(self.config.geofences))
        mode = rng.choices(MODES, weights=[m[1] for m in MODES])[0]
        _name, _w, speed, interval = mode
        lon, lat = offset(*start.anchor, rng.uniform(-150, 150), rng.uniform(-150, 150))
        town = min(self.towns, key=lambda t: (t.lon - lon) ** 2 + (t.lat - lat) ** 2)
        heading = math.atan2(town.lat - lat, town.lon - lon) + rng.gauss(0, 0.6)
        out = []
        for k in range(fixes):
            v = max(0.2, rng.gauss(speed, speed * 0.15))
            heading += rng.gauss(0, 0.15)
            lon, lat = offset(
                lon, lat, v * interval * math.cos(heading), v * interval * math.sin(heading)
            )
            accuracy = rng.uniform(4, 30) if rng.random() < 0.9 else rng.uniform(30, 300)
            out.append(
                TrackFix(
                    round(lon, 6), round(lat, 6), round(accuracy, 1), k * interval, round(v, 2)
                )
            )
        return out

    def points_near_places(
        self, n: int, spread_m: float = 80.0, salt: int = 0
    ) -> list[tuple[float, float]]:
        """`n` request points: each within `spread_m` of a random place's anchor."""
        rng = _rng(self.config.seed, _TAG_POINTS, salt)
        out = []
        for _ in range(n):
            p = self.place(rng.randrange(self.config.geofences))
            lon, lat = offset(
                *p.anchor, rng.uniform(-spread_m, spread_m), rng.uniform(-spread_m, spread_m)
            )
            out.append((round(lon, 6), round(lat, 6)))
        return out

    def checkin_points(
        self, n: int, spread_m: float = 30.0, salt: int = 0
    ) -> list[tuple[uuid.UUID, float, float]]:
        """`n` (place id, lon, lat): a person standing within `spread_m` of the place they tap."""
        rng = _rng(self.config.seed, _TAG_POINTS, salt)
        out = []
        for _ in range(n):
            p = self.place(rng.randrange(self.config.geofences))
            lon, lat = offset(
                *p.anchor, rng.uniform(-spread_m, spread_m), rng.uniform(-spread_m, spread_m)
            )
            out.append((p.id, round(lon, 6), round(lat, 6)))
        return out

    # -- identity --------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """SHA-256 over every generated row (staff with a fixed placeholder hash)."""
        h = hashlib.sha256()
        for rows in (self.geofence_records(), self.device_records(), self.staff_records("-")):
            for row in rows:
                h.update(repr(row).encode())
        for i in range(min(self.config.devices, 20)):
            h.update(repr(self.track(i, 20)).encode())
        return h.hexdigest()


GEOFENCE_COLUMNS = [
    "id",
    "organisation_id",
    "external_id",
    "name",
    "category",
    "tags",
    "shape_kind",
    "radius_m",
    "center",
    "geom",
    "trigger_distance_m",
    "dwell_s",
]
DEVICE_COLUMNS = ["id", "organisation_id", "token_hash", "platform"]
STAFF_COLUMNS = ["id", "organisation_id", "email", "full_name", "password_hash", "role"]


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def recorded_times(fixes: list[TrackFix], end: datetime) -> list[str]:
    """Timestamps for a track that ends at `end` (so it is recent and never in the future)."""
    last = fixes[-1].seconds if fixes else 0
    return [iso(end - timedelta(seconds=last - f.seconds)) for f in fixes]
