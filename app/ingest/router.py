"""HTTP for the GPS apps people already have: Overland, OwnTracks and Traccar Client.

Each endpoint reads its app's documented format, maps it to pings (`service`) and hands them to
the ping groups exactly as `POST /v1/pings` does: same validation, presence, rules and push, the
same body and rate limits, the same background-location refusal. Setup: docs/ingest.md.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.responses import JSONResponse

from app.accounts.dependencies import CurrentPrincipal
from app.accounts.models import Role
from app.accounts.principal import Principal
from app.core.db import Session
from app.core.deps import AppSettings
from app.core.errors import Forbidden, HereaboutsError
from app.core.ratelimit import RateLimiter, Rule, rate_limited, refuse_if_waiting
from app.ingest import service
from app.ingest.dependencies import credential_from_header, key_cache, subject_for
from app.ingest.errors import BadIngestPayload, InvalidIngestCredentials
from app.ingest.schemas import (
    IngestKeyCreate,
    IngestKeyCreated,
    IngestKeyRead,
    IngestSetup,
    IngestSummary,
    OverlandResult,
    SetupSetting,
)
from app.ingest.setup import APP_NAMES, setup_for
from app.presence import gate
from app.presence import service as presence_service
from app.presence.acks import AckGroups
from app.presence.errors import TooManyPings
from app.presence.groups import PingGroups
from app.presence.models import SubjectKind
from app.presence.schemas import PingIssue

router = APIRouter(prefix="/v1", tags=["ingest (GPS apps)"])

_JSON_BODY: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}


class MalformedJson(HereaboutsError):
    status, code, title = 400, "malformed-json", "Malformed JSON"


async def _json(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedJson("The request body is not valid JSON.") from exc


async def _store(
    request: Request,
    session: Session,
    settings: AppSettings,
    subject: presence_service.Subject,
    parsed: service.Parsed,
    *,
    queue_single: bool = False,
) -> IngestSummary:
    """The pings through the ping groups, as `POST /v1/pings`; committed when it returns.

    With `queue_single`, one fix goes the way of a single `/v1/pings` fix: committed to the
    ping queue (group commit) and evaluated moments later by the evaluator, with the same events
    (docs/presence.md, "Two modes"). The app still gets its usual answer: stored is stored.
    """
    if len(parsed.pings) > settings.ping_max_batch:
        raise TooManyPings(f"At most {settings.ping_max_batch} pings per request.")
    # field workers: 409 `off-shift` off shift or paused, as on POST /v1/pings (nothing stored)
    pings, off_shift = await gate.admit(request, session, subject, parsed.pings)
    batch = presence_service.BatchRequest(subject, pings, check_background_location=True)
    if queue_single and len(pings) == 1:
        acks: AckGroups = request.app.state.ack_groups
        ack = await acks.enqueue(session, batch)
        return IngestSummary(
            accepted=len(ack.accepted),
            duplicates=len(ack.duplicates),
            rejected=[PingIssue(**r) for r in [*parsed.rejected, *off_shift, *ack.rejected]],
            flagged=[PingIssue(**r) for r in ack.flagged],
        )
    groups: PingGroups = request.app.state.ping_groups
    result = await groups.ingest(session, batch)
    return IngestSummary(
        accepted=result.accepted,
        duplicates=result.duplicates,
        rejected=[PingIssue(**r) for r in [*parsed.rejected, *off_shift, *result.rejected]],
        flagged=[PingIssue(**r) for r in result.flagged],
    )


@router.post(
    "/ingest/overland",
    response_model=OverlandResult,
    dependencies=[Depends(rate_limited("ingest"))],
    openapi_extra=_JSON_BODY,
    responses={
        409: {
            "description": "Background location is off, or a field worker off shift or "
            "paused (`off-shift`); Overland keeps the batch"
        },
        413: {"description": "More locations than PING_MAX_BATCH"},
    },
)
async def overland(request: Request, session: Session, settings: AppSettings) -> OverlandResult:
    """Overland (iOS): a batch of GeoJSON points; `{"result": "ok"}` once it is stored."""
    subject = await subject_for(request, session, settings, credential_from_header(request))
    parsed, size = service.parse_overland(await _json(request), settings.ping_max_batch)
    if size > settings.ping_max_batch:
        raise TooManyPings(f"At most {settings.ping_max_batch} locations per batch.")
    summary = await _store(request, session, settings, subject, parsed)
    return OverlandResult(**summary.model_dump())


@router.post(
    "/ingest/owntracks",
    dependencies=[Depends(rate_limited("ingest"))],
    openapi_extra=_JSON_BODY,
    responses={
        200: {
            "description": "A JSON array of OwnTracks messages for the app (setWaypoints)",
            "content": {"application/json": {"schema": {"type": "array", "items": {}}}},
        },
        409: {
            "description": "Background location is off, or a field worker off shift (`off-shift`)"
        },
    },
)
async def owntracks(request: Request, session: Session, settings: AppSettings) -> JSONResponse:
    """OwnTracks (HTTP mode, Basic auth with the token as password): locations and
    transitions become pings; the answer carries the nearest places as waypoints."""
    subject = await subject_for(
        request, session, settings, credential_from_header(request), basic=True
    )
    body = await _json(request)
    messages: list[Any] = body if isinstance(body, list) else [] if body is None else [body]
    if any(not isinstance(m, dict) for m in messages):
        raise BadIngestPayload("Each OwnTracks message must be a JSON object with `_type`.")
    parsed = service.parse_owntracks(messages)
    answer: list[dict[str, Any]] = []
    if not parsed.pings and not parsed.rejected:
        return JSONResponse(answer)  # lwt, waypoint(s), card, …: acknowledged, nothing stored
    summary = await _store(request, session, settings, subject, parsed, queue_single=True)
    refused = {r.id for r in summary.rejected}
    kept = [p for p in parsed.pings if p.id not in refused]
    if kept:
        newest = max(kept, key=lambda p: p.recorded_at)
        cmd = await service.waypoints_for(
            session, subject, newest.lon, newest.lat, service.utcnow()
        )
        if cmd is not None:
            answer.append(cmd)
    return JSONResponse(answer)


def _limit_key(request: Request, key: str) -> None:
    """Traccar sends no Authorization header: its key gets the per-caller `ingest` limit."""
    settings = request.app.state.settings
    if not settings.rate_limit_enabled:
        return
    limiter: RateLimiter = request.app.state.rate_limiter
    rate = settings.rate_limit_per_caller_per_minute.get("ingest", 600.0)
    digest = hashlib.blake2b(key.encode(), digest_size=12).hexdigest()
    refuse_if_waiting(limiter.hit("ingest:caller", digest, Rule(rate, max(1, math.ceil(rate)))))


_TRACCAR: dict[str, Any] = {
    "response_model": IngestSummary,
    "dependencies": [Depends(rate_limited("ingest"))],
    "responses": {
        401: {"description": "Unknown or revoked ingest key (Traccar Client retries)"},
        409: {
            "description": "Background location is off, or a field worker off shift (`off-shift`)"
        },
    },
}


@router.get("/ingest/traccar", operation_id="traccar_get", **_TRACCAR)
@router.post("/ingest/traccar", operation_id="traccar_post", **_TRACCAR)
async def traccar(request: Request, session: Session, settings: AppSettings) -> IngestSummary:
    """Traccar Client (OsmAnd protocol): `id` (an ingest key), `lat`, `lon`, `timestamp`, … in
    the query string, a form or the JSON body of Traccar Client 9+."""
    now = service.utcnow()
    content_type = request.headers.get("content-type", "").lower()
    if request.method == "POST" and content_type.startswith("application/json"):
        message = service.parse_traccar_json(await _json(request), now)
    else:
        fields: dict[str, Any] = dict(request.query_params)
        if request.method == "POST" and content_type.startswith(
            "application/x-www-form-urlencoded"
        ):
            form = await request.form()
            fields.update({k: v for k, v in form.items() if isinstance(v, str)})
        message = service.parse_traccar_fields(fields, now)
    if not message.key:
        raise InvalidIngestCredentials("An ingest key (`id`) is required.")
    _limit_key(request, message.key)
    subject = await service.subject_for_key(session, message.key, key_cache(request))
    if subject is None:
        raise InvalidIngestCredentials("The ingest key is not valid.")
    return await _store(request, session, settings, subject, message.parsed, queue_single=True)


@router.get("/me/ingest-keys", response_model=list[IngestKeyRead])
async def list_ingest_keys(session: Session, principal: CurrentPrincipal) -> list[IngestKeyRead]:
    """The caller's ingest keys, newest first (the keys themselves are never shown again)."""
    rows = await service.keys_of(session, _own_subject(principal))
    return [IngestKeyRead(id=r.id, label=r.label, created_at=r.created_at) for r in rows]


