"""Open311 GeoReport v2: reports become tasks at places, and the task's status flows back.

A report (POST requests) is checked whole before anything is written. Then, under a lock per
service: a report of the same service within `OPEN311_DUPLICATE_RADIUS_M` and
`OPEN311_DUPLICATE_WINDOW_H` of an open original is attached to it (same task; its answer's
`service_notice` names the original); otherwise the task goes to the nearest live place of the
service's categories within its `match_within_m`, else to a new 25 m circle of category `report`.
Nearby field workers who may see the task (the pool: all; a named team: its members) whose last
fix is recent get a push, unless off shift or paused (`app.shifts.service.located_now`). Every
task transition that changes the Open311 status (open/closed) pushes to the reporter's device,
when it gave one of this organisation's devices. See docs/open311.md.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings, get_settings
from app.core.errors import NotFound
from app.core.geo import GeoError, check_position
from app.core.subject import SubjectRef
from app.events import service as events_service
from app.events.types import Event, EventType, Source
from app.geofences import service as geofence_service
from app.geofences.schemas import GeofenceCreate, GeofenceProperties
from app.notifications import service as notifications_service
from app.notifications.models import Urgency
from app.notifications.schemas import NotificationPayload, Recipient
from app.open311 import repository
from app.open311.errors import (
    BadRequest,
    DuplicateServiceCode,
    InvalidApiKey,
    InvalidService,
    RequestNotFound,
    ServiceNotFound,
)
from app.open311.formats import w3c
from app.open311.models import Open311ApiKey, Open311Request, Open311Service, Open311Settings
from app.open311.schemas import (
    ApiKeyCreate,
    Datatype,
    ServiceCreate,
    ServiceRead,
    ServiceUpdate,
    TaskTemplate,
)
from app.shifts import service as shifts_service
from app.tasks import service as task_service
from app.tasks.errors import UnknownAssignee
from app.tasks.models import CLOSED_TASK_STATUSES, Priority, Task
from app.tasks.schemas import TaskCreate

SPEC_URL = "http://wiki.open311.org/GeoReport_v2"
KEY_PREFIX = "o311_"
MAX_RANGE = timedelta(days=90)
MAX_LIST = 1000
ROUND_DECIMALS = 3  # ≈ 110 m: a street, not a doorstep
FIELD_LIMITS = {
    "address_string": 500,
    "address_id": 200,
    "email": 320,
    "first_name": 200,
    "last_name": 200,
    "phone": 50,
    "account_id": 200,
    "media_url": 2000,
}
ATTRIBUTE_TEXT_MAX = 2000
# characters XML 1.0 cannot carry (NUL is refused before any route): never stored
_CONTROL = re.compile(r"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]")


def utcnow() -> datetime:
    return datetime.now(UTC)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def open311_status(task_status: str | None) -> str:
    """A report is `closed` when its task is done or cancelled (or gone), else `open`."""
    return "closed" if task_status is None or task_status in CLOSED_TASK_STATUSES else "open"


# --- who is asking ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    organisation_id: uuid.UUID
    key: Open311ApiKey | None


async def caller(session: AsyncSession, jurisdiction_id: str | None, api_key: str | None) -> Caller:
    """The organisation a GeoReport call is about: the api_key's, else `jurisdiction_id` (the
    organisation's slug), else the only organisation of a single-council installation."""
    if api_key:
        key = await repository.key_by_hash(session, hash_key(api_key))
        if key is None:
            raise InvalidApiKey("Invalid api_key.")
        if jurisdiction_id:
            org = await repository.organisation_id_by_slug(session, jurisdiction_id)
            if org != key.organisation_id:
                raise InvalidApiKey("This api_key is not valid for that jurisdiction_id.")
        return Caller(key.organisation_id, key)
    if jurisdiction_id:
        org = await repository.organisation_id_by_slug(session, jurisdiction_id)
        if org is None:
            raise BadRequest(f"Unknown jurisdiction_id {jurisdiction_id!r}.")
        return Caller(org, None)
    only = await repository.only_organisation(session)
    if only is None:
        raise BadRequest("jurisdiction_id is required on this server.")
    return Caller(only, None)


