"""GeoJSON and coordinate validation shared by every domain that accepts a location.

Everything here is strict on purpose (docs/quality.md): a bad shape or position is rejected with a
machine-readable reason, never repaired. Repairs change meaning, and a wrong polygon means a wrong
notification to a real person.

- `check_position(lon, lat)` — one resident/staff position (check-ins, pings): finite, in range,
  not (0, 0), rounded to 6 decimals (about 0.1 m; docs/quality.md: store at most 6 decimals).
- `parse_geometry(obj, ...)` — a GeoJSON geometry object → a valid Shapely geometry (or a circle).
- `geometry_to_geojson(shape)` — output with RFC 7946 ring orientation (exterior counter-clockwise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import shapely
from shapely.geometry import MultiPolygon, Point, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient

COORDINATE_DECIMALS = 6
EARTH_RADIUS_M = 6_371_008.8  # IUGG mean radius, for haversine
WGS84_EQUATORIAL_RADIUS_M = 6_378_137.0
WGS84_E2 = 0.0066943799901413165  # first eccentricity squared
CIRCLE_SEGMENTS = 64
MIN_RADIUS_M = 1.0
MAX_RADIUS_M = 10_000.0
SUPPORTED_GEOMETRY_TYPES = ("Polygon", "MultiPolygon", "Point")


class GeoError(ValueError):
    """Invalid location input: `reason` is a stable code, `field` where, `message` for people."""

    def __init__(self, reason: str, message: str, field: str = "geometry") -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.field = field


# --------------------------------------------------------------------------- positions


def _number(value: Any, field: str) -> float:
    # bool is an int subclass: `true` is not a coordinate.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GeoError("coordinate-not-a-number", f"{field}: coordinates must be numbers", field)
    try:
        number = float(value)
    except OverflowError as exc:  # a huge JSON integer
        raise GeoError(
            "coordinate-out-of-range", f"{field}: coordinate out of range", field
        ) from exc
    if not math.isfinite(number):
        # Python's JSON parser accepts NaN and Infinity, and 1e400 overflows to inf.
        raise GeoError(
            "coordinate-not-finite", f"{field}: coordinates must be finite numbers", field
        )
    return number


def check_lon_lat(lon: Any, lat: Any, field: str = "coordinates") -> tuple[float, float]:
    """Finite and in range (lon ∈ [-180, 180], lat ∈ [-90, 90]); rounded to 6 decimals."""
    x, y = _number(lon, field), _number(lat, field)
    if not -180.0 <= x <= 180.0:
        raise GeoError(
            "longitude-out-of-range", f"{field}: longitude {x} is outside [-180, 180]", field
        )
    if not -90.0 <= y <= 90.0:
        raise GeoError(
            "latitude-out-of-range", f"{field}: latitude {y} is outside [-90, 90]", field
        )
    return round(x, COORDINATE_DECIMALS), round(y, COORDINATE_DECIMALS)


def check_position(lon: Any, lat: Any, field: str = "coordinates") -> tuple[float, float]:
    """A device position: `check_lon_lat` plus (0, 0) rejected (a GPS failure, not a place)."""
    x, y = check_lon_lat(lon, lat, field)
    if x == 0.0 and y == 0.0:
        raise GeoError("null-island", f"{field}: (0, 0) is not a plausible position", field)
    return x, y


def _position(value: Any, field: str) -> tuple[float, float]:
    if not isinstance(value, list | tuple):
        raise GeoError("invalid-position", f"{field}: a position is an array [lon, lat]", field)
    if len(value) != 2:
        if len(value) > 2:
            raise GeoError(
                "extra-dimensions",
                f"{field}: only 2-D positions [lon, lat] are accepted (got {len(value)} values)",
                field,
            )
        raise GeoError("invalid-position", f"{field}: a position is an array [lon, lat]", field)
    return check_lon_lat(value[0], value[1], field)


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class ParsedGeometry:
    """A validated input shape. Circles keep their centre and radius as well as a polygon."""

    shape: Polygon | MultiPolygon
    kind: str  # "polygon" | "circle"
    center: Point | None = None
    radius_m: float | None = None
    vertices: int = 0


def _ring(value: Any, field: str) -> list[tuple[float, float]]:
    if not isinstance(value, list):
        raise GeoError("invalid-ring", f"{field}: a linear ring is an array of positions", field)
    positions = [_position(p, f"{field}[{i}]") for i, p in enumerate(value)]
    if len(positions) < 4:
        raise GeoError(
            "too-few-positions",
            f"{field}: a linear ring needs at least 4 positions (got {len(positions)})",
            field,
        )
    if positions[0] != positions[-1]:
        # ST_GeomFromGeoJSON would accept this silently; we do not close rings for the caller.
        raise GeoError(
            "unclosed-ring", f"{field}: the first and last positions of a ring must be equal", field
        )
    return positions


def _polygon(value: Any, field: str) -> Polygon:
    if not isinstance(value, list) or not value:
        raise GeoError(
            "invalid-polygon", f"{field}: a Polygon's coordinates are a non-empty array of rings"
        )
    rings = [_ring(r, f"{field}[{i}]") for i, r in enumerate(value)]
    return Polygon(rings[0], rings[1:])


def _reject_crs(obj: dict[str, Any], field: str) -> None:
    if "crs" in obj:
        raise GeoError(
            "crs-not-allowed",
            f"{field}: the 'crs' member is not allowed; coordinates are WGS 84 (EPSG:4326) only",
            field,
        )


def reject_crs(obj: dict[str, Any], field: str = "crs") -> None:
    """RFC 7946 removed `crs`; a file carrying one is probably not in WGS 84 lon/lat."""
    _reject_crs(obj, field)


def parse_geometry(
    obj: Any,
    *,
    radius_m: Any = None,
    max_vertices: int = 2000,
    max_area_km2: float | None = None,
) -> ParsedGeometry:
    """Validate a GeoJSON geometry (Polygon, MultiPolygon, or Point with `radius_m`)."""
    if not isinstance(obj, dict):
        raise GeoError("invalid-geometry", "geometry must be a GeoJSON geometry object")
    _reject_crs(obj, "geometry")
    kind = obj.get("type")
    if kind not in SUPPORTED_GEOMETRY_TYPES:
        raise GeoError(
            "unsupported-geometry-type",
            f"geometry type {kind!r} is not supported; use Polygon, MultiPolygon, "
            "or Point with properties.radius_m",
            "geometry.type",
        )
    if "coordinates" not in obj:
        raise GeoError("invalid-geometry", "geometry.coordinates is required", "geometry")
    coords = obj["coordinates"]

    if kind == "Point":
        if radius_m is None:
            raise GeoError(
                "radius-required",
                "a Point needs properties.radius_m (1-10000 m) to describe a circle",
                "properties.radius_m",
            )
        radius = check_radius(radius_m)
        lon, lat = _position(coords, "geometry.coordinates")
        _check_circle_placement(lon, lat, radius)
        polygon = circle_polygon(lon, lat, radius)
        _check_sphere_consistent(polygon)
        _check_valid(polygon)
        circle = ParsedGeometry(polygon, "circle", Point(lon, lat), radius, 1)
        _check_area(circle, max_area_km2)
        return circle

    if radius_m is not None:
        raise GeoError(
            "radius-not-applicable",
            "properties.radius_m only applies to Point geometries",
            "properties.radius_m",
        )
    if kind == "Polygon":
        shape: Polygon | MultiPolygon = _polygon(coords, "geometry.coordinates")
    else:
        if not isinstance(coords, list) or not coords:
            raise GeoError(
                "invalid-geometry",
                "geometry.coordinates: a MultiPolygon's coordinates are a non-empty array",
                "geometry.coordinates",
            )
        shape = MultiPolygon(
            [_polygon(p, f"geometry.coordinates[{i}]") for i, p in enumerate(coords)]
        )
    vertices = int(shapely.get_num_coordinates(shape))
    if vertices > max_vertices:
        raise GeoError(
            "too-many-vertices",
            f"the shape has {vertices} vertices; the limit is {max_vertices}",
        )
    _check_sphere_consistent(shape)
    _check_valid(shape)
    result = ParsedGeometry(shape, "polygon", None, None, vertices)
    _check_area(result, max_area_km2)
    return result


def _check_valid(shape: Polygon | MultiPolygon) -> None:
    """OGC validity (Shapely/GEOS), and a real area: nothing invalid or empty is ever stored."""
    reason = shapely.is_valid_reason(shape)
    if reason != "Valid Geometry":
        raise GeoError(_reason_code(reason), f"invalid geometry: {reason}")
    if geodesic_area_m2(shape) <= 0.0 or shape.area <= 0.0:
        raise GeoError("zero-area", "the shape encloses no area")


def _check_sphere_consistent(shape: Polygon | MultiPolygon) -> None:
    """Refuse shapes whose flat lon/lat reading (Shapely, `geometry` columns) and spherical
    reading (PostGIS `geography`, distances) differ: a pole on the boundary or inside, or an edge
    that spans 180° of longitude or more (it crosses the antimeridian one way on the plane and
    the other way on the sphere). RFC 7946 §3.1.9: such shapes are to be cut at ±180°."""
    polygons = list(shape.geoms) if isinstance(shape, MultiPolygon) else [shape]
    rings = [list(ring.coords) for p in polygons for ring in (p.exterior, *p.interiors)]
    if any(abs(y) >= 90.0 for ring in rings for _, y in ring):
        raise GeoError(
            "touches-pole", "the shape reaches a pole; shapes must stay clear of ±90° latitude"
        )
    for points in rings:
        for (x1, _), (x2, _) in zip(points, points[1:], strict=False):
            if abs(x2 - x1) >= 180.0:
                raise GeoError(
                    "crosses-antimeridian",
                    "an edge spans 180° of longitude or more (it crosses the antimeridian); "
                    "split the shape at ±180° into a MultiPolygon",
                )


def _check_circle_placement(lon: float, lat: float, radius_m: float) -> None:
    """A circle is stored with a polygon around it; that polygon cannot contain a pole or wrap
    around ±180° longitude, so such circles are refused rather than stored wrong."""
    reach = radius_m / math.cos(math.pi / CIRCLE_SEGMENTS) + 1.0  # the polygon's vertex distance
    for pole in (90.0, -90.0):
        if haversine_m(lon, lat, lon, pole) <= reach:
            raise GeoError(
                "circle-covers-pole",
                "a circle this close to a pole cannot be stored; use a Polygon that stays clear "
                "of ±90° latitude",
                "geometry.coordinates",
            )
    lons = [destination(lon, lat, bearing, reach)[0] for bearing in range(0, 360, 5)]
    if max(lons) - min(lons) >= 180.0:  # some points wrapped to the other side of ±180°
        raise GeoError(
            "crosses-antimeridian",
            "the circle crosses the antimeridian (±180° longitude); move its centre or use a "
            "MultiPolygon split at ±180°",
            "geometry.coordinates",
        )


def _reason_code(reason: str) -> str:
    lowered = reason.lower()
    for needle, code in (
        ("self-intersection", "self-intersection"),
        ("hole lies outside shell", "hole-outside-shell"),
        ("holes are nested", "nested-holes"),
        ("interior is disconnected", "interior-disconnected"),
        ("nested shells", "nested-shells"),
        ("too few points", "too-few-positions"),
        ("duplicate rings", "duplicate-rings"),
        ("invalid coordinate", "coordinate-not-finite"),
        ("ring not closed", "unclosed-ring"),
    ):
        if needle in lowered:
            return code
    return "invalid-geometry"


def check_radius(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GeoError("radius-out-of-range", "radius_m must be a number", "properties.radius_m")
    radius = float(value)
    if not math.isfinite(radius) or not MIN_RADIUS_M <= radius <= MAX_RADIUS_M:
        raise GeoError(
            "radius-out-of-range",
            f"radius_m must be between {MIN_RADIUS_M:g} and {MAX_RADIUS_M:g} metres",
            "properties.radius_m",
        )
    return radius


def _check_area(parsed: ParsedGeometry, max_area_km2: float | None) -> None:
    if max_area_km2 is None:
        return
    if parsed.radius_m is not None:
        area = math.pi * parsed.radius_m**2 / 1e6
    else:
        area = geodesic_area_m2(parsed.shape) / 1e6
    if area > max_area_km2:
        raise GeoError(
            "area-too-large",
            f"the shape covers {area:.2f} km²; "
            f"this organisation allows at most {max_area_km2:g} km²",
        )


# --------------------------------------------------------------------------- measurements


def _ring_area_rad2(coords: Any) -> float:
    # Spherical excess approximation (Chamberlain & Duquette, as in geojson-area / Turf), in
    # units of radius².
    pts = list(coords)
    total = 0.0
    for i in range(len(pts) - 1):
        lon1, lat1 = pts[i][0], pts[i][1]
        lon2, lat2 = pts[i + 1][0], pts[i + 1][1]
        total += math.radians(lon2 - lon1) * (
            math.sin(math.radians(lat1)) + math.sin(math.radians(lat2))
        )
    return abs(total / 2.0)


def geodesic_area_m2(shape: BaseGeometry) -> float:
    """Area in m² (holes subtracted): spherical excess on the sphere that osculates the WGS 84
    ellipsoid at the shape's latitude (radius² = M·N), so within ~0.1 % for council-sized shapes.
    """
    polygons = list(shape.geoms) if isinstance(shape, MultiPolygon) else [shape]
    lat = math.radians(shape.centroid.y) if not shape.is_empty else 0.0
    w2 = 1 - WGS84_E2 * math.sin(lat) ** 2
    radius2 = WGS84_EQUATORIAL_RADIUS_M**2 * (1 - WGS84_E2) / w2**2  # M·N
    area = 0.0
    for polygon in polygons:
        assert isinstance(polygon, Polygon)
        area += _ring_area_rad2(polygon.exterior.coords)
        for hole in polygon.interiors:
            area -= _ring_area_rad2(hole.coords)
    return area * radius2


def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres on the mean-radius sphere."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def destination(
    lon: float, lat: float, bearing_deg: float, distance_m: float
) -> tuple[float, float]:
    """The point `distance_m` from (lon, lat) along `bearing_deg` on the sphere."""
    delta = distance_m / EARTH_RADIUS_M
    theta = math.radians(bearing_deg)
    phi1, lam1 = math.radians(lat), math.radians(lon)
    phi2 = math.asin(
        math.sin(phi1) * math.cos(delta) + math.cos(phi1) * math.sin(delta) * math.cos(theta)
    )
    lam2 = lam1 + math.atan2(
        math.sin(theta) * math.sin(delta) * math.cos(phi1),
        math.cos(delta) - math.sin(phi1) * math.sin(phi2),
    )
    return (math.degrees(lam2) + 540) % 360 - 180, math.degrees(phi2)


def circle_polygon(lon: float, lat: float, radius_m: float) -> Polygon:
    """A polygon that *contains* the circle (vertices at r / cos(π/n)), for the spatial index.

    Exact circle membership is decided from the centre and radius; the polygon only has to be a
    superset so index pre-filters never miss a point.
    """
    # Edge midpoints of a circumscribed polygon touch the circle; 0.1 m of slack keeps the
    # containment true after rounding to 1e-7° and the lon/lat-plane vs sphere difference.
    outer = radius_m / math.cos(math.pi / CIRCLE_SEGMENTS) + 0.1
    ring = [
        destination(lon, lat, 360.0 * i / CIRCLE_SEGMENTS, outer) for i in range(CIRCLE_SEGMENTS)
    ]
    ring = [(round(x, 7), round(y, 7)) for x, y in ring]
    # Counter-clockwise exterior (bearings run clockwise, so reverse them).
    ring.reverse()
    ring.append(ring[0])
    return Polygon(ring)


# --------------------------------------------------------------------------- output


def _round_ring(coords: Any) -> list[list[float]]:
    return [[round(c[0], COORDINATE_DECIMALS), round(c[1], COORDINATE_DECIMALS)] for c in coords]


def _polygon_coords(polygon: Polygon) -> list[list[list[float]]]:
    oriented = orient(polygon, sign=1.0)  # exterior CCW, holes CW (RFC 7946 §3.1.6)
    return [_round_ring(oriented.exterior.coords)] + [
        _round_ring(h.coords) for h in oriented.interiors
    ]


def geometry_to_geojson(shape: BaseGeometry) -> dict[str, Any]:
    """GeoJSON geometry with RFC 7946 winding and 6-decimal coordinates."""
    if isinstance(shape, Polygon):
        return {"type": "Polygon", "coordinates": _polygon_coords(shape)}
    if isinstance(shape, MultiPolygon):
        return {
            "type": "MultiPolygon",
            "coordinates": [_polygon_coords(p) for p in shape.geoms],
        }
    if isinstance(shape, Point):
        return {
            "type": "Point",
            "coordinates": [
                round(shape.x, COORDINATE_DECIMALS),
                round(shape.y, COORDINATE_DECIMALS),
            ],
        }
    raise ValueError(f"unsupported output geometry {shape.geom_type}")
