"""Open311 GeoReport v2 under `/open311/v2/` (JSON or XML by the path's extension, errors as the
spec's `{code, description}` list) and its staff side under `/v1/open311/` (problem+json)."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, Literal

from fastapi import APIRouter, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from app.audit import service as audit_service
from app.core.db import Session
from app.core.deps import AppSettings
from app.core.errors import HereaboutsError, NotFound, TooManyRequests
from app.core.ratelimit import RateLimiter, Rule, client_ip
from app.open311 import formats, service
from app.open311.dependencies import AdminUser, EditorUser
from app.open311.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyRead,
    ReportRead,
    ServiceCreate,
    ServiceRead,
    ServiceUpdate,
    SettingsRead,
    SettingsUpdate,
)


class GeoReportRoute(APIRoute):
    """Errors in the GeoReport format of the requested extension, never problem+json."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            fmt = request.path_params.get("fmt", "json")
            fmt = fmt if fmt in formats.FORMATS else "json"
            try:
                if request.path_params.get("fmt") not in formats.FORMATS:
                    raise NotFound("Formats: .json or .xml.")
                return await handler(request)
            except HereaboutsError as exc:
                return formats.errors(fmt, exc.status, exc.detail, exc.headers)
            except RequestValidationError:
                return formats.errors(fmt, 400, "Malformed request.")

        return route


_ERROR_LIST = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["code", "description"],
        "properties": {"code": {"type": "integer"}, "description": {"type": "string"}},
    },
}
_ERROR = {
    "content": {
        "application/json": {"schema": _ERROR_LIST},
        "text/xml": {"schema": {"type": "string"}},
    }
}
_DOCUMENT = {"application/json": {"schema": {}}, "text/xml": {"schema": {"type": "string"}}}
# The GeoReport answers (JSON or XML by extension) and its error list: never problem+json.
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The GeoReport document", "content": _DOCUMENT},
    400: {"description": "A missing or unacceptable parameter", **_ERROR},
    403: {"description": "No, an unknown or a revoked api_key", **_ERROR},
    404: {"description": "No such service, request or token; not .json/.xml", **_ERROR},
    429: {"description": "The key's (or address's) rate is used up", **_ERROR},
}
_FORM_FIELDS = (
    "api_key jurisdiction_id service_code lat long address_string address_id description "
    "media_url email first_name last_name phone account_id device_id"
).split()
POST_BODY = {
    "requestBody": {
        "required": False,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {f: {"type": "string"} for f in _FORM_FIELDS},
                    "additionalProperties": {"type": "string"},
                    "description": "Attributes as attribute[code]=value (docs/open311.md).",
                }
            }
        },
    }
}

georeport = APIRouter(
    prefix="/open311/v2", tags=["open311"], route_class=GeoReportRoute, responses=RESPONSES
)
Fmt = Literal["json", "xml"]


def _params(request: Request) -> dict[str, str]:
    return dict(request.query_params.items())


def _limit(request: Request, who: service.Caller) -> None:
    """Each api key has its own rate; calls without one share a per-IP rate."""
    settings = request.app.state.settings
    if not settings.rate_limit_enabled:
        return
    limiter: RateLimiter = request.app.state.rate_limiter
    if who.key is not None:
        scope, key, rate = "open311:key", str(who.key.id), float(who.key.rate_per_minute)
    else:
        scope, key = "open311:ip", client_ip(request)
        rate = float(settings.open311_anonymous_rate_per_minute)
    wait = limiter.hit(scope, key, Rule(rate, max(1, math.ceil(rate))))
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise TooManyRequests(
            f"Too many requests; retry in {seconds} s.", headers={"Retry-After": str(seconds)}
        )


async def _caller(request: Request, session: Any, params: dict[str, str]) -> service.Caller:
    who = await service.caller(session, params.get("jurisdiction_id"), params.get("api_key"))
    _limit(request, who)
    return who


