"""All Open311 SQL. Every query filters on the organisation.

Deliberate exceptions (read-only, like `app/rules/repository.py`): `nearest_place` reads
`geofences` (nearest live place of some categories, ordered by geodesic distance, which the
geofences list cannot do), `report_rows` reads `tasks` / `task_transitions` (a report's status is
its task's), `workers_near` reads `presence_subjects` and `staff_users` (field workers whose last
fix is near a new report), and `organisation_id_by_slug` / `device_in_org` read `accounts`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from geoalchemy2 import Geography
from sqlalchemy import Numeric, and_, cast, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Device, Organisation, Role, StaffUser
from app.geofences.models import Geofence
from app.geofences.predicates import active_at
from app.open311.models import Open311ApiKey, Open311Request, Open311Service, Open311Settings
from app.tasks.models import CLOSED_TASK_STATUSES, Task, TaskTransition

_tasks = Task.__table__


def _geog(lon: Any, lat: Any) -> Any:
    return cast(func.ST_SetSRID(func.ST_MakePoint(lon, lat), 4326), Geography(srid=4326))


# --- organisation, settings, keys ------------------------------------------------------------


async def organisation_id_by_slug(session: AsyncSession, slug: str) -> uuid.UUID | None:
    row = await session.execute(select(Organisation.id).where(Organisation.slug == slug))
    return row.scalar_one_or_none()


async def only_organisation(session: AsyncSession) -> uuid.UUID | None:
    """The organisation of a single-council installation (None when there are several)."""
    rows = (await session.execute(select(Organisation.id).limit(2))).scalars().all()
    return rows[0] if len(rows) == 1 else None


async def field_workers_in(
    session: AsyncSession, organisation_id: uuid.UUID, ids: list[uuid.UUID]
) -> set[uuid.UUID]:
    rows = await session.execute(
        select(StaffUser.id).where(
            StaffUser.id.in_(ids),
            StaffUser.organisation_id == organisation_id,
            StaffUser.role == Role.field_worker,
            StaffUser.is_active.is_(True),
        )
    )
    return set(rows.scalars())


async def organisation_slug(session: AsyncSession, organisation_id: uuid.UUID) -> str:
    row = await session.execute(select(Organisation.slug).where(Organisation.id == organisation_id))
    return row.scalar_one()


async def device_in_org(
    session: AsyncSession, organisation_id: uuid.UUID, device_id: uuid.UUID
) -> bool:
    row = await session.execute(
        select(Device.id).where(Device.id == device_id, Device.organisation_id == organisation_id)
    )
    return row.scalar_one_or_none() is not None


async def get_settings(session: AsyncSession, organisation_id: uuid.UUID) -> Open311Settings | None:
    return await session.get(Open311Settings, organisation_id)


async def add(session: AsyncSession, row: Any) -> None:
    session.add(row)
    await session.flush()


async def key_by_hash(session: AsyncSession, key_hash: str) -> Open311ApiKey | None:
    row = await session.execute(
        select(Open311ApiKey).where(
            Open311ApiKey.key_hash == key_hash, Open311ApiKey.revoked_at.is_(None)
        )
    )
    return row.scalar_one_or_none()


async def list_keys(session: AsyncSession, organisation_id: uuid.UUID) -> Sequence[Open311ApiKey]:
    rows = await session.execute(
        select(Open311ApiKey)
        .where(Open311ApiKey.organisation_id == organisation_id)
        .order_by(Open311ApiKey.created_at, Open311ApiKey.id)
    )
    return rows.scalars().all()


async def get_key(
    session: AsyncSession, organisation_id: uuid.UUID, key_id: uuid.UUID
) -> Open311ApiKey | None:
    row = await session.execute(
        select(Open311ApiKey).where(
            Open311ApiKey.id == key_id, Open311ApiKey.organisation_id == organisation_id
        )
    )
    return row.scalar_one_or_none()


# --- services --------------------------------------------------------------------------------


async def list_services(
    session: AsyncSession, organisation_id: uuid.UUID, *, active_only: bool
) -> Sequence[Open311Service]:
    stmt = select(Open311Service).where(Open311Service.organisation_id == organisation_id)
    if active_only:
        stmt = stmt.where(Open311Service.active.is_(True))
    rows = await session.execute(stmt.order_by(Open311Service.code))
    return rows.scalars().all()


async def service_by_code(
    session: AsyncSession, organisation_id: uuid.UUID, code: str
) -> Open311Service | None:
    row = await session.execute(
        select(Open311Service).where(
            Open311Service.organisation_id == organisation_id, Open311Service.code == code
        )
    )
    return row.scalar_one_or_none()


# --- reports ---------------------------------------------------------------------------------


async def lock_service(session: AsyncSession, service_id: uuid.UUID) -> None:
    """Serialise reports of one service, so two reports of the same spot at once are one
    original and one duplicate (a transaction-scoped advisory lock)."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 311))"),
        {"k": str(service_id)},
    )