async def may_read(session: AsyncSession, who: Caller) -> None:
    """Reports are read with a key, or without one where the organisation allows it."""
    if who.key is not None:
        return
    row = await repository.get_settings(session, who.organisation_id)
    if row is None or not row.public_read:
        raise InvalidApiKey("An api_key is required to read service requests here.")


# --- services (staff) ------------------------------------------------------------------------


def service_read(s: Open311Service) -> ServiceRead:
    return ServiceRead(
        id=s.id,
        code=s.code,
        name=s.name,
        description=s.description,
        group=s.group,
        keywords=list(s.keywords),
        attributes=list(s.attributes),
        place_categories=list(s.place_categories),
        match_within_m=s.match_within_m,
        task=TaskTemplate(
            title=s.task_title,
            priority=Priority(s.task_priority),
            due_in_s=s.task_due_s,
            requires_visit=s.requires_visit,
            expected_duration_min=s.task_expected_duration_min,
            assignee_ids=list(s.assignee_ids),
        ),
        active=s.active,
        created_at=s.created_at,
        updated_at=s.updated_at,
    )


async def _check_service(
    session: AsyncSession,
    settings: Settings,
    org: uuid.UUID,
    categories: list[str] | None,
    task: TaskTemplate | None,
) -> None:
    if categories is not None:
        allowed = geofence_service.allowed_categories(settings)
        unknown = [c for c in categories if c not in allowed]
        if unknown:
            raise InvalidService(
                f"Unknown place categories: {', '.join(unknown)}.",
                extra={"field": "place_categories"},
            )
    if task is not None and task.assignee_ids:
        found = await repository.field_workers_in(session, org, task.assignee_ids)
        missing = [str(i) for i in task.assignee_ids if i not in found]
        if missing:
            raise InvalidService(
                f"Not active field workers of your organisation: {', '.join(missing)}.",
                extra={"field": "task.assignee_ids"},
            )


def _apply_task(row: Open311Service, task: TaskTemplate) -> None:
    row.task_title = task.title
    row.task_priority = task.priority.value
    row.task_due_s = task.due_in_s
    row.requires_visit = task.requires_visit
    row.task_expected_duration_min = task.expected_duration_min
    row.assignee_ids = list(dict.fromkeys(task.assignee_ids))


async def create_service(
    session: AsyncSession, settings: Settings, org: uuid.UUID, body: ServiceCreate
) -> Open311Service:
    await _check_service(session, settings, org, body.place_categories, body.task)
    if await repository.service_by_code(session, org, body.code) is not None:
        raise DuplicateServiceCode(f"Service code {body.code!r} is already used.")
    row = Open311Service(
        organisation_id=org,
        code=body.code,
        name=body.name,
        description=body.description,
        group=body.group,
        keywords=list(body.keywords),
        attributes=[a.model_dump(mode="json") for a in body.attributes],
        place_categories=list(dict.fromkeys(body.place_categories)),
        match_within_m=body.match_within_m,
        active=body.active,
        created_at=utcnow(),
        updated_at=utcnow(),
    )
    _apply_task(row, body.task)
    await repository.add(session, row)
    return row


async def get_service(session: AsyncSession, org: uuid.UUID, code: str) -> Open311Service:
    row = await repository.service_by_code(session, org, code)
    if row is None:
        raise ServiceNotFound(f"No service with code {code!r}.")
    return row


