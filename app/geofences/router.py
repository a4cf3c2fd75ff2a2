"""HTTP for places. Editors and admins write; field workers and residents read."""

from __future__ import annotations

import math
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Depends, Query, Request, Response, status

from app.accounts.dependencies import CurrentPrincipal, EditorUser
from app.accounts.principal import Principal
from app.audit import service as audit_service
from app.core.db import Session
from app.core.deps import AppSettings
from app.core.errors import Unprocessable
from app.core.geo import GeoError, check_lon_lat, check_position
from app.core.near import parse_near
from app.core.pagination import Pagination
from app.core.ratelimit import rate_limited
from app.core.types import FeatureCollectionObject
from app.geofences import repository, service
from app.geofences.dependencies import VisibleGeofence
from app.geofences.errors import InvalidGeofence
from app.geofences.models import Geofence
from app.geofences.schemas import (
    GeofenceCreate,
    GeofencePage,
    GeofencePublicRead,
    GeofenceRead,
    GeofenceUpdate,
    ImportResult,
    ResolvedPlaceRead,
    ResolveResult,
)

router = APIRouter(prefix="/v1/geofences", tags=["geofences"])

GEOJSON = "application/geo+json"
MAX_WITHIN_M = 50_000.0
MAX_ACCURACY_M = 10_000.0
GeoJSONResponses: dict[int | str, dict[str, Any]] = {
    200: {"content": {GEOJSON: {"schema": {"type": "object"}}}}
}


def _wants_geojson(request: Request) -> bool:
    return GEOJSON in request.headers.get("accept", "")


def _render(principal: Principal, geofence: Geofence) -> GeofenceRead | GeofencePublicRead:
    if principal.kind == "device":
        return service.to_public_read(geofence)
    return service.to_read(geofence)


def _geojson(body: dict[str, Any], status_code: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status_code, media_type=GEOJSON)


def _near_pair(value: str) -> tuple[float, float]:
    point = parse_near(value)
    return point.lon, point.lat


def _bbox(value: str) -> tuple[float, float, float, float]:
    parts = value.split(",")
    if len(parts) != 4:
        raise Unprocessable("bbox must be 'minLon,minLat,maxLon,maxLat'", extra={"field": "bbox"})
    try:
        min_lon, min_lat = check_lon_lat(float(parts[0]), float(parts[1]), "bbox")
        max_lon, max_lat = check_lon_lat(float(parts[2]), float(parts[3]), "bbox")
    except GeoError as exc:
        raise InvalidGeofence.from_geo(exc) from exc
    except ValueError as exc:
        raise Unprocessable("bbox must be four numbers", extra={"field": "bbox"}) from exc
    if min_lon > max_lon or min_lat > max_lat:
        raise Unprocessable(
            "bbox must be minLon,minLat,maxLon,maxLat with min ≤ max "
            "(split boxes crossing the antimeridian in two)",
            extra={"field": "bbox"},
        )
    return min_lon, min_lat, max_lon, max_lat


@router.post(
    "",
    response_model=GeofenceRead,
    status_code=status.HTTP_201_CREATED,
    responses=GeoJSONResponses,
)
async def create_geofence(
    session: Session, settings: AppSettings, editor: EditorUser, body: GeofenceCreate
) -> GeofenceRead:
    """Editor: create a place from a GeoJSON Feature (Polygon, MultiPolygon, Point + radius_m)."""
    geofence = await service.create_geofence(session, settings, editor.organisation_id, body)
    await audit_service.record(
        session, editor, "geofence.create", "geofence", geofence.id, {"name": geofence.name}
    )
    return service.to_read(geofence)


@router.get("", response_model=GeofencePage, responses=GeoJSONResponses)
async def list_geofences(
    *,
    request: Request,
    session: Session,
    principal: CurrentPrincipal,
    page: Pagination,
    bbox: Annotated[
        str | None, Query(description="minLon,minLat,maxLon,maxLat", max_length=200)
    ] = None,
    near: Annotated[str | None, Query(description="lon,lat", max_length=100)] = None,
    within_m: Annotated[
        float | None, Query(description="With `near`; clamped to 50,000 m.", gt=0)
    ] = None,
    category: Annotated[str | None, Query(max_length=40)] = None,
    tag: Annotated[str | None, Query(max_length=64)] = None,
    active: Annotated[bool | None, Query()] = None,
) -> GeofencePage | Response:
    """Places of the organisation; `Accept: application/geo+json` gives a FeatureCollection."""
    if (near is None) != (within_m is None):
        raise Unprocessable("near and within_m go together", extra={"field": "within_m"})
    if within_m is not None and not math.isfinite(within_m):
        raise Unprocessable("within_m must be a finite number", extra={"field": "within_m"})
    if principal.kind == "device":
        active = True  # residents only ever see places that are active now
    filters = repository.ListFilters(
        bbox=_bbox(bbox) if bbox else None,
        near=_near_pair(near) if near else None,
        within_m=min(within_m, MAX_WITHIN_M) if within_m is not None else None,
        category=category,
        tag=tag,
        active=active,
        at=service.now(),
    )
    rows, next_cursor = await service.list_geofences(
        session, principal.organisation_id, page, filters
    )
    items = [_render(principal, g) for g in rows]
    if _wants_geojson(request):
        collection: dict[str, Any] = {
            "type": "FeatureCollection",
            "features": [item.model_dump(mode="json") for item in items],
        }
        if next_cursor:
            collection["next_cursor"] = next_cursor
        response = _geojson(collection)
        if next_cursor:
            response.headers["Link"] = (
                f'<{request.url.include_query_params(cursor=next_cursor)}>; rel="next"'
            )
        return response
    return GeofencePage(items=items, next_cursor=next_cursor)


