"""Fixes sent both ways (an app's format and POST /v1/pings), and what they stored."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Environment, Settings
from app.presence import service as presence_service
from tests.presence.helpers import at


@dataclass(frozen=True)
class Fix:
    lon: float
    lat: float
    t: datetime  # whole seconds (OwnTracks' tst has no fraction)
    acc: float
    speed_mps: float
    heading: float


def walk(
    n: int = 8, start_east: float = -300.0, step_m: float = 40.0, gap_s: int = 30
) -> list[Fix]:
    """A walk eastwards through the origin (where the tests put a place), one fix per gap."""
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=gap_s * (n + 1))
    out = []
    for i in range(n):
        lon, lat = at(start_east + i * step_m, 0.0)
        out.append(
            Fix(round(lon, 6), round(lat, 6), t0 + timedelta(seconds=gap_s * i), 8.0, 1.5, 90.0)
        )
    return out


def pings_body(fixes: list[Fix]) -> dict[str, Any]:
    return {
        "pings": [
            {
                "id": f"p{i}",
                "lon": f.lon,
                "lat": f.lat,
                "recorded_at": f.t.isoformat(),
                "accuracy_m": f.acc,
                "speed_mps": f.speed_mps,
                "heading": f.heading,
            }
            for i, f in enumerate(fixes)
        ]
    }


def overland_body(fixes: list[Fix]) -> dict[str, Any]:
    """As Overland sends it (README, "API"): ISO timestamps with a -0700 style offset."""
    return {
        "locations": [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [f.lon, f.lat]},
                "properties": {
                    "timestamp": f.t.astimezone(timezone(timedelta(hours=-7))).strftime(
                        "%Y-%m-%dT%H:%M:%S%z"
                    ),
                    "altitude": 0,
                    "speed": f.speed_mps,
                    "course": f.heading,
                    "horizontal_accuracy": f.acc,
                    "vertical_accuracy": -1,
                    "motion": ["walking"],
                    "battery_state": "unplugged",
                    "battery_level": 0.8,
                    "wifi": "",
                },
            }
            for f in fixes
        ]
    }


def owntracks_location(f: Fix, **extra: Any) -> dict[str, Any]:
    """`_type: location` (booklet, JSON): tst seconds, acc m, vel km/h, cog degrees."""
    return {
        "_type": "location",
        "lat": f.lat,
        "lon": f.lon,
        "tst": int(f.t.timestamp()),
        "acc": f.acc,
        "vel": f.speed_mps * 3.6,
        "cog": f.heading,
        "tid": "JB",
        "batt": 80,
        "created_at": int(f.t.timestamp()) + 1,
        **extra,
    }


def traccar_params(key: str, f: Fix) -> dict[str, str]:
    """OsmAnd protocol as Traccar Client sends it: speed in knots, timestamp in seconds."""
    return {
        "id": key,
        "lat": str(f.lat),
        "lon": str(f.lon),
        "timestamp": str(int(f.t.timestamp())),
        "speed": str(f.speed_mps / (1852.0 / 3600.0)),
        "bearing": str(f.heading),
        "accuracy": str(f.acc),
        "altitude": "12",
        "batt": "80",
    }


def basic(token: str, user: str = "someone") -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{token}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


# the suite's settings (tests/conftest.py) for what evaluation reads: the presence parameters
_EVAL_SETTINGS = Settings(environment=Environment.test, jwt_secret="t" * 40, log_json=False)


async def drain(db: AsyncSession) -> int:
    """Evaluate every queued fix now, in the test's transaction, as the evaluator would moments
    later: OwnTracks' and Traccar Client's single fixes are queued like a single `/v1/pings` fix
    (their answer still says stored). Returns the fixes evaluated."""
    fixes = 0
    await presence_service.prepare_queued(db)
    while (r := await presence_service.evaluate_queued(db, _EVAL_SETTINGS, 500)).fixes:
        fixes += r.fixes
    return fixes


async def stored(db: AsyncSession, subject_id: uuid.UUID) -> list[tuple[Any, ...]]:
    """The subject's pings once the queue is evaluated, without their ids (the apps' ids are
    derived, not chosen)."""
    await drain(db)
    rows = await db.execute(
        text(
            "SELECT recorded_at, lon, lat, accuracy_m, round(speed_mps::numeric, 6), heading, "
            "quality, late FROM pings WHERE subject_id = :s ORDER BY recorded_at"
        ),
        {"s": subject_id},
    )
    return [tuple(r) for r in rows]


async def events(db: AsyncSession, subject_id: uuid.UUID) -> list[tuple[Any, ...]]:
    """The subject's presence events once the queue is evaluated."""
    await drain(db)
    rows = await db.execute(
        text(
            "SELECT type, geofence_id, occurred_at, source, lon, lat, accuracy_m, "
            "suppressed_reason "
            "FROM presence_events WHERE device_id = :s OR staff_user_id = :s "
            "ORDER BY occurred_at, type"
        ),
        {"s": subject_id},
    )
    return [tuple(r) for r in rows]


async def send_pings(client: httpx.AsyncClient, headers: dict[str, str], fixes: list[Fix]) -> None:
    r = await client.post("/v1/pings?mode=sync", json=pings_body(fixes), headers=headers)
    assert r.status_code == 200, r.text
