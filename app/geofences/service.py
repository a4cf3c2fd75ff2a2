"""Rules for places: validation, defaults, CRUD, resolve and bulk import. Flushes, never commits.

Other domains use this module (CONTRIBUTING.md): `get_geofence`, `resolve`, `is_active`, and
`opening_hours.is_open`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from geoalchemy2.shape import from_shape, to_shape
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import service as accounts_service
from app.core.config import Settings
from app.core.geo import GeoError, ParsedGeometry, geometry_to_geojson, parse_geometry, reject_crs
from app.core.pagination import PageParams, trim_page
from app.geofences import repository
from app.geofences.errors import GeofenceNotFound, InvalidGeofence, TooManyGeofences
from app.geofences.models import Category, Geofence, ShapeKind
from app.geofences.opening_hours import is_open
from app.geofences.repository import PlaceInfo
from app.geofences.schemas import (
    GeofenceCreate,
    GeofenceProperties,
    GeofencePropertiesRead,
    GeofencePublicProperties,
    GeofencePublicRead,
    GeofenceRead,
    GeofenceUpdate,
    ImportError_,
    ImportResult,
)

__all__ = [
    "GeofenceNotFound",
    "ResolvedPlace",
    "get_geofence",
    "is_active",
    "is_open",
    "resolve",
]

# "How near counts as passing by", per category (theme 6). Big open spaces get more slack.
DEFAULT_TRIGGER_DISTANCE_M: dict[str, float] = {
    Category.library: 50.0,
    Category.leisure_centre: 75.0,
    Category.park: 100.0,
    Category.museum: 50.0,
    Category.council_office: 50.0,
    Category.depot: 30.0,
    Category.school: 50.0,
    Category.other: 50.0,
}
FALLBACK_TRIGGER_DISTANCE_M = 50.0


@dataclass(frozen=True)
class ResolvedPlace:
    geofence: PlaceInfo
    distance_m: float  # 0 when inside
    inside: bool


def now() -> datetime:
    return datetime.now(UTC)


def allowed_categories(settings: Settings) -> list[str]:
    return [c.value for c in Category] + list(settings.geofence_extra_categories)


def default_trigger_distance(category: str) -> float:
    return DEFAULT_TRIGGER_DISTANCE_M.get(category, FALLBACK_TRIGGER_DISTANCE_M)


def is_active(geofence: Geofence, at: datetime | None = None) -> bool:
    """`predicates.active_at` for a loaded row (tests/geofences/test_active_window.py)."""
    at = at or now()
    if geofence.active_from is not None and geofence.active_from > at:
        return False
    return geofence.active_until is None or geofence.active_until > at


# --------------------------------------------------------------------------- validation


async def max_area_km2(
    session: AsyncSession, settings: Settings, organisation_id: uuid.UUID
) -> float:
    org = await accounts_service.get_organisation(session, organisation_id)
    return org.max_geofence_area_km2 or settings.geofence_max_area_km2


def _check_category(settings: Settings, category: str) -> None:
    allowed = allowed_categories(settings)
    if category not in allowed:
        raise InvalidGeofence(
            "unknown-category",
            f"category {category!r} is not one of: {', '.join(allowed)}",
            "properties.category",
        )


def _parse(settings: Settings, geometry: Any, radius_m: Any, area_limit: float) -> ParsedGeometry:
    try:
        return parse_geometry(
            geometry,
            radius_m=radius_m,
            max_vertices=settings.geofence_max_vertices,
            max_area_km2=area_limit,
        )
    except GeoError as exc:
        raise InvalidGeofence.from_geo(exc) from exc


def _apply_shape(row: Geofence, parsed: ParsedGeometry) -> None:
    row.shape_kind = ShapeKind.circle if parsed.kind == "circle" else ShapeKind.polygon
    row.geom = from_shape(parsed.shape, srid=4326)
    row.center = from_shape(parsed.center, srid=4326) if parsed.center is not None else None
    row.radius_m = parsed.radius_m


def _opening_hours(props: Any) -> dict[str, Any] | None:
    value = props.opening_hours
    return None if value is None else value.model_dump(mode="json")


async def _check_external_id(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    external_id: str | None,
    exclude_id: uuid.UUID | None = None,
) -> None:
    if external_id is not None and await repository.external_id_taken(
        session, organisation_id, external_id, exclude_id
    ):
        raise InvalidGeofence(
            "duplicate-external-id",
            f"external_id {external_id!r} is already used by another place of this organisation",
            "properties.external_id",
        )


def _new_row(
    organisation_id: uuid.UUID, props: GeofenceProperties, parsed: ParsedGeometry
) -> Geofence:
    row = Geofence(
        organisation_id=organisation_id,
        external_id=props.external_id,
        name=props.name,
        category=props.category,
        tags=list(props.tags),
        trigger_distance_m=(
            props.trigger_distance_m
            if props.trigger_distance_m is not None
            else default_trigger_distance(props.category)
        ),
        dwell_s=props.dwell_s,
        opening_hours=_opening_hours(props),
        active_from=props.active_from,
        active_until=props.active_until,
        extra_metadata=dict(props.metadata),
    )
    _apply_shape(row, parsed)
    return row


def _set_properties(row: Geofence, props: GeofenceProperties) -> None:
    """Full replacement of the properties (import upsert)."""
    row.external_id = props.external_id
    row.name = props.name
    row.category = props.category
    row.tags = list(props.tags)
    row.trigger_distance_m = (
        props.trigger_distance_m
        if props.trigger_distance_m is not None
        else default_trigger_distance(props.category)
    )
    row.dwell_s = props.dwell_s
    row.opening_hours = _opening_hours(props)
    row.active_from = props.active_from
    row.active_until = props.active_until
    row.extra_metadata = dict(props.metadata)


# --------------------------------------------------------------------------- CRUD


async def create_geofence(
    session: AsyncSession, settings: Settings, organisation_id: uuid.UUID, body: GeofenceCreate
) -> Geofence:
    props = body.properties
    _check_category(settings, props.category)
    parsed = _parse(
        settings,
        body.geometry,
        props.radius_m,
        await max_area_km2(session, settings, organisation_id),
    )
    await _check_external_id(session, organisation_id, props.external_id)
    _check_capacity(settings, await repository.count_live(session, organisation_id) + 1)
    return await repository.add(session, _new_row(organisation_id, props, parsed))


def _check_capacity(settings: Settings, total: int) -> None:
    limit = settings.geofence_max_per_organisation
    if total > limit:
        raise TooManyGeofences(
            f"An organisation may hold at most {limit} places; delete some first "
            "(or raise HEREABOUTS_GEOFENCE_MAX_PER_ORGANISATION). Nothing was stored.",
            extra={"limit": limit},
        )


async def get_geofence(
    session: AsyncSession, organisation_id: uuid.UUID, geofence_id: uuid.UUID
) -> Geofence:
    """The organisation's live place, or 404 (missing, deleted, or another organisation's)."""
    geofence = await repository.get(session, organisation_id, geofence_id)
    if geofence is None:
        raise GeofenceNotFound()
    return geofence


async def update_geofence(
    session: AsyncSession, settings: Settings, geofence: Geofence, body: GeofenceUpdate
) -> Geofence:
    props = body.properties
    given = props.model_fields_set
    if "category" in given and props.category is not None:
        _check_category(settings, props.category)
    if body.geometry is not None:
        # A circle moved without a new radius keeps its radius.
        radius = props.radius_m if "radius_m" in given else None
        if (
            radius is None
            and "radius_m" not in given
            and isinstance(body.geometry, dict)
            and body.geometry.get("type") == "Point"
        ):
            radius = geofence.radius_m
        parsed = _parse(
            settings,
            body.geometry,
            radius,
            await max_area_km2(session, settings, geofence.organisation_id),
        )
        _apply_shape(geofence, parsed)
    elif "radius_m" in given:
        if geofence.center is None:
            raise InvalidGeofence(
                "radius-not-applicable",
                "properties.radius_m only applies to circles (Point geometries)",
                "properties.radius_m",
            )
        center = to_shape(geofence.center)
        parsed = _parse(
            settings,
            {"type": "Point", "coordinates": [center.x, center.y]},
            props.radius_m,
            await max_area_km2(session, settings, geofence.organisation_id),
        )
        _apply_shape(geofence, parsed)
    if "external_id" in given:
        await _check_external_id(session, geofence.organisation_id, props.external_id, geofence.id)
        geofence.external_id = props.external_id
    start = props.active_from if "active_from" in given else geofence.active_from
    end = props.active_until if "active_until" in given else geofence.active_until
    if start is not None and end is not None and end <= start:
        raise InvalidGeofence(
            "invalid-active-window", "active_until must be after active_from", "properties"
        )
    geofence.active_from, geofence.active_until = start, end
    for name in ("name", "category", "tags", "trigger_distance_m", "dwell_s"):
        if name in given and getattr(props, name) is not None:
            setattr(geofence, name, getattr(props, name))
    if "trigger_distance_m" in given and props.trigger_distance_m is None:
        geofence.trigger_distance_m = default_trigger_distance(geofence.category)
    if "opening_hours" in given:
        geofence.opening_hours = _opening_hours(props)
    if "metadata" in given and props.metadata is not None:
        geofence.extra_metadata = dict(props.metadata)
    await session.flush()
    return geofence


async def delete_geofence(session: AsyncSession, geofence: Geofence) -> None:
    """Soft delete: history (check-ins, events) keeps pointing at an explainable row."""
    geofence.deleted_at = now()
    await session.flush()


async def list_geofences(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    page: PageParams,
    filters: repository.ListFilters,
) -> tuple[list[Geofence], str | None]:
    rows = await repository.list_geofences(session, organisation_id, page, filters)
    return trim_page(rows, page)


async def resolve(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    lon: float,
    lat: float,
    accuracy_m: float,
    *,
    at: datetime | None = None,
    include_inactive: bool = False,
) -> list[ResolvedPlace]:
    """Places the point is in or within trigger distance + accuracy of, nearest first.

    Only places active at `at` (default: now) unless `include_inactive`. Opening hours are not a
    filter here: callers decide what "closed" means for them (`opening_hours.is_open`).
    """
    when = None if include_inactive else (at or now())
    rows = await repository.resolve(session, organisation_id, lon, lat, max(0.0, accuracy_m), when)
    return [ResolvedPlace(g, distance, inside) for g, distance, inside in rows]


# --------------------------------------------------------------------------- output


def _public_properties(geofence: Geofence) -> dict[str, Any]:
    """What anyone may see of a place; staff see these and more (`to_read`)."""
    return {
        "name": geofence.name,
        "category": geofence.category,
        "tags": list(geofence.tags),
        "radius_m": geofence.radius_m,
        "trigger_distance_m": geofence.trigger_distance_m,
        "dwell_s": geofence.dwell_s,
        "opening_hours": geofence.opening_hours,
    }


def to_read(geofence: Geofence, at: datetime | None = None) -> GeofenceRead:
    return GeofenceRead(
        id=geofence.id,
        geometry=_output_geometry(geofence),
        properties=GeofencePropertiesRead(
            **_public_properties(geofence),
            external_id=geofence.external_id,
            active_from=geofence.active_from,
            active_until=geofence.active_until,
            active=is_active(geofence, at),
            metadata=dict(geofence.extra_metadata),
            created_at=geofence.created_at,
            updated_at=geofence.updated_at,
        ),
    )


def to_public_read(geofence: Geofence) -> GeofencePublicRead:
    return GeofencePublicRead(
        id=geofence.id,
        geometry=_output_geometry(geofence),
        properties=GeofencePublicProperties(**_public_properties(geofence)),
    )


def _output_geometry(geofence: Geofence) -> dict[str, Any]:
    if geofence.center is not None:
        return geometry_to_geojson(to_shape(geofence.center))
    return geometry_to_geojson(to_shape(geofence.geom))


# --------------------------------------------------------------------------- import


@dataclass
class _Candidate:
    index: int
    props: GeofenceProperties
    parsed: ParsedGeometry


def _feature_error(index: int, external_id: str | None, exc: Exception) -> ImportError_:
    if isinstance(exc, InvalidGeofence | GeoError):
        return ImportError_(
            index=index,
            external_id=external_id,
            reason=exc.reason,
            field=exc.field,
            detail=exc.detail if isinstance(exc, InvalidGeofence) else exc.message,
        )
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ()))
        return ImportError_(
            index=index,
            external_id=external_id,
            reason="invalid-properties",
            field=f"properties.{field}" if field else "properties",
            detail=f"{field}: {first.get('msg', '')}" if field else str(first.get("msg", "")),
        )
    return ImportError_(
        index=index, external_id=external_id, reason="invalid-feature", detail=str(exc)
    )


def _feature_external_id(feature: dict[str, Any]) -> str | None:
    props = feature.get("properties")
    value = props.get("external_id") if isinstance(props, dict) else None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # numeric keys are common in GIS exports
    if (
        value is None
        and isinstance(feature.get("id"), str | int)
        and not isinstance(feature.get("id"), bool)
    ):
        value = str(feature["id"])  # GIS exports usually carry their key as the Feature id
    return value if isinstance(value, str) else None


def validate_feature(settings: Settings, index: int, feature: Any, area_limit: float) -> _Candidate:
    """One import feature → a validated candidate, or an exception naming the reason."""
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise InvalidGeofence("invalid-feature", "each item must be a GeoJSON Feature", "feature")
    try:
        reject_crs(feature, "crs")
    except GeoError as exc:
        raise InvalidGeofence.from_geo(exc) from exc
    unknown = set(feature) - {"type", "id", "geometry", "properties", "bbox"}
    if unknown:
        raise InvalidGeofence(
            "unknown-member", f"unknown Feature members: {', '.join(sorted(unknown))}", "feature"
        )
    raw_props = feature.get("properties")
    if not isinstance(raw_props, dict):
        raise InvalidGeofence("invalid-properties", "properties must be an object", "properties")
    raw_props = dict(raw_props)
    external_id = _feature_external_id(feature)
    if external_id is None:
        raise InvalidGeofence(
            "external-id-required",
            "import upserts by external_id: set properties.external_id or the Feature id",
            "properties.external_id",
        )
    raw_props["external_id"] = external_id
    props = GeofenceProperties.model_validate(raw_props)
    _check_category(settings, props.category)
    parsed = _parse(settings, feature.get("geometry"), props.radius_m, area_limit)
    return _Candidate(index, props, parsed)


async def import_features(
    session: AsyncSession,
    settings: Settings,
    organisation_id: uuid.UUID,
    collection: Any,
    *,
    dry_run: bool = False,
    chunk_size: int | None = None,
    commit_chunk: Callable[[], Any] | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Upsert a FeatureCollection by external_id; bad features are reported, good ones kept.

    Every feature is validated first (nothing stored for it if it fails). Valid features are
    written in chunks; each chunk is one transaction when `commit_chunk` is given (the CLI), or
    one savepoint inside the request's transaction (the API). `dry_run` validates and counts
    what would be created/updated, and writes nothing.
    """
    if not isinstance(collection, dict) or collection.get("type") != "FeatureCollection":
        raise InvalidGeofence(
            "invalid-feature-collection", "the body must be a GeoJSON FeatureCollection", "type"
        )
    try:
        reject_crs(collection, "crs")
    except GeoError as exc:
        raise InvalidGeofence.from_geo(exc) from exc
    features = collection.get("features")
    if not isinstance(features, list):
        raise InvalidGeofence("invalid-feature-collection", "features must be an array", "features")

    area_limit = await max_area_km2(session, settings, organisation_id)
    errors: list[ImportError_] = []
    candidates: list[_Candidate] = []
    seen: dict[str, int] = {}
    for index, feature in enumerate(features):
        external_id = _feature_external_id(feature) if isinstance(feature, dict) else None
        try:
            candidate = validate_feature(settings, index, feature, area_limit)
        except (InvalidGeofence, GeoError, ValidationError) as exc:
            errors.append(_feature_error(index, external_id, exc))
            continue
        key = candidate.props.external_id
        assert key is not None
        if key in seen:
            errors.append(
                ImportError_(
                    index=index,
                    external_id=key,
                    reason="duplicate-external-id",
                    field="properties.external_id",
                    detail=f"external_id {key!r} already appears at index {seen[key]} in this file",
                )
            )
            continue
        seen[key] = index
        candidates.append(candidate)

    size = chunk_size or settings.geofence_import_chunk_size
    created = updated = 0
    live = await repository.count_live(session, organisation_id)
    done = len(errors)
    if progress and errors:
        progress(len(errors))
    for start in range(0, len(candidates), size):
        chunk = candidates[start : start + size]
        existing = await repository.by_external_ids(
            session, organisation_id, [c.props.external_id or "" for c in chunk]
        )
        chunk_created = sum(1 for c in chunk if c.props.external_id not in existing)
        _check_capacity(settings, live + created + chunk_created)
        if not dry_run:
            await _write_chunk(session, organisation_id, chunk, existing, commit_chunk)
        created += chunk_created
        updated += len(chunk) - chunk_created
        done += len(chunk)
        if progress:
            progress(len(chunk))
    assert done == len(features)
    errors.sort(key=lambda e: e.index)
    return ImportResult(
        dry_run=dry_run,
        total=len(features),
        created=created,
        updated=updated,
        failed=len(errors),
        errors=errors,
    )


async def _write_chunk(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    chunk: Sequence[_Candidate],
    existing: dict[str, Geofence],
    commit_chunk: Callable[[], Any] | None,
) -> None:
    async with session.begin_nested():
        for candidate in chunk:
            row = existing.get(candidate.props.external_id or "")
            if row is None:
                session.add(_new_row(organisation_id, candidate.props, candidate.parsed))
            else:
                _set_properties(row, candidate.props)
                _apply_shape(row, candidate.parsed)
        await session.flush()
    if commit_chunk is not None:
        result = commit_chunk()
        if hasattr(result, "__await__"):
            await result


async def find_demo_place(
    session: AsyncSession, organisation_id: uuid.UUID, external_id: str, category: str
) -> Geofence | None:
    """A live place by external id, else the oldest live place of that category (demo data)."""
    return await repository.find_place(session, organisation_id, external_id, category)