@georeport.get("/discovery.{fmt}")
async def discovery(request: Request, session: Session, fmt: Fmt) -> Response:
    """GeoReport discovery: where the endpoint is and which formats it speaks."""
    who = await _caller(request, session, _params(request))
    doc = await service.discovery_doc(session, who.organisation_id, str(request.base_url))
    return formats.render(fmt, "discovery", doc)


@georeport.get("/services.{fmt}")
async def services(request: Request, session: Session, fmt: Fmt) -> Response:
    """GeoReport service list: what residents may report here."""
    who = await _caller(request, session, _params(request))
    rows = await service.list_services(session, who.organisation_id, active_only=True)
    return formats.render(fmt, "services", [service.service_doc(s) for s in rows])


@georeport.get("/services/{service_code}.{fmt}")
async def service_definition(
    request: Request, session: Session, service_code: str, fmt: Fmt
) -> Response:
    """GeoReport service definition: the attributes to ask the reporter."""
    who = await _caller(request, session, _params(request))
    row = await service.get_service(session, who.organisation_id, service_code)
    if not row.active:
        raise NotFound(f"No service with code {service_code!r}.")
    return formats.render(fmt, "service_definition", service.definition_doc(row))


@georeport.post("/requests.{fmt}", openapi_extra=POST_BODY)
async def post_request(
    request: Request, session: Session, settings: AppSettings, fmt: Fmt
) -> Response:
    """GeoReport: file a service request (form-encoded; an api_key is required)."""
    form = [(k, v) for k, v in request.query_params.multi_items()]
    body = await request.form()
    form += [(k, v) for k, v in body.multi_items() if isinstance(v, str)]  # files are ignored
    params = {k: v for k, v in form if k in ("jurisdiction_id", "api_key")}
    who = await _caller(request, session, params)
    answer = await service.create_report(session, settings, who, form)
    return formats.render(fmt, "service_requests", [answer])


@georeport.get("/requests.{fmt}")
async def get_requests(request: Request, session: Session, fmt: Fmt) -> Response:
    """GeoReport: service requests by id, service, status and date (newest first)."""
    params = _params(request)
    who = await _caller(request, session, params)
    docs = await service.list_requests(session, who, params)
    return formats.render(fmt, "service_requests", docs)


@georeport.get("/requests/{service_request_id}.{fmt}")
async def get_request(
    request: Request, session: Session, service_request_id: str, fmt: Fmt
) -> Response:
    """GeoReport: one service request, as a list of one."""
    who = await _caller(request, session, _params(request))
    doc = await service.get_request(session, who, service_request_id)
    return formats.render(fmt, "service_requests", [doc])


@georeport.get("/tokens/{token}.{fmt}")
async def get_token(request: Request, session: Session, token: str, fmt: Fmt) -> Response:
    """GeoReport: the service request id behind a token."""
    who = await _caller(request, session, _params(request))
    doc = await service.request_for_token(session, who, token)
    return formats.render(fmt, "service_requests", [doc])


# --- staff side ------------------------------------------------------------------------------

router = APIRouter(prefix="/v1/open311", tags=["open311"])


@router.get("/services", response_model=list[ServiceRead])
async def list_services(session: Session, editor: EditorUser) -> list[ServiceRead]:
    """Admins, editors: every Open311 service of the organisation, retired ones too."""
    rows = await service.list_services(session, editor.organisation_id, active_only=False)
    return [service.service_read(s) for s in rows]


@router.post("/services", response_model=ServiceRead, status_code=status.HTTP_201_CREATED)
async def create_service(
    session: Session, settings: AppSettings, admin: AdminUser, body: ServiceCreate
) -> ServiceRead:
    """Admin: a service residents may report, and the task each report becomes."""
    row = await service.create_service(session, settings, admin.organisation_id, body)
    await audit_service.record(
        session, admin, "open311.service.create", "open311_service", row.id, {"code": row.code}
    )
    return service.service_read(row)