@router.get("/resolve", response_model=ResolveResult)
async def resolve(
    session: Session,
    principal: CurrentPrincipal,
    lon: Annotated[float, Query()],
    lat: Annotated[float, Query()],
    accuracy_m: Annotated[float, Query(ge=0, le=MAX_ACCURACY_M)] = 0.0,
) -> ResolveResult:
    """Places the point is in or near (trigger distance + accuracy), nearest first."""
    try:
        x, y = check_position(lon, lat, "lon,lat")
    except GeoError as exc:
        raise InvalidGeofence.from_geo(exc) from exc
    if not math.isfinite(accuracy_m):
        raise Unprocessable("accuracy_m must be a finite number", extra={"field": "accuracy_m"})
    at = service.now()
    places = await service.resolve(session, principal.organisation_id, x, y, accuracy_m, at=at)
    return ResolveResult(
        lon=x,
        lat=y,
        accuracy_m=accuracy_m,
        places=[
            ResolvedPlaceRead(
                id=p.geofence.id,
                name=p.geofence.name,
                category=p.geofence.category,
                tags=list(p.geofence.tags),
                distance_m=round(p.distance_m, 2),
                inside=p.inside,
                trigger_distance_m=p.geofence.trigger_distance_m,
                open_now=service.is_open(p.geofence.opening_hours, at),
            )
            for p in places
        ],
    )


@router.post(
    "/import", response_model=ImportResult, dependencies=[Depends(rate_limited("imports"))]
)
async def import_geofences(
    session: Session,
    settings: AppSettings,
    editor: EditorUser,
    body: Annotated[FeatureCollectionObject, Body(description="A GeoJSON FeatureCollection.")],
    dry_run: Annotated[bool, Query(description="Validate and count; store nothing.")] = False,
) -> ImportResult:
    """Editor: upsert a FeatureCollection by external_id; bad features are reported by index."""
    result = await service.import_features(
        session, settings, editor.organisation_id, body, dry_run=dry_run
    )
    if not dry_run and (result.created or result.updated):
        counts = {"created": result.created, "updated": result.updated, "failed": result.failed}
        await audit_service.record(session, editor, "geofence.import", "geofence", None, counts)
    return result


@router.get(
    "/{geofence_id:uuid}",
    response_model=GeofenceRead | GeofencePublicRead,
    responses=GeoJSONResponses,
)
async def get_geofence(
    request: Request, principal: CurrentPrincipal, geofence: VisibleGeofence
) -> GeofenceRead | GeofencePublicRead | Response:
    """One place as a GeoJSON Feature (residents: active places, public properties only)."""
    item = _render(principal, geofence)
    if _wants_geojson(request):
        return _geojson(item.model_dump(mode="json"))
    return item


@router.patch("/{geofence_id:uuid}", response_model=GeofenceRead)
async def update_geofence(
    session: Session,
    settings: AppSettings,
    editor: EditorUser,
    geofence: VisibleGeofence,
    body: GeofenceUpdate,
) -> GeofenceRead:
    """Editor: change properties and/or the geometry of a place."""
    changed = sorted(body.properties.model_dump(exclude_unset=True))
    if body.geometry is not None:
        changed.append("geometry")
    updated = await service.update_geofence(session, settings, geofence, body)
    await audit_service.record(
        session, editor, "geofence.update", "geofence", updated.id, {"fields": changed}
    )
    return service.to_read(updated)


@router.delete("/{geofence_id:uuid}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_geofence(session: Session, editor: EditorUser, geofence: VisibleGeofence) -> None:
    """Editor: soft-delete a place (history that refers to it stays explainable)."""
    await audit_service.record(
        session, editor, "geofence.delete", "geofence", geofence.id, {"name": geofence.name}
    )
    await service.delete_geofence(session, geofence)
