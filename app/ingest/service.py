"""Messages of OwnTracks, Overland and Traccar Client as pings, and ingest keys.

Each app's documented format is mapped to `presence.service.PingInput` here; the pings then go
through the presence pipeline exactly as a `POST /v1/pings` body does (the router hands them to
the ping groups). Units follow each app's documentation (docs/ingest.md):

- OwnTracks: `tst` epoch seconds, `acc` metres, `vel` km/h, `cog` degrees.
- Overland: GeoJSON Point [lon, lat], ISO 8601 `timestamp`, `horizontal_accuracy` metres,
  `speed` m/s, `course` degrees; -1 means unknown.
- Traccar Client (OsmAnd protocol): `timestamp` epoch seconds (milliseconds above 2^31, as the
  Traccar server reads it) or a date, `speed` in knots, `bearing` degrees, `accuracy` metres;
  its JSON body: ISO `timestamp`, `coords.speed` m/s, `coords.heading` degrees.

A ping's id is derived from the message itself (time and position), so an app that sends the
same message again — a retried batch — stores nothing twice.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.geo import haversine_m
from app.core.security import hash_token
from app.core.subject import SubjectRef
from app.ingest import repository
from app.ingest.errors import BadIngestPayload, IngestKeyNotFound
from app.ingest.keycache import IngestKeyCache
from app.ingest.models import IngestKey
from app.presence.models import SubjectKind
from app.presence.service import PingInput, Subject

INGEST_KEY_PREFIX = "hik_"
KNOTS_TO_MPS = 1852.0 / 3600.0  # 1 knot = 1 nautical mile (1,852 m) per hour
KMH_TO_MPS = 1.0 / 3.6
# iOS monitors at most 20 regions per app; OwnTracks gets the nearest places up to that
WAYPOINT_LIMIT = 20
# a new set of waypoints once the phone is this far from where the last set was sent
WAYPOINT_REFRESH_M = 500.0
# epoch timestamps from 1900 to 3000 (as every datetime the API accepts)
_MIN_TS = datetime(1900, 1, 1, tzinfo=UTC)
_MAX_TS = datetime(3000, 1, 1, tzinfo=UTC)
_INT32_MAX = 2**31 - 1


# --- ingest keys ------------------------------------------------------------------------------


def new_ingest_key() -> str:
    return INGEST_KEY_PREFIX + secrets.token_urlsafe(32)


async def create_key(
    session: AsyncSession, subject: Subject, label: str | None
) -> tuple[IngestKey, str]:
    """A new key for this device or field worker; the key itself is returned only here."""
    key = new_ingest_key()
    row = IngestKey(
        organisation_id=subject.organisation_id,
        **subject.ref.owner_columns(),
        key_hash=hash_token(key),
        label=label,
    )
    await repository.add_key(session, row)
    return row, key


async def keys_of(session: AsyncSession, subject: Subject) -> list[IngestKey]:
    """The caller's own keys, newest first (never the keys themselves: only their hash is kept)."""
    return await repository.keys_of(session, subject.id)


async def revoke_key(
    session: AsyncSession, subject: Subject, key_id: uuid.UUID, cache: IngestKeyCache | None = None
) -> None:
    """Delete one of the caller's own keys (another's is not found). Every API process forgets
    it when the deletion commits (the table's trigger notifies); this one at once."""
    key_hash = await repository.delete_key(session, subject.id, key_id)
    if key_hash is None:
        raise IngestKeyNotFound()
    if cache is not None:
        cache.forget(key_hash)


async def subject_for_key(
    session: AsyncSession, key: str, cache: IngestKeyCache | None = None
) -> Subject | None:
    """Who an ingest key belongs to, or None (unknown or revoked); from memory when cached."""
    if not key.startswith(INGEST_KEY_PREFIX) or len(key) > 200:
        return None
    key_hash = hash_token(key)
    if cache is not None and (found := cache.get(key_hash)) is not None:
        return found
    generation = cache.generation if cache is not None else 0
    row = await repository.key_by_hash(session, key_hash)
    if row is None:
        return None
    who = SubjectRef.owning(row.device_id, row.staff_user_id, row.organisation_id)
    subject = Subject(SubjectKind(who.kind), who.id, who.organisation_id)
    if cache is not None:
        cache.put(key_hash, subject, generation)
    return subject


# --- shared mapping ---------------------------------------------------------------------------


