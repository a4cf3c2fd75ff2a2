"""HTTP for pings, presence and the event log (theme 6)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from app.accounts.dependencies import CurrentDevice, CurrentPrincipal, CurrentStaff
from app.accounts.models import Role
from app.core.db import Session
from app.core.deps import AppSettings
from app.core.errors import Forbidden
from app.core.ratelimit import rate_limited
from app.core.types import BoundedDatetime, require_offset
from app.presence import gate, service, stream
from app.presence.acks import AckGroups
from app.presence.errors import TooManyPings
from app.presence.fastpath import prefers_async
from app.presence.groups import PingGroups
from app.presence.models import SubjectKind
from app.presence.schemas import (
    BackgroundLocation,
    EventRead,
    PingAck,
    PingBatchCreate,
    PingBatchRead,
    PingIssue,
    PresenceRead,
)

router = APIRouter(prefix="/v1", tags=["pings and events"])


@router.post(
    "/pings",
    response_model=PingBatchRead,
    status_code=200,
    responses={
        202: {
            "model": PingAck,
            "description": "Stored, to be evaluated moments later (a single fix, or "
            "`Prefer: respond-async`); events reach people and staff as usual.",
        },
        409: {
            "description": "Background location is off (`background-location-off`), or a "
            "field worker off shift or with tracking paused (`off-shift`): nothing stored"
        },
        413: {"description": "> 1,000"},
    },
    dependencies=[Depends(rate_limited("ingest"))],
)
async def post_pings(
    *,
    request: Request,
    session: Session,
    settings: AppSettings,
    principal: CurrentPrincipal,
    body: PingBatchCreate,
    mode: Annotated[
        Literal["sync", "async"] | None,
        Query(
            description="`sync`: evaluate now and answer 200 with the events; `async`: store, "
            "answer 202, evaluate moments later. Default: `async` for a single fix or with "
            "`Prefer: respond-async`, `sync` for a batch."
        ),
    ] = None,
    prefer: Annotated[str | None, Header(description="`respond-async` asks for 202.")] = None,
) -> PingBatchRead | JSONResponse:
    """Store location fixes (any order, idempotent by id): 202 queued, or 200 with the events."""
    if principal.is_staff and principal.role is not Role.field_worker:
        raise Forbidden("Only field workers and resident devices send location pings.")
    if len(body.pings) > settings.ping_max_batch:
        raise TooManyPings(f"At most {settings.ping_max_batch} pings per request.")
    kind = SubjectKind.staff if principal.is_staff else SubjectKind.device
    subject = service.Subject(kind, principal.id, principal.organisation_id)
    pings = [
        service.PingInput(
            id=p.id,
            lon=p.lon,
            lat=p.lat,
            recorded_at=service.in_utc(p.recorded_at),
            accuracy_m=p.accuracy_m,
            speed_mps=p.speed_mps,
            heading=p.heading,
        )
        for p in body.pings
    ]
    # field workers: 409 `off-shift` off shift or paused; fixes taken then are refused one by one
    pings, off_shift = await gate.admit(request, session, subject, pings)
    if mode is None:
        mode = "async" if len(body.pings) == 1 or prefers_async(prefer) else "sync"
    if mode == "async":
        acks: AckGroups = request.app.state.ack_groups
        # committed before the answer: a 202 means stored
        ack = await acks.enqueue(session, service.BatchRequest(subject, pings, True))
        answer = PingAck(
            accepted=len(ack.accepted),
            accepted_ids=ack.accepted,
            duplicates=len(ack.duplicates),
            duplicate_ids=ack.duplicates,
            rejected=[PingIssue(**r) for r in [*off_shift, *ack.rejected]],
            flagged=[PingIssue(**r) for r in ack.flagged],
        )
        return JSONResponse(
            answer.model_dump(), status_code=202, headers={"Preference-Applied": "respond-async"}
        )
    groups: PingGroups = request.app.state.ping_groups
    batch = service.BatchRequest(subject, pings, check_background_location=True)
    result = await groups.ingest(session, batch)
    return PingBatchRead(
        accepted=result.accepted,
        duplicates=result.duplicates,
        rejected=[PingIssue(**r) for r in [*off_shift, *result.rejected]],
        events=[EventRead.from_row(e) for e in result.events],
        flagged=[PingIssue(**r) for r in result.flagged],
    )


@router.get("/me/presence", response_model=list[PresenceRead])
async def my_presence(session: Session, principal: CurrentPrincipal) -> list[PresenceRead]:
    """The places the caller is inside or near right now (no entry = outside)."""
    rows = await service.presence_of(session, principal.id)
    return [PresenceRead.model_validate(dict(r._mapping)) for r in rows]


@router.get("/me/background-location", response_model=BackgroundLocation)
async def get_background_location(session: Session, device: CurrentDevice) -> BackgroundLocation:
    """Whether this device shares background location (off until the resident opts in)."""
    return BackgroundLocation(enabled=await service.background_location_enabled(session, device.id))


@router.put("/me/background-location", response_model=BackgroundLocation)
async def put_background_location(
    session: Session, device: CurrentDevice, body: BackgroundLocation
) -> BackgroundLocation:
    """Switch background location sharing on or off for this device."""
    await service.set_background_location(session, device.id, body.enabled)
    return body


@router.get(
    "/events/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def event_stream(
    *,
    request: Request,
    settings: AppSettings,
    staff: CurrentStaff,
    factory: Annotated[stream.SessionFactory, Depends(stream.session_factory)],
    since: Annotated[
        BoundedDatetime | None, Query(description="Replay events created since.")
    ] = None,
    follow: Annotated[bool, Query(description="Keep the stream open for new events.")] = True,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """Staff console: server-sent events for new geofence events in the organisation."""
    start = stream.start_from(require_offset("since", since), last_event_id)
    return StreamingResponse(
        stream.event_stream(
            factory,
            staff.organisation_id,
            start,
            poll_s=settings.events_stream_poll_s,
            follow=follow,
            is_disconnected=request.is_disconnected,
            viewer_id=staff.id,
        ),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