async def update_service(
    session: AsyncSession, settings: Settings, org: uuid.UUID, code: str, body: ServiceUpdate
) -> Open311Service:
    row = await get_service(session, org, code)
    fields = body.model_fields_set
    await _check_service(session, settings, org, body.place_categories, body.task)
    for name in ("name", "description", "group", "match_within_m", "active"):
        if name in fields:
            setattr(row, name, getattr(body, name))
    if "keywords" in fields and body.keywords is not None:
        row.keywords = list(body.keywords)
    if "place_categories" in fields and body.place_categories is not None:
        row.place_categories = list(dict.fromkeys(body.place_categories))
    if "attributes" in fields and body.attributes is not None:
        row.attributes = [a.model_dump(mode="json") for a in body.attributes]
    if "task" in fields and body.task is not None:
        _apply_task(row, body.task)
    row.updated_at = utcnow()
    await session.flush()
    return row


async def list_services(
    session: AsyncSession, org: uuid.UUID, *, active_only: bool
) -> Sequence[Open311Service]:
    return await repository.list_services(session, org, active_only=active_only)


# --- keys and settings (staff) ---------------------------------------------------------------


async def create_key(
    session: AsyncSession, settings: Settings, org: uuid.UUID, body: ApiKeyCreate
) -> tuple[Open311ApiKey, str]:
    key = KEY_PREFIX + secrets.token_urlsafe(24)
    row = Open311ApiKey(
        organisation_id=org,
        key_hash=hash_key(key),
        label=body.label,
        rate_per_minute=body.rate_per_minute or settings.open311_default_key_rate_per_minute,
    )
    await repository.add(session, row)
    return row, key


async def list_keys(session: AsyncSession, org: uuid.UUID) -> Sequence[Open311ApiKey]:
    return await repository.list_keys(session, org)


async def revoke_key(session: AsyncSession, org: uuid.UUID, key_id: uuid.UUID) -> None:
    row = await repository.get_key(session, org, key_id)
    if row is None:
        raise NotFound("No such api key.")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        await session.flush()


async def read_settings(session: AsyncSession, org: uuid.UUID) -> tuple[str, bool]:
    row = await repository.get_settings(session, org)
    return await repository.organisation_slug(session, org), bool(row and row.public_read)


async def set_public_read(session: AsyncSession, org: uuid.UUID, public_read: bool) -> None:
    row = await repository.get_settings(session, org)
    if row is None:
        await repository.add(session, Open311Settings(organisation_id=org, public_read=public_read))
    else:
        row.public_read = public_read
        row.updated_at = utcnow()
        await session.flush()


# --- GeoReport documents ---------------------------------------------------------------------


def service_doc(s: Open311Service) -> dict[str, Any]:
    return {
        "service_code": s.code,
        "service_name": s.name,
        "description": s.description,
        "metadata": bool(s.attributes),
        "type": "realtime",
        "keywords": ", ".join(s.keywords),  # the spec's comma-separated string
        "group": s.group,
    }


def definition_doc(s: Open311Service) -> dict[str, Any]:
    attrs = sorted(s.attributes, key=lambda a: (a.get("order", 0), a["code"]))
    return {
        "service_code": s.code,
        "attributes": [
            {
                "variable": a.get("variable", True),
                "code": a["code"],
                "datatype": a["datatype"],
                "required": a.get("required", False),
                "datatype_description": a.get("datatype_description", ""),
                "order": a.get("order", 0),
                "description": a["description"],
                **({"values": a["values"]} if a.get("values") else {}),
            }
            for a in attrs
        ],
    }


async def discovery_doc(session: AsyncSession, org: uuid.UUID, base_url: str) -> dict[str, Any]:
    services = await repository.list_services(session, org, active_only=False)
    changed = max((s.updated_at for s in services), default=None)
    return {
        "changeset": w3c(changed) or "",
        "contact": "",
        "key_service": "Ask the council for an api_key (organisation admins issue them).",
        "endpoints": [
            {
                "specification": SPEC_URL,
                "url": base_url.rstrip("/") + "/open311/v2",
                "changeset": w3c(changed) or "",
                "type": "production",
                "formats": ["text/xml", "application/json"],
            }
        ],
    }