@dataclass
class Parsed:
    """An app's message(s) as pings, plus the ones that could not even be read."""

    pings: list[PingInput] = field(default_factory=list)
    rejected: list[dict[str, str]] = field(default_factory=list)

    def add_fix(
        self,
        where: str,
        prefix: str,
        *,
        lon: float | None,
        lat: float | None,
        at: datetime | None,
        accuracy: Any,
        speed_mps: float | None,
        heading: Any,
        valid: bool = True,
    ) -> None:
        """One position as a ping, or why it was refused (checked in this order, the same for
        every app): coordinates, then time, then the app's own validity flag."""
        if lon is None or lat is None:
            reason = "coordinates_not_numbers"
        elif at is None:
            reason = "bad_timestamp"
        elif not valid:
            reason = "invalid_fix"
        else:
            self.pings.append(
                _ping(prefix, at, lon, lat, accuracy=accuracy, speed_mps=speed_mps, heading=heading)
            )
            return
        self.rejected.append({"id": where, "reason": reason})


def ping_id(prefix: str, recorded_at: datetime, lon: float, lat: float) -> str:
    """The dedupe id of a fix: the same time and position always give the same id."""
    canonical = f"{recorded_at.astimezone(UTC).isoformat()}|{lon:.6f}|{lat:.6f}"
    return f"{prefix}-{hashlib.sha256(canonical.encode()).hexdigest()[:32]}"


def _number(value: Any) -> float | None:
    """A JSON number, or a string holding one (form values, OwnTracks' strings); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and len(value) <= 64:
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _finite(value: Any) -> float | None:
    n = _number(value)
    return n if n is not None and math.isfinite(n) else None


def _epoch(seconds: float) -> datetime | None:
    try:
        at = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return at if _MIN_TS <= at < _MAX_TS else None


def _iso(value: Any, *, naive_is_utc: bool = False) -> datetime | None:
    """An ISO 8601 date-time (`Z`, `+01:00` or `-0700` offsets); None if unreadable."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if at.tzinfo is None or at.utcoffset() is None:
        if not naive_is_utc:
            return at  # kept naive: the pipeline rejects it (recorded_at_without_timezone)
        at = at.replace(tzinfo=UTC)
    if at.year <= 1900 or at.year >= 3000:
        return None
    return at


def _scaled(value: float | None, factor: float) -> float | None:
    # negative means unknown (iOS -1): kept negative, the pipeline drops it
    return None if value is None else value * factor


# --- Overland ---------------------------------------------------------------------------------


def parse_overland(body: Any, max_batch: int) -> tuple[Parsed, int]:
    """`{"locations": [GeoJSON Feature, ...]}` → pings; returns them and the batch size."""
    if not isinstance(body, dict) or not isinstance(body.get("locations"), list):
        raise BadIngestPayload('The body must be {"locations": [GeoJSON Feature, ...]}.')
    features: list[Any] = body["locations"]
    out = Parsed()
    if len(features) > max_batch:
        return out, len(features)
    for i, feature in enumerate(features):
        where = f"locations[{i}]"
        geometry = feature.get("geometry") if isinstance(feature, dict) else None
        props = feature.get("properties") if isinstance(feature, dict) else None
        coords = geometry.get("coordinates") if isinstance(geometry, dict) else None
        if (
            not isinstance(geometry, dict)
            or geometry.get("type") != "Point"
            or not isinstance(coords, list)
            or len(coords) < 2
        ):
            out.rejected.append({"id": where, "reason": "not_a_point_feature"})
            continue
        props = props if isinstance(props, dict) else {}
        out.add_fix(
            where,
            "ov",
            lon=_number(coords[0]),
            lat=_number(coords[1]),
            at=_iso(props.get("timestamp")),
            accuracy=props.get("horizontal_accuracy"),
            speed_mps=_number(props.get("speed")),
            heading=props.get("course"),
        )
    return out, len(features)


def _ping(
    prefix: str,
    at: datetime,
    lon: float,
    lat: float,
    *,
    accuracy: Any,
    speed_mps: float | None,
    heading: Any,
) -> PingInput:
    return PingInput(
        id=ping_id(prefix, at if at.tzinfo is not None else at.replace(tzinfo=UTC), lon, lat),
        lon=lon,
        lat=lat,
        recorded_at=at,
        accuracy_m=_number(accuracy),
        speed_mps=speed_mps,
        heading=_number(heading),
    )


# --- OwnTracks --------------------------------------------------------------------------------

POSITION_TYPES = ("location", "transition")


def parse_owntracks(messages: list[Any]) -> Parsed:
    """`_type: location` and `_type: transition` → pings; any other type is acknowledged only.

    A transition (the app entered or left one of its waypoints) is only a fix here: its
    position goes through the same confidence rules as any other, nothing is believed from it.
    """
    out = Parsed()
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("_type") not in POSITION_TYPES:
            continue
        tst = _finite(msg.get("tst"))
        out.add_fix(
            f"{i}:{msg['_type']}",
            "ot",
            lon=_number(msg.get("lon")),
            lat=_number(msg.get("lat")),
            at=_epoch(tst) if tst is not None else None,
            accuracy=msg.get("acc"),
            speed_mps=_scaled(_number(msg.get("vel")), KMH_TO_MPS),
            heading=msg.get("cog"),
        )
    return out