@router.get("/services/{service_code}", response_model=ServiceRead)
async def get_service(session: Session, editor: EditorUser, service_code: str) -> ServiceRead:
    """Admins, editors: one service."""
    row = await service.get_service(session, editor.organisation_id, service_code)
    return service.service_read(row)


@router.patch("/services/{service_code}", response_model=ServiceRead)
async def update_service(
    session: Session,
    settings: AppSettings,
    admin: AdminUser,
    service_code: str,
    body: ServiceUpdate,
) -> ServiceRead:
    """Admin: change a service (`active: false` retires it; its reports stay)."""
    org = admin.organisation_id
    row = await service.update_service(session, settings, org, service_code, body)
    await audit_service.record(
        session,
        admin,
        "open311.service.update",
        "open311_service",
        row.id,
        {"fields": sorted(body.model_dump(exclude_unset=True))},
    )
    return service.service_read(row)


@router.get("/keys", response_model=list[ApiKeyRead])
async def list_keys(session: Session, admin: AdminUser) -> list[ApiKeyRead]:
    """Admin: the client applications' api keys (never the keys themselves)."""
    return [
        ApiKeyRead.model_validate(k)
        for k in await service.list_keys(session, admin.organisation_id)
    ]


@router.post("/keys", response_model=ApiKeyCreated, status_code=status.HTTP_201_CREATED)
async def create_key(
    session: Session, settings: AppSettings, admin: AdminUser, body: ApiKeyCreate
) -> ApiKeyCreated:
    """Admin: an api_key for a client application, shown once, with its own rate limit."""
    row, key = await service.create_key(session, settings, admin.organisation_id, body)
    await audit_service.record(
        session, admin, "open311.key.create", "open311_api_key", row.id, {"label": row.label}
    )
    return ApiKeyCreated(**ApiKeyRead.model_validate(row).model_dump(), key=key)


@router.delete("/keys/{api_key_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_key(session: Session, admin: AdminUser, api_key_id: uuid.UUID) -> Response:
    """Admin: revoke an api key at once."""
    await service.revoke_key(session, admin.organisation_id, api_key_id)
    await audit_service.record(session, admin, "open311.key.revoke", "open311_api_key", api_key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/settings", response_model=SettingsRead)
async def read_settings(request: Request, session: Session, admin: AdminUser) -> SettingsRead:
    """Admin: the jurisdiction_id clients use and whether reports are readable without a key."""
    slug, public = await service.read_settings(session, admin.organisation_id)
    endpoint = str(request.base_url).rstrip("/") + "/open311/v2"
    return SettingsRead(jurisdiction_id=slug, public_read=public, endpoint=endpoint)


@router.put("/settings", response_model=SettingsRead)
async def update_settings(
    request: Request, session: Session, admin: AdminUser, body: SettingsUpdate
) -> SettingsRead:
    """Admin: allow or forbid reading reports without an api key."""
    await service.set_public_read(session, admin.organisation_id, body.public_read)
    await audit_service.record(
        session,
        admin,
        "open311.settings",
        "organisation",
        admin.organisation_id,
        {"public_read": body.public_read},
    )
    return await read_settings(request, session, admin)


@router.get("/reports", response_model=list[ReportRead])
async def list_reports(session: Session, editor: EditorUser) -> list[ReportRead]:
    """Admins, editors: the newest 100 reports with the reporters' contact fields."""
    rows = await service.staff_reports(session, editor.organisation_id)
    return [ReportRead.model_validate(r) for r in rows]


@router.get("/reports/{report_id}", response_model=ReportRead)
async def get_report(session: Session, editor: EditorUser, report_id: uuid.UUID) -> ReportRead:
    """Admins, editors: one report with the reporter's contact fields."""
    rows = await service.staff_reports(session, editor.organisation_id, [report_id], 1)
    if not rows:
        raise NotFound("No such report.")
    return ReportRead.model_validate(rows[0])
