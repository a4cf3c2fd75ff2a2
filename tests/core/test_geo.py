"""app.core.geo: the coordinate and shape checks every location-taking domain reuses."""

from __future__ import annotations

import math

import pytest
from shapely.geometry import Point, Polygon

from app.core.geo import (
    GeoError,
    check_position,
    circle_polygon,
    destination,
    geodesic_area_m2,
    geometry_to_geojson,
    haversine_m,
    parse_geometry,
)


def test_positions_are_rounded_to_six_decimals() -> None:
    assert check_position(-2.01234567, 53.74199999) == (-2.012346, 53.742)


@pytest.mark.parametrize(
    ("lon", "lat", "reason"),
    [
        (0, 0, "null-island"),
        (0.0, 0.0, "null-island"),
        (181, 10, "longitude-out-of-range"),
        (-180.0001, 10, "longitude-out-of-range"),
        (10, 90.5, "latitude-out-of-range"),
        (float("nan"), 10, "coordinate-not-finite"),
        (10, float("inf"), "coordinate-not-finite"),
        (float("-inf"), 10, "coordinate-not-finite"),
        (True, 10, "coordinate-not-a-number"),
        ("10", 10, "coordinate-not-a-number"),
        (10**400, 10, "coordinate-out-of-range"),
    ],
)
def test_bad_positions_name_their_reason(lon: object, lat: object, reason: str) -> None:
    with pytest.raises(GeoError) as caught:
        check_position(lon, lat)
    assert caught.value.reason == reason


def test_edges_of_the_valid_range_are_accepted() -> None:
    assert check_position(180, 90) == (180.0, 90.0)
    assert check_position(-180, -90) == (-180.0, -90.0)
    assert check_position(0, 0.000001) == (0.0, 0.000001)


def test_overlapping_multipolygon_parts_are_a_self_intersection() -> None:
    a = [[0.1, 0.1], [0.3, 0.1], [0.3, 0.3], [0.1, 0.3], [0.1, 0.1]]
    b = [[0.2, 0.2], [0.4, 0.2], [0.4, 0.4], [0.2, 0.4], [0.2, 0.2]]
    with pytest.raises(GeoError) as caught:
        parse_geometry({"type": "MultiPolygon", "coordinates": [[a], [b]]})
    assert caught.value.reason == "self-intersection"


def test_spike_is_rejected_not_repaired() -> None:
    spike = [[0.1, 0.1], [0.3, 0.1], [0.3, 0.3], [0.5, 0.3], [0.3, 0.3], [0.1, 0.3], [0.1, 0.1]]
    with pytest.raises(GeoError) as caught:
        parse_geometry({"type": "Polygon", "coordinates": [spike]})
    assert caught.value.reason == "self-intersection"


def test_geodesic_area_of_a_one_degree_cell_at_the_equator() -> None:
    cell = Polygon([(0, 0), (1, 0), (1, 1), (0, 1), (0, 0)])
    # Known value on the WGS 84 ellipsoid: 12,308.8 km².
    assert math.isclose(geodesic_area_m2(cell) / 1e6, 12_308.8, rel_tol=1e-3)
    with_hole = Polygon(cell.exterior.coords, [[(0.25, 0.25), (0.25, 0.75), (0.75, 0.75),
                                                 (0.75, 0.25), (0.25, 0.25)]])  # fmt: skip
    assert math.isclose(geodesic_area_m2(with_hole), geodesic_area_m2(cell) * 0.75, rel_tol=1e-3)


@pytest.mark.parametrize("radius", [1.0, 37.5, 100.0, 2_500.0, 10_000.0])
@pytest.mark.parametrize("lat", [0.0, 53.75, 60.15, -41.3])
def test_circle_polygon_contains_the_true_circle(radius: float, lat: float) -> None:
    lon = -2.0
    polygon = circle_polygon(lon, lat, radius)
    assert polygon.is_valid
    assert polygon.exterior.is_ccw
    for tenth in range(0, 3600, 7):  # points on the true circle, between the vertices too
        x, y = destination(lon, lat, tenth / 10, radius)
        assert polygon.covers(Point(x, y))
        assert math.isclose(haversine_m(lon, lat, x, y), radius, rel_tol=1e-9, abs_tol=1e-6)


def test_output_rings_follow_rfc_7946_winding() -> None:
    clockwise = Polygon([(0, 0), (0, 1), (1, 1), (1, 0), (0, 0)])
    out = geometry_to_geojson(clockwise)
    ring = out["coordinates"][0]
    signed = sum(
        ring[i][0] * ring[i + 1][1] - ring[i + 1][0] * ring[i][1] for i in range(len(ring) - 1)
    )
    assert signed > 0


def _ellipsoid_cell_area_m2(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Exact area of a lon/lat cell on WGS 84 (authalic-latitude formula), not from PostGIS."""
    a, f = 6_378_137.0, 1 / 298.257223563
    e2 = f * (2 - f)
    e = math.sqrt(e2)
    b2 = a * a * (1 - e2)

    def q(phi: float) -> float:
        s = math.sin(phi)
        return s / (1 - e2 * s * s) + math.log((1 + e * s) / (1 - e * s)) / (2 * e)

    dq = q(math.radians(lat2)) - q(math.radians(lat1))
    return b2 / 2 * dq * math.radians(lon2 - lon1)


@pytest.mark.parametrize("lat", [0.0, 35.0, 53.7, 60.2])
def test_geodesic_area_of_council_sized_cells_matches_the_ellipsoid(lat: float) -> None:
    cell = Polygon([(-2.0, lat), (-1.99, lat), (-1.99, lat + 0.01), (-2.0, lat + 0.01)])
    expected = _ellipsoid_cell_area_m2(-2.0, lat, -1.99, lat + 0.01)
    assert math.isclose(geodesic_area_m2(cell), expected, rel_tol=1e-3)