def waypoints_due(
    anchor: tuple[float, float] | None, lon: float, lat: float, refresh_m: float
) -> bool:
    return anchor is None or haversine_m(anchor[0], anchor[1], lon, lat) > refresh_m


def waypoint_tst(place_id: uuid.UUID) -> int:
    """A stable OwnTracks waypoint identifier for a place.

    The apps identify a waypoint by its `tst` (booklet, "Waypoints"): the same place must get
    the same one every time, so a refresh updates it in place, and different places different
    ones (places imported together share a creation second). A timestamp in 2001–2023 taken
    from the place's id.
    """
    return 1_000_000_000 + place_id.int % 700_000_000


async def waypoints_for(
    session: AsyncSession, subject: Subject, lon: float, lat: float, now: datetime
) -> dict[str, Any] | None:
    """A `setWaypoints` command with the nearest places when the phone has moved far enough
    from where the last set was sent (or none was); None otherwise."""
    anchor = await repository.anchor_of(session, subject.id)
    if not waypoints_due(
        (anchor.lon, anchor.lat) if anchor else None, lon, lat, WAYPOINT_REFRESH_M
    ):
        return None
    places = await repository.nearest_places(
        session, subject.organisation_id, lon, lat, now, WAYPOINT_LIMIT
    )
    await repository.set_anchor(session, subject.ref, lon=lon, lat=lat, at=now)
    return {
        "_type": "cmd",
        "action": "setWaypoints",
        "waypoints": {
            "_type": "waypoints",
            "waypoints": [
                {
                    "_type": "waypoint",
                    "desc": p.name,
                    "lat": round(p.lat, 6),
                    "lon": round(p.lon, 6),
                    "rad": max(1, math.ceil(p.radius_m)),
                    "tst": waypoint_tst(p.id),
                }
                for p in places
            ],
        },
    }


# --- Traccar Client (OsmAnd protocol) ---------------------------------------------------------


@dataclass(frozen=True)
class TraccarMessage:
    key: str | None
    parsed: Parsed


def _traccar_time(value: Any, now: datetime) -> datetime | None:
    if value is None or value == "":
        return now  # no timestamp: the time it arrived (as the Traccar server does)
    n = _finite(value)
    if n is not None:
        return _epoch(n if n <= _INT32_MAX else n / 1000.0)
    return _iso(value, naive_is_utc=True)  # "yyyy-MM-dd HH:mm:ss" is UTC for Traccar


def parse_traccar_fields(fields: Mapping[str, Any], now: datetime) -> TraccarMessage:
    """Query-string or form parameters: id, lat, lon, timestamp, speed (knots), bearing, ..."""
    raw_key = fields.get("id") or fields.get("deviceid")
    key = raw_key if isinstance(raw_key, str) else None
    out = Parsed()
    out.add_fix(
        "location",
        "tc",
        lon=_number(fields.get("lon")),
        lat=_number(fields.get("lat")),
        at=_traccar_time(fields.get("timestamp"), now),
        accuracy=fields.get("accuracy"),
        speed_mps=_scaled(_number(fields.get("speed")), KNOTS_TO_MPS),
        heading=fields.get("bearing", fields.get("heading")),
        valid=str(fields.get("valid", "true")).lower() not in ("false", "0"),
    )
    return TraccarMessage(key, out)


def parse_traccar_json(body: Any, now: datetime) -> TraccarMessage:
    """Traccar Client 9+: {"location": {"timestamp", "coords": {...}, ...}, "device_id": id}."""
    if not isinstance(body, dict):
        raise BadIngestPayload('The JSON body must be {"location": {...}, "device_id": "..."}.')
    raw_key = body.get("device_id")
    key = raw_key if isinstance(raw_key, str) else None
    location = body.get("location")
    coords = location.get("coords") if isinstance(location, dict) else None
    out = Parsed()
    if not isinstance(location, dict) or not isinstance(coords, dict):
        out.rejected.append({"id": "location", "reason": "coordinates_not_numbers"})
        return TraccarMessage(key, out)
    out.add_fix(
        "location",
        "tc",
        lon=_number(coords.get("longitude")),
        lat=_number(coords.get("latitude")),
        at=_iso(location.get("timestamp"), naive_is_utc=True),
        accuracy=coords.get("accuracy"),
        speed_mps=_number(coords.get("speed")),
        heading=coords.get("heading"),
    )
    return TraccarMessage(key, out)


def utcnow() -> datetime:
    return datetime.now(UTC)
