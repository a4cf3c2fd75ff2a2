"""Demo places for the demo town (Calderbridge, a Calder-valley market town; shapes invented)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Organisation
from app.core.config import get_settings
from app.geofences import service

LIBRARY_HOURS: dict[str, Any] = {
    "time_zone": "Europe/London",
    "weekly": {
        "mon": [["09:00", "17:00"]],
        "tue": [["09:00", "19:00"]],
        "wed": [["09:00", "17:00"]],
        "thu": [["09:00", "19:00"]],
        "fri": [["09:00", "17:00"]],
        "sat": [["09:30", "12:30"]],
    },
    "closed_dates": ["2026-12-25", "2026-12-26", "2027-01-01"],
}
LEISURE_HOURS: dict[str, Any] = {
    "time_zone": "Europe/London",
    "weekly": {d: [["06:30", "22:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}
    | {"sat": [["08:00", "18:00"]], "sun": [["08:00", "16:00"]]},
    "closed_dates": ["2026-12-25"],
}


def _place(
    external_id: str, name: str, category: str, geometry: dict[str, Any], **props: Any
) -> dict[str, Any]:
    return {
        "type": "Feature",
        "geometry": geometry,
        "properties": {"external_id": external_id, "name": name, "category": category} | props,
    }


def _box(west: float, south: float, east: float, north: float) -> list[list[float]]:
    return [[west, south], [east, south], [east, north], [west, north], [west, south]]


DEMO_PLACES: dict[str, Any] = {
    "type": "FeatureCollection",
    "features": [
        _place(
            "DEMO-LIB-CENTRAL",
            "Calderbridge Central Library",
            "library",
            {"type": "Polygon", "coordinates": [_box(-2.01260, 53.74190, -2.01190, 53.74225)]},
            tags=["wifi", "toilets", "step-free"],
            opening_hours=LIBRARY_HOURS,
            metadata={"uprn": "100051234567", "ward": "Calderbridge Central"},
        ),
        _place(
            "DEMO-LIB-NORTHGATE",
            "Northgate Community Library",
            "library",
            {"type": "Polygon", "coordinates": [_box(-2.01580, 53.74640, -2.01535, 53.74668)]},
            tags=["wifi"],
            opening_hours=LIBRARY_HOURS,
        ),
        _place(
            "DEMO-LIB-MOBILE",
            "Mobile Library stop, Mill Lane",
            "library",
            {"type": "Point", "coordinates": [-2.00610, 53.73905]},
            radius_m=25,
            tags=["mobile"],
            opening_hours={"time_zone": "Europe/London", "weekly": {"wed": [["10:00", "12:00"]]}},
        ),
        _place(
            "DEMO-LEISURE",
            "Calder Valley Leisure Centre",
            "leisure_centre",
            {
                "type": "Polygon",
                "coordinates": [
                    [
                        [-2.00920, 53.74010],
                        [-2.00780, 53.74010],
                        [-2.00780, 53.74060],
                        [-2.00850, 53.74060],
                        [-2.00850, 53.74095],
                        [-2.00920, 53.74095],
                        [-2.00920, 53.74010],
                    ]  # fmt: skip
                ],
            },
            tags=["pool", "gym", "parking"],
            opening_hours=LEISURE_HOURS,
        ),
        _place(
            "DEMO-PARK-RIVERSIDE",
            "Riverside Park",
            "park",
            {
                "type": "Polygon",
                "coordinates": [
                    [
                        [-2.01500, 53.73920],
                        [-2.01050, 53.73880],
                        [-2.00980, 53.74020],
                        [-2.01250, 53.74110],
                        [-2.01530, 53.74060],
                        [-2.01500, 53.73920],
                    ],
                    # the boating pond is not part of the park's walkable area
                    [
                        [-2.01300, 53.73980],
                        [-2.01300, 53.74010],
                        [-2.01230, 53.74010],
                        [-2.01230, 53.73980],
                        [-2.01300, 53.73980],
                    ],
                ],  # fmt: skip
            },
            tags=["dogs", "playground", "toilets"],
        ),
        _place(
            "DEMO-DEPOT",
            "Mill Lane Highways Depot",
            "depot",
            {"type": "Polygon", "coordinates": [_box(-2.00480, 53.73770, -2.00360, 53.73840)]},
            tags=["staff-only"],
            metadata={"gate_code_holder": "Facilities team"},
        ),
    ],
}


async def load_demo_places(session: AsyncSession, org: Organisation) -> list[str]:
    """Upsert the demo places by external_id (idempotent)."""
    result = await service.import_features(session, get_settings(), org.id, DEMO_PLACES)
    if result.errors:
        raise RuntimeError(f"demo places are invalid: {result.errors}")
    return [f"places: {len(DEMO_PLACES['features'])} in Calderbridge (demo town)"]
