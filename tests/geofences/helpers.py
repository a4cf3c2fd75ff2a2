"""Shapes used across the geofence tests: a small town around Hebden Bridge (lon ≈ -2.01)."""

from __future__ import annotations

from typing import Any

# A 0.002° × 0.002° square (≈ 133 m × 222 m), counter-clockwise.
SQUARE = [[-2.012, 53.742], [-2.010, 53.742], [-2.010, 53.744], [-2.012, 53.744], [-2.012, 53.742]]
HOLE = [[-2.0115, 53.7425], [-2.0115, 53.7435], [-2.0105, 53.7435], [-2.0105, 53.7425],
        [-2.0115, 53.7425]]  # fmt: skip


def polygon(rings: list[list[list[float]]] | None = None) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": rings if rings is not None else [SQUARE]}


def feature(geometry: dict[str, Any] | None = None, **props: Any) -> dict[str, Any]:
    properties: dict[str, Any] = {"name": "Central Library", "category": "library"}
    properties.update(props)
    return {"type": "Feature", "geometry": geometry or polygon(), "properties": properties}


def circle(lon: float, lat: float, radius_m: float, **props: Any) -> dict[str, Any]:
    return feature({"type": "Point", "coordinates": [lon, lat]}, radius_m=radius_m, **props)