def request_doc(row: dict[str, Any]) -> dict[str, Any]:
    r: Open311Request = row["report"]
    notice = f"Duplicate of service request {r.duplicate_of}." if r.duplicate_of is not None else ""
    return {
        "service_request_id": str(r.id),
        "status": open311_status(row["task_status"]),
        "status_notes": row["status_notes"] or "",
        "service_name": row["service_name"],
        "service_code": row["service_code"],
        "description": r.description,
        "agency_responsible": "",
        "service_notice": notice,
        "requested_datetime": w3c(r.requested_at),
        "updated_datetime": w3c(row["updated_datetime"]),
        "expected_datetime": w3c(row["due_at"]) or "",
        "address": r.address_string or "",
        "address_id": r.address_id or "",
        "zipcode": "",
        "lat": r.lat,
        "long": r.lon,
        "media_url": r.media_url or "",
    }


# --- reading reports -------------------------------------------------------------------------


def _date(value: str, name: str) -> datetime:
    try:
        t = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadRequest(f"{name} is not a W3C date/time (e.g. 2010-01-01T00:00:00Z).") from exc
    if t.tzinfo is None:
        raise BadRequest(f"{name} needs a time zone (Z or ±hh:mm).")
    return t


def _ids(value: str) -> list[uuid.UUID]:
    out = []
    for part in value.split(","):
        try:
            out.append(uuid.UUID(part.strip()))
        except ValueError:
            continue  # no such request: listed as not found, i.e. left out
    return out


def _csv(value: str | None) -> list[str]:
    return [p.strip() for p in (value or "").split(",") if p.strip()]


async def list_requests(
    session: AsyncSession, who: Caller, params: dict[str, str], now: datetime | None = None
) -> list[dict[str, Any]]:
    """GET requests: `service_request_id` (comma-separated) overrides every other filter;
    else `service_code`, `status` (comma-separated), and `start_date`/`end_date` (at most
    90 days apart; by default the last 90 days)."""
    await may_read(session, who)
    if params.get("service_request_id"):
        f = repository.ReportFilters(ids=_ids(params["service_request_id"]), limit=MAX_LIST)
    else:
        statuses = _csv(params.get("status"))
        bad = [s for s in statuses if s not in ("open", "closed")]
        if bad:
            raise BadRequest("status is open and/or closed, comma-separated.")
        now = now or utcnow()
        start = _date(params["start_date"], "start_date") if params.get("start_date") else None
        end = _date(params["end_date"], "end_date") if params.get("end_date") else None
        if start is None and end is None:
            end, start = now, now - MAX_RANGE
        elif start is None:
            assert end is not None
            start = end - MAX_RANGE
        elif end is None:
            end = start + MAX_RANGE
        if end < start:
            raise BadRequest("end_date is before start_date.")
        if end - start > MAX_RANGE:
            raise BadRequest("start_date and end_date may not span more than 90 days.")
        f = repository.ReportFilters(
            service_codes=_csv(params.get("service_code")) or None,
            start=start,
            end=end,
            statuses=statuses or None,
            limit=MAX_LIST,
        )
    return [request_doc(r) for r in await repository.report_rows(session, who.organisation_id, f)]


async def get_request(session: AsyncSession, who: Caller, request_id: str) -> dict[str, Any]:
    await may_read(session, who)
    ids = _ids(request_id)
    rows = (
        await repository.report_rows(
            session, who.organisation_id, repository.ReportFilters(ids=ids[:1])
        )
        if ids
        else []
    )
    if not rows:
        raise RequestNotFound(f"No service request {request_id!r}.")
    return request_doc(rows[0])