@router.post(
    "/me/ingest-keys",
    response_model=IngestKeyCreated,
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(rate_limited("devices"))],
)
async def create_ingest_key(
    request: Request,
    session: Session,
    settings: AppSettings,
    principal: CurrentPrincipal,
    body: IngestKeyCreate | None = None,
) -> IngestKeyCreated:
    """A new ingest key for this device or field worker; with `app`, that app's setup link and
    QR code. The key is in this answer only."""
    subject = _own_subject(principal)
    body = body or IngestKeyCreate()
    label = body.label or (APP_NAMES[body.app] if body.app else None)
    row, key = await service.create_key(session, subject, label)
    created = IngestKeyCreated(id=row.id, label=row.label, created_at=row.created_at, key=key)
    if body.app is not None:
        found = setup_for(body.app, settings.public_url or str(request.base_url), key)
        created.setup = IngestSetup(
            app=found.app,
            endpoint=found.endpoint,
            link=found.link,
            qr_svg=found.qr_svg(),
            settings=[SetupSetting(name=n, value=v) for n, v in found.settings],
            config=found.config,
        )
    return created


@router.delete("/me/ingest-keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_ingest_key(
    request: Request, session: Session, principal: CurrentPrincipal, key_id: uuid.UUID
) -> Response:
    """Revoke one of the caller's ingest keys at once, in every API process (another's is not
    found)."""
    subject = _own_subject(principal)
    await service.revoke_key(session, subject, key_id, key_cache(request))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _own_subject(principal: Principal) -> presence_service.Subject:
    if principal.is_staff and principal.role is not Role.field_worker:
        raise Forbidden("Ingest keys are for field workers and resident devices.")
    kind = SubjectKind.staff if principal.is_staff else SubjectKind.device
    return presence_service.Subject(kind, principal.id, principal.organisation_id)
