"""Generated town centres for the presence-quality harness, in local metres.

A grid of blocks separated by streets. Each block is either a row of buildings along its two
long frontages (terraces: neighbours share walls; 8-80 m wide, some large ones with a courtyard
hole) or a park with paths crossing it. Walkers use pavements 2-6 m from the facades, vehicles
the carriageway, and a road crosses some parks. Everything comes from one integer seed.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import shapely
from numpy.typing import NDArray
from shapely import STRtree
from shapely.geometry import LineString, Point, Polygon, box
from shapely.geometry.base import BaseGeometry

# Where the scene is put on the globe (only the engine's jump check uses lon/lat).
ORIGIN = (-1.5491, 53.8008)
# metres per degree on PostGIS's sphere (radius 6,371,008.8 m), as the ping read measures
M_PER_DEG_LAT = math.radians(6_371_008.8)

BLOCK_W = 160.0  # east-west extent of a block (its long frontages face north and south)
BLOCK_H = 90.0
STREET = 20.0  # facade to facade


def to_lonlat(x: float, y: float) -> tuple[float, float]:
    lon0, lat0 = ORIGIN
    return (
        lon0 + x / (M_PER_DEG_LAT * math.cos(math.radians(lat0))),
        lat0 + y / M_PER_DEG_LAT,
    )


def from_lonlat(lon: float, lat: float) -> tuple[float, float]:
    lon0, lat0 = ORIGIN
    return (
        (lon - lon0) * M_PER_DEG_LAT * math.cos(math.radians(lat0)),
        (lat - lat0) * M_PER_DEG_LAT,
    )


@dataclass(frozen=True)
class Place:
    id: uuid.UUID
    kind: str  # building | courtyard | park
    poly: Polygon
    width_m: float  # the smaller side of its bounding rectangle
    trigger_distance_m: float = 50.0
    dwell_s: int = 300

    def signed(self, x: float, y: float, pt: Point | None = None) -> float:
        """Metres outside (> 0), or minus the depth inside (< 0), as the ping read measures
        (`pt`: the point (x, y) already made, which saves making it again per place)."""
        if pt is None:
            pt = Point(x, y)
        if self.poly.covers(pt):
            return -float(self.poly.boundary.distance(pt))
        return float(self.poly.distance(pt))


@dataclass
class Block:
    x0: float
    y0: float
    park: bool
    buildings: list[Place] = field(default_factory=list)

    @property
    def rect(self) -> Polygon:
        return box(self.x0, self.y0, self.x0 + BLOCK_W, self.y0 + BLOCK_H)


@dataclass
class Scene:
    blocks: list[list[Block]]  # [column][row]
    places: list[Place]
    park_roads: list[LineString]  # roads through parks (cars)
    park_paths: list[LineString]  # footpaths across parks
    tree: STRtree = field(init=False)
    by_index: list[Place] = field(init=False)
    by_id: dict[uuid.UUID, Place] = field(init=False)
    # the places' outlines and their boundaries as arrays, in the tree's order (`signed_near`)
    polys: NDArray[np.object_] = field(init=False)
    boundaries: NDArray[np.object_] = field(init=False)

    def __post_init__(self) -> None:
        self.by_index = list(self.places)
        self.by_id = {p.id: p for p in self.places}
        self.polys = np.array([p.poly for p in self.by_index], dtype=object)
        self.boundaries = shapely.boundary(self.polys)
        self.tree = STRtree(self.polys)

    def near(self, geom: BaseGeometry, distance: float) -> list[Place]:
        """Places whose bounding box is within `distance` of the geometry's bounding box."""
        minx, miny, maxx, maxy = geom.bounds
        area = shapely.box(minx - distance, miny - distance, maxx + distance, maxy + distance)
        return [self.by_index[i] for i in self.tree.query(area)]

    def signed_near(
        self, points: Sequence[tuple[float, float]], distances: Sequence[float]
    ) -> list[list[tuple[Place, float]]]:
        """For each point, `near(point, distance)`'s places in its order, each with
        `Place.signed` of the point: one query and one pass of GEOS over every pair rather than a
        call each (the same operations, so the same numbers)."""
        if not points:
            return []
        xy = np.asarray(points, dtype=float)
        d = np.asarray(distances, dtype=float)
        pts = shapely.points(xy)
        areas = shapely.box(xy[:, 0] - d, xy[:, 1] - d, xy[:, 0] + d, xy[:, 1] + d)
        which, idx = self.tree.query(areas)
        at = pts[which]
        signed = shapely.distance(self.polys[idx], at)
        inside = shapely.covers(self.polys[idx], at)
        signed[inside] = -shapely.distance(self.boundaries[idx[inside]], at[inside])
        out: list[list[tuple[Place, float]]] = [[] for _ in points]
        for k, i, s in zip(which.tolist(), idx.tolist(), signed.tolist(), strict=True):
            out[k].append((self.by_index[i], s))
        return out

    def crossed(
        self, segments: Sequence[tuple[float, float, float, float]]
    ) -> list[list[tuple[Place, float, float, float]]]:
        """For each segment (ax, ay, bx, by), the places it intersects in `near(line, 0)`'s
        order, each with the metres from its ends to the place and the depth of the middle of
        what it crosses (its distance from the boundary), in one query for all of them."""
        out: list[list[tuple[Place, float, float, float]]] = [[] for _ in segments]
        if not segments:
            return out
        ends = np.asarray(segments, dtype=float)
        lines = shapely.linestrings(ends.reshape(-1, 2, 2))
        # without a predicate the tree compares envelopes: each line's is `near`'s box
        which, idx = self.tree.query(lines)
        hit = shapely.intersects(self.polys[idx], lines[which])
        which, idx = which[hit], idx[hit]
        polys, lines = self.polys[idx], lines[which]
        middle = shapely.centroid(shapely.intersection(polys, lines))
        depth = shapely.distance(self.boundaries[idx], middle)
        from_a = shapely.distance(polys, shapely.points(ends[which, 0:2]))
        from_b = shapely.distance(polys, shapely.points(ends[which, 2:4]))
        rows = zip(
            which.tolist(),
            idx.tolist(),
            from_a.tolist(),
            from_b.tolist(),
            depth.tolist(),
            strict=True,
        )
        for k, i, a, b, d in rows:
            out[k].append((self.by_index[i], a, b, d))
        return out

    def place(self, pid: uuid.UUID) -> Place:
        return self.by_id[pid]

    def containing(self, x: float, y: float) -> list[Place]:
        return [self.by_index[i] for i in self.tree.query(Point(x, y), predicate="covered_by")]

    def containing_many(self, points: Sequence[tuple[float, float]]) -> list[list[Place]]:
        """`containing` of each point, in one query."""
        out: list[list[Place]] = [[] for _ in points]
        if points:
            which, idx = self.tree.query(
                shapely.points(np.asarray(points, dtype=float)), predicate="covered_by"
            )
            for k, i in zip(which.tolist(), idx.tolist(), strict=True):
                out[k].append(self.by_index[i])
        return out

    @property
    def columns(self) -> int:
        return len(self.blocks)

    @property
    def rows(self) -> int:
        return len(self.blocks[0])


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _frontage(rng: random.Random, block: Block, south: bool, depth_max: float) -> list[Place]:
    """A terrace along one long side: widths 8-80 m, shared walls, depth 10-depth_max."""
    out: list[Place] = []
    x = block.x0
    end = block.x0 + BLOCK_W
    while end - x >= 8.0:
        width = min(
            end - x, rng.choice([rng.uniform(8, 20), rng.uniform(15, 40), rng.uniform(30, 80)])
        )
        if end - x - width < 8.0:
            width = end - x
        depth = rng.uniform(10.0, depth_max)
        if south:
            y0, y1 = block.y0, block.y0 + depth
        else:
            y0, y1 = block.y0 + BLOCK_H - depth, block.y0 + BLOCK_H
        shell = box(x, y0, x + width, y1)
        kind = "building"
        if width >= 30 and depth >= 26 and rng.random() < 0.5:
            # a courtyard: a hole inset 8 m from every wall
            hole = box(x + 8, y0 + 8, x + width - 8, y1 - 8)
            shell = Polygon(shell.exterior.coords, [hole.exterior.coords])
            kind = "courtyard"
        out.append(Place(_uuid(rng), kind, shell, min(width, depth)))
        x += width
    return out