async def find_original(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    service_id: uuid.UUID,
    lon: float,
    lat: float,
    *,
    within_m: float,
    since: datetime,
) -> Open311Request | None:
    """The nearest open original report of the service within the distance and time."""
    point = _geog(lon, lat)
    dist = func.ST_Distance(_geog(Open311Request.lon, Open311Request.lat), point)
    stmt = (
        select(Open311Request)
        .outerjoin(_tasks, _tasks.c.id == Open311Request.task_id)
        .where(
            Open311Request.organisation_id == organisation_id,
            Open311Request.service_id == service_id,
            Open311Request.duplicate_of.is_(None),
            Open311Request.requested_at >= since,
            Open311Request.location_rounded.is_(False),
            _tasks.c.status.not_in(CLOSED_TASK_STATUSES),
            func.ST_DWithin(_geog(Open311Request.lon, Open311Request.lat), point, within_m),
        )
        .order_by(dist, Open311Request.requested_at)
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def nearest_place(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    categories: list[str],
    lon: float,
    lat: float,
    *,
    within_m: float,
    at: datetime,
) -> tuple[uuid.UUID, str, float] | None:
    """(id, name, metres) of the nearest live, active place of the categories within reach."""
    if not categories:
        return None
    point = _geog(lon, lat)
    dist = func.ST_Distance(Geofence.geog, point)
    stmt = (
        select(Geofence.id, Geofence.name, dist.label("d"))
        .where(
            Geofence.organisation_id == organisation_id,
            Geofence.deleted_at.is_(None),
            Geofence.category.in_(categories),
            active_at(Geofence.active_from, Geofence.active_until, at),
            func.ST_DWithin(Geofence.geog, point, within_m),
        )
        .order_by(dist, Geofence.id)
        .limit(1)
    )
    row = (await session.execute(stmt)).first()
    return None if row is None else (row.id, row.name, float(row.d))


@dataclass(frozen=True)
class ReportFilters:
    ids: list[uuid.UUID] | None = None
    service_codes: list[str] | None = None
    start: datetime | None = None
    end: datetime | None = None
    statuses: list[str] | None = None  # "open" / "closed"
    token: str | None = None
    device_id: uuid.UUID | None = None
    limit: int = 1000


_LAST_NOTE = (
    select(TaskTransition.note)
    .where(TaskTransition.task_id == Open311Request.task_id, TaskTransition.note.is_not(None))
    .order_by(TaskTransition.at.desc(), TaskTransition.id.desc())
    .limit(1)
    .correlate(Open311Request)
    .scalar_subquery()
)
_LAST_AT = (
    select(func.max(TaskTransition.at))
    .where(TaskTransition.task_id == Open311Request.task_id)
    .correlate(Open311Request)
    .scalar_subquery()
)


async def report_rows(
    session: AsyncSession, organisation_id: uuid.UUID, f: ReportFilters
) -> list[dict[str, Any]]:
    """Reports with their service and their task's status, last note and last change."""
    closed = _tasks.c.status.in_(CLOSED_TASK_STATUSES)
    stmt = (
        select(
            Open311Request,
            Open311Service.code.label("service_code"),
            Open311Service.name.label("service_name"),
            _tasks.c.status.label("task_status"),
            _tasks.c.due_at.label("due_at"),
            _LAST_NOTE.label("status_notes"),
            func.greatest(Open311Request.updated_at, _LAST_AT).label("updated_datetime"),
        )
        .join(Open311Service, Open311Service.id == Open311Request.service_id)
        .outerjoin(_tasks, _tasks.c.id == Open311Request.task_id)
        .where(Open311Request.organisation_id == organisation_id)
    )
    if f.ids is not None:
        stmt = stmt.where(Open311Request.id.in_(f.ids))
    if f.token is not None:
        stmt = stmt.where(Open311Request.token == f.token)
    if f.device_id is not None:
        stmt = stmt.where(Open311Request.device_id == f.device_id)
    if f.service_codes:
        stmt = stmt.where(Open311Service.code.in_(f.service_codes))
    if f.start is not None:
        stmt = stmt.where(Open311Request.requested_at >= f.start)
    if f.end is not None:
        stmt = stmt.where(Open311Request.requested_at <= f.end)
    if f.statuses:
        want_open = "open" in f.statuses
        want_closed = "closed" in f.statuses
        if want_open and not want_closed:
            stmt = stmt.where(or_(_tasks.c.status.is_(None), ~closed))
        elif want_closed and not want_open:
            stmt = stmt.where(closed)
    stmt = stmt.order_by(Open311Request.requested_at.desc(), Open311Request.id).limit(f.limit)
    out = []
    for row in (await session.execute(stmt)).all():
        r: Open311Request = row[0]
        out.append(
            {
                "report": r,
                "service_code": row.service_code,
                "service_name": row.service_name,
                "task_status": row.task_status,
                "due_at": row.due_at,
                "status_notes": row.status_notes,
                "updated_datetime": row.updated_datetime,
            }
        )
    return out


async def reports_of_task(session: AsyncSession, task_id: uuid.UUID) -> Sequence[Open311Request]:
    rows = await session.execute(select(Open311Request).where(Open311Request.task_id == task_id))
    return rows.scalars().all()


# --- nearby field workers --------------------------------------------------------------------


async def workers_near(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    lon: float,
    lat: float,
    within_m: float,
    fixed_since: datetime,
) -> list[tuple[uuid.UUID, float]]:
    """(staff id, metres) of active field workers whose last fix is recent and within reach."""
    rows = await session.execute(
        text(
            """
            SELECT s.subject_id AS id,
                   ST_Distance(ST_SetSRID(ST_MakePoint(s.last_lon, s.last_lat), 4326)::geography,
                               ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography) AS d
              FROM presence_subjects s
              JOIN staff_users u ON u.id = s.subject_id AND u.organisation_id = s.organisation_id
             WHERE s.organisation_id = :org AND s.subject_kind = 'staff'
               AND u.role = :role AND u.is_active
               AND s.last_fix_at >= :since AND s.last_lon IS NOT NULL
               AND ST_DWithin(ST_SetSRID(ST_MakePoint(s.last_lon, s.last_lat), 4326)::geography,
                              ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography, :within)
             ORDER BY d, s.subject_id
            """
        ),
        {
            "org": organisation_id,
            "role": Role.field_worker.value,
            "since": fixed_since,
            "lon": lon,
            "lat": lat,
            "within": within_m,
        },
    )
    return [(r.id, float(r.d)) for r in rows]


# --- privacy ---------------------------------------------------------------------------------


async def round_closed_locations(
    session: AsyncSession, closed_before: datetime, places: int
) -> int:
    """Round the location of reports whose task closed before the cutoff, and drop their
    contact fields; returns how many reports changed."""
    last_at = (
        select(func.max(TaskTransition.at))
        .where(TaskTransition.task_id == Open311Request.task_id)
        .correlate(Open311Request)
        .scalar_subquery()
    )
    closed_task = (
        select(_tasks.c.id)
        .where(
            _tasks.c.id == Open311Request.task_id,
            _tasks.c.status.in_(CLOSED_TASK_STATUSES),
        )
        .correlate(Open311Request)
        .exists()
    )
    stmt = (
        update(Open311Request)
        .where(
            Open311Request.location_rounded.is_(False),
            or_(
                and_(closed_task, last_at < closed_before),
                # a report whose task was deleted is closed since its last update
                and_(Open311Request.task_id.is_(None), Open311Request.updated_at < closed_before),
            ),
        )
        .values(
            lat=func.round(cast(Open311Request.lat, _numeric()), places),
            lon=func.round(cast(Open311Request.lon, _numeric()), places),
            location_rounded=True,
            email=None,
            first_name=None,
            last_name=None,
            phone=None,
            account_id=None,
            device_id=None,
        )
        .execution_options(synchronize_session=False)
    )
    result = await session.execute(stmt)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _numeric() -> Any:
    return Numeric()


async def export_for_device(session: AsyncSession, device_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await session.execute(
        select(Open311Request, Open311Service.code)
        .join(Open311Service, Open311Service.id == Open311Request.service_id)
        .where(Open311Request.device_id == device_id)
        .order_by(Open311Request.requested_at)
    )
    out = []
    for r, code in rows.all():
        out.append(
            {
                "service_request_id": str(r.id),
                "service_code": code,
                "lon": r.lon,
                "lat": r.lat,
                "address_string": r.address_string,
                "description": r.description,
                "media_url": r.media_url,
                "attributes": r.attributes,
                "email": r.email,
                "first_name": r.first_name,
                "last_name": r.last_name,
                "phone": r.phone,
                "account_id": r.account_id,
                "requested_at": r.requested_at.isoformat(),
            }
        )
    return out


async def erase_device(session: AsyncSession, device_id: uuid.UUID) -> int:
    """Cut a device's reports loose from it and drop their contact fields."""
    result = await session.execute(
        update(Open311Request)
        .where(Open311Request.device_id == device_id)
        .values(
            device_id=None,
            email=None,
            first_name=None,
            last_name=None,
            phone=None,
            account_id=None,
        )
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