async def request_for_token(session: AsyncSession, who: Caller, token: str) -> dict[str, Any]:
    rows = await repository.report_rows(
        session, who.organisation_id, repository.ReportFilters(token=token[:100], limit=1)
    )
    if not rows:
        raise RequestNotFound("No service request for that token.")
    return {"service_request_id": str(rows[0]["report"].id), "token": token}


async def staff_reports(
    session: AsyncSession, org: uuid.UUID, ids: list[uuid.UUID] | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    rows = await repository.report_rows(
        session, org, repository.ReportFilters(ids=ids, limit=limit)
    )
    out = []
    for row in rows:
        r: Open311Request = row["report"]
        out.append(
            {
                "service_request_id": r.id,
                "service_code": row["service_code"],
                "status": open311_status(row["task_status"]),
                "task_id": r.task_id,
                "task_status": row["task_status"],
                "geofence_id": r.geofence_id,
                "duplicate_of": r.duplicate_of,
                "lat": r.lat,
                "long": r.lon,
                "address_string": r.address_string,
                "description": r.description,
                "media_url": r.media_url,
                "attributes": r.attributes,
                "email": r.email,
                "first_name": r.first_name,
                "last_name": r.last_name,
                "phone": r.phone,
                "account_id": r.account_id,
                "device_id": r.device_id,
                "requested_datetime": r.requested_at,
                "updated_datetime": row["updated_datetime"],
            }
        )
    return out


# --- posting a report ------------------------------------------------------------------------


@dataclass
class ParsedReport:
    service: Open311Service
    lon: float
    lat: float
    description: str
    attributes: dict[str, Any]
    fields: dict[str, str | None]
    device_id: uuid.UUID | None


def _one(form: list[tuple[str, str]], name: str) -> str | None:
    values = [v for k, v in form if k == name]
    if len(values) > 1:
        raise BadRequest(f"{name} is given more than once.")
    if not values or not values[0].strip():
        return None
    return values[0].strip()


def _attribute_answers(form: list[tuple[str, str]]) -> dict[str, list[str]]:
    answers: dict[str, list[str]] = {}
    for k, v in form:
        if not k.startswith("attribute["):
            continue
        name = k[len("attribute[") :]
        if name.endswith("[]"):
            name = name[:-2]
        if not name.endswith("]") or "[" in name[:-1] or "]" in name[:-1]:
            raise BadRequest(f"Malformed attribute parameter {k!r}.")
        answers.setdefault(name[:-1], []).append(v)
    return answers


def _check_attributes(service: Open311Service, answers: dict[str, list[str]]) -> dict[str, Any]:
    defs = {a["code"]: a for a in service.attributes}
    unknown = sorted(set(answers) - set(defs))
    if unknown:
        raise BadRequest(f"Unknown attribute(s) for {service.code}: {', '.join(unknown)}.")
    out: dict[str, Any] = {}
    for code, a in defs.items():
        given = [v.strip() for v in answers.get(code, []) if v.strip()]
        if not a.get("variable", True):
            if given:
                raise BadRequest(f"Attribute {code} is informational and takes no answer.")
            continue
        if not given:
            if a.get("required"):
                raise BadRequest(f"Attribute {code} is required: {a['description']}")
            continue
        dt = a["datatype"]
        keys = {v["key"] for v in a.get("values", [])}
        if dt == Datatype.multivaluelist:
            bad = [v for v in given if v not in keys]
            if bad:
                raise BadRequest(f"Attribute {code}: not among its values: {', '.join(bad)}.")
            out[code] = list(dict.fromkeys(given))
            continue
        if len(given) > 1:
            raise BadRequest(f"Attribute {code} takes one value.")
        value = given[0]
        if len(value) > ATTRIBUTE_TEXT_MAX:
            raise BadRequest(f"Attribute {code} is longer than {ATTRIBUTE_TEXT_MAX} characters.")
        if dt == Datatype.singlevaluelist and value not in keys:
            raise BadRequest(f"Attribute {code}: {value!r} is not one of its values.")
        if dt == Datatype.number:
            try:
                number = float(value)
            except ValueError as exc:
                raise BadRequest(f"Attribute {code} is a number.") from exc
            if not math.isfinite(number):
                raise BadRequest(f"Attribute {code} is a finite number.")
        if dt == Datatype.datetime:
            _date(value, f"attribute[{code}]")
        out[code] = value
    return out


def _check_media_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise BadRequest("media_url must be an absolute http(s) URL.")
    if any(c.isspace() or ord(c) < 0x20 for c in value):
        raise BadRequest("media_url must not contain whitespace or control characters.")
    return value


async def parse_report(
    session: AsyncSession, settings: Settings, who: Caller, form: list[tuple[str, str]]
) -> ParsedReport:
    """Every check a report must pass, before anything is written."""
    if who.key is None:
        raise InvalidApiKey("An api_key is required to post service requests.")
    for param, text in form:
        if _CONTROL.search(text):
            raise BadRequest(f"{param[:100]} contains control characters.")
    code = _one(form, "service_code")
    if code is None:
        raise BadRequest("service_code is required.")
    service = await repository.service_by_code(session, who.organisation_id, code[:100])
    if service is None or not service.active:
        raise BadRequest(f"service_code {code[:100]!r} is not a service of this jurisdiction.")
    lat_s, lon_s = _one(form, "lat"), _one(form, "long")
    if lat_s is None or lon_s is None:
        if _one(form, "address_string") or _one(form, "address_id"):
            raise BadRequest(
                "lat and long are required: this server does not geocode address_string."
            )
        raise BadRequest("A location is required: lat and long.")
    try:
        lon, lat = check_position(float(lon_s), float(lat_s), "lat/long")
    except ValueError as exc:
        message = exc.message if isinstance(exc, GeoError) else "lat and long are numbers."
        raise BadRequest(message) from exc
    description = _one(form, "description") or ""
    if len(description) > settings.open311_description_max_chars:
        raise BadRequest(
            f"description is longer than {settings.open311_description_max_chars} characters."
        )
    fields: dict[str, str | None] = {}
    for name, limit in FIELD_LIMITS.items():
        value = _one(form, name)
        if value is not None and len(value) > limit:
            raise BadRequest(f"{name} is longer than {limit} characters.")
        fields[name] = value
    if fields["media_url"] is not None:
        _check_media_url(fields["media_url"])
    if fields["email"] is not None and "@" not in fields["email"]:
        raise BadRequest("email is not an e-mail address.")
    attributes = _check_attributes(service, _attribute_answers(form))
    device_id = None
    raw_device = _one(form, "device_id")
    if raw_device is not None:
        try:
            candidate = uuid.UUID(raw_device)
        except ValueError:
            candidate = None  # some other app's device identifier: nothing to push to
        if candidate is not None and await repository.device_in_org(
            session, who.organisation_id, candidate
        ):
            device_id = candidate
    return ParsedReport(service, lon, lat, description, attributes, fields, device_id)


async def _place_for(
    session: AsyncSession, settings: Settings, org: uuid.UUID, p: ParsedReport, now: datetime
) -> uuid.UUID:
    place = await repository.nearest_place(
        session,
        org,
        list(p.service.place_categories),
        p.lon,
        p.lat,
        within_m=p.service.match_within_m,
        at=now,
    )
    if place is not None:
        return place[0]
    body = GeofenceCreate(
        type="Feature",
        geometry={"type": "Point", "coordinates": [p.lon, p.lat]},
        properties=GeofenceProperties(
            name=f"{p.service.name} report"[:200],
            category="report",
            radius_m=settings.open311_adhoc_radius_m,
            tags=["open311"],
            metadata={"open311_service_code": p.service.code},
        ),
    )
    return (await geofence_service.create_geofence(session, settings, org, body)).id


async def _task_for(
    session: AsyncSession, org: uuid.UUID, p: ParsedReport, geofence_id: uuid.UUID, now: datetime
) -> Task:
    s = p.service
    lines = [p.description] if p.description else []
    if p.fields["address_string"]:
        lines.append(f"Address: {p.fields['address_string']}")
    lines += [f"{k}: {v if isinstance(v, str) else ', '.join(v)}" for k, v in p.attributes.items()]
    data = TaskCreate(
        title=f"{s.task_title}"[:200],
        description="\n".join(lines)[:4000],
        geofence_id=geofence_id,
        assignee_ids=list(s.assignee_ids),
        priority=Priority(s.task_priority),
        due_at=now + timedelta(seconds=s.task_due_s) if s.task_due_s else None,
        requires_visit=s.requires_visit,
        expected_duration_min=s.task_expected_duration_min,
        note=f"Open311 report ({s.code})",
    )
    try:
        return await task_service.create_task_for(session, org, None, data)
    except UnknownAssignee:
        # a named team member left since the service was set up: the pool gets it instead
        data.assignee_ids = []
        return await task_service.create_task_for(session, org, None, data)


async def create_report(
    session: AsyncSession,
    settings: Settings,
    who: Caller,
    form: list[tuple[str, str]],
    now: datetime | None = None,
) -> dict[str, Any]:
    """POST requests: check everything, then file the report as a task (or attach it to the
    open original it duplicates) and tell nearby field workers. Returns the spec's answer."""
    p = await parse_report(session, settings, who, form)
    now = now or utcnow()
    org = who.organisation_id
    await repository.lock_service(session, p.service.id)
    original = await repository.find_original(
        session,
        org,
        p.service.id,
        p.lon,
        p.lat,
        within_m=settings.open311_duplicate_radius_m,
        since=now - timedelta(hours=settings.open311_duplicate_window_h),
    )
    report = Open311Request(
        id=uuid.uuid4(),
        organisation_id=org,
        service_id=p.service.id,
        api_key_id=who.key.id if who.key is not None else None,
        token=secrets.token_urlsafe(18),
        lat=p.lat,
        lon=p.lon,
        address_string=p.fields["address_string"],
        address_id=p.fields["address_id"],
        description=p.description,
        media_url=p.fields["media_url"],  # stored, never fetched by this server
        attributes=p.attributes,
        email=p.fields["email"],
        first_name=p.fields["first_name"],
        last_name=p.fields["last_name"],
        phone=p.fields["phone"],
        account_id=p.fields["account_id"],
        device_id=p.device_id,
        requested_at=now,
        updated_at=now,
    )
    task: Task | None = None
    if original is not None:
        report.duplicate_of = original.id
        report.task_id = original.task_id
        report.geofence_id = original.geofence_id
        notice = (
            f"Duplicate of service request {original.id}, reported nearby in the last "
            f"{settings.open311_duplicate_window_h:g} hours: attached to it."
        )
    else:
        geofence_id = await _place_for(session, settings, org, p, now)
        task = await _task_for(session, org, p, geofence_id, now)
        report.task_id = task.id
        report.geofence_id = geofence_id
        notice = ""
    await repository.add(session, report)
    if task is not None:
        await _tell_nearby_workers(session, settings, report, p.service, task, now)
    # the event other systems hear about (webhooks): no contact fields, text or exact position
    await events_service.record(
        session,
        [
            Event(
                id=uuid.uuid4(),
                organisation_id=org,
                type=EventType.report_created,
                source=Source.report,
                occurred_at=now,
                subject=None
                if report.device_id is None
                else SubjectRef("device", report.device_id, org),
                geofence_id=report.geofence_id,
                data={
                    "service_request_id": str(report.id),
                    "service_code": p.service.code,
                    "task_id": None if report.task_id is None else str(report.task_id),
                    "duplicate_of": None
                    if report.duplicate_of is None
                    else str(report.duplicate_of),
                },
            )
        ],
        settings,
    )
    return {
        "service_request_id": str(report.id),
        "token": report.token,
        "service_notice": notice,
        "account_id": report.account_id or "",
    }


async def _tell_nearby_workers(
    session: AsyncSession,
    settings: Settings,
    report: Open311Request,
    service: Open311Service,
    task: Task,
    now: datetime,
) -> None:
    """Field workers who may see the new task and whose last fix is near get a push (unless off
    shift, as the rules decide for tasks: docs/rules.md); the rest learn of it as they pass."""
    near = await repository.workers_near(
        session,
        report.organisation_id,
        report.lon,
        report.lat,
        settings.open311_notify_workers_within_m,
        now - timedelta(seconds=settings.open311_notify_fix_max_age_s),
    )
    team = set(task.assignee_ids)
    near = [(w, d) for w, d in near if not team or w in team]
    if not near:
        return
    # only workers who may be located now (on shift, window or ad-hoc, and not paused): the
    # last fix of one who is not is not used at all
    located = await shifts_service.located_now(session, settings, [w for w, _ in near], now)
    near = [(w, d) for w, d in near if w in located]
    items = []
    for worker, distance in near:
        items.append(
            notifications_service.Outgoing(
                recipient=Recipient("staff", worker, report.organisation_id),
                payload=NotificationPayload(
                    title=f"A new {service.name.lower()} report {round(distance)} m from you"[:200],
                    body=(report.description or task.title)[:200],
                    url=f"/tasks/{task.id}",
                    tag=f"task-{task.id}",
                    kind="task",
                    data={
                        "task_id": str(task.id),
                        "geofence_id": str(task.geofence_id),
                        "service_request_id": str(report.id),
                        "distance_m": round(distance),
                    },
                ),
                related={
                    "task_id": task.id,
                    "geofence_id": task.geofence_id,
                    "open311_request_id": report.id,
                },
                decision="send",
                urgency=Urgency.high,
            )
        )
    await notifications_service.enqueue_many(session, items, settings)


# --- status flows back -----------------------------------------------------------------------


async def on_task_transition(
    session: AsyncSession, task: Task, from_status: str | None, to_status: str, note: str | None
) -> None:
    """A transition that changes a report's Open311 status pushes to the reporter's device."""
    if from_status is None or open311_status(from_status) == open311_status(to_status):
        return
    status = open311_status(to_status)
    reports = await repository.reports_of_task(session, task.id)
    items = [
        notifications_service.Outgoing(
            recipient=Recipient("device", r.device_id, r.organisation_id),
            payload=NotificationPayload(
                title=f"Your report is {status}",
                body=(note or task.title)[:200],
                tag=f"open311-{r.id}",
                kind="report",
                data={"service_request_id": str(r.id), "status": status},
            ),
            related={"open311_request_id": r.id, "task_id": task.id},
        )
        for r in reports
        if r.device_id is not None
    ]
    if items:
        await notifications_service.enqueue_many(session, items, _settings or get_settings())


_settings: Settings | None = None


def register(settings: Settings) -> None:
    """Follow task transitions (called by the app factory)."""
    global _settings
    _settings = settings
    task_service.register_transition_hook(on_task_transition)


# --- privacy ---------------------------------------------------------------------------------


async def export_device(session: AsyncSession, device_id: uuid.UUID) -> list[dict[str, Any]]:
    return await repository.export_for_device(session, device_id)


async def erase_device(session: AsyncSession, device_id: uuid.UUID) -> int:
    return await repository.erase_device(session, device_id)


async def purge(session: AsyncSession, settings: Settings, now: datetime) -> int:
    """Closed reports older than `OPEN311_CLOSED_EXACT_DAYS`: location rounded, contact gone."""
    cutoff = now - timedelta(days=settings.open311_closed_exact_days)
    return await repository.round_closed_locations(session, cutoff, ROUND_DECIMALS)