def make_scene(seed: int, columns: int = 4, rows: int = 3, park_share: float = 0.25) -> Scene:
    rng = random.Random(seed)
    blocks: list[list[Block]] = []
    places: list[Place] = []
    roads: list[LineString] = []
    paths: list[LineString] = []
    for i in range(columns):
        col: list[Block] = []
        for j in range(rows):
            x0, y0 = i * (BLOCK_W + STREET), j * (BLOCK_H + STREET)
            park = rng.random() < park_share
            block = Block(x0, y0, park)
            if park:
                # the park fills its block but for a 1-3 m verge; a road (on through the town)
                # and two paths cross it
                inset = rng.uniform(1.0, 3.0)
                poly = box(x0 + inset, y0 + inset, x0 + BLOCK_W - inset, y0 + BLOCK_H - inset)
                park_place = Place(_uuid(rng), "park", poly, BLOCK_H - 2 * inset, 30.0, 300)
                places.append(park_place)
                block.buildings.append(park_place)
                ym = y0 + rng.uniform(0.35, 0.65) * BLOCK_H
                roads.append(LineString([(x0 - STREET / 2, ym), (x0 + BLOCK_W + STREET / 2, ym)]))
                paths.append(LineString([(x0, y0), (x0 + BLOCK_W, y0 + BLOCK_H)]))
                paths.append(LineString([(x0, y0 + BLOCK_H), (x0 + BLOCK_W, y0)]))
            else:
                for south in (True, False):
                    terrace = _frontage(rng, block, south, BLOCK_H / 2 - 5)
                    block.buildings.extend(terrace)
                    places.extend(terrace)
            col.append(block)
        blocks.append(col)
    # each road across a park runs on through the town, east and west: no building stands on it
    width = columns * (BLOCK_W + STREET)
    roads = [
        LineString([(-STREET / 2, r.coords[0][1]), (width - STREET / 2, r.coords[0][1])])
        for r in roads
    ]
    corridors = [r.buffer(6.0) for r in roads]
    places = [
        p for p in places if p.kind == "park" or not any(p.poly.intersects(c) for c in corridors)
    ]
    for col in blocks:
        for b in col:
            b.buildings = [p for p in b.buildings if p in places]
    return Scene(blocks, places, roads, paths)
