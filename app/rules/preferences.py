"""The preferences API: read and change one's notification settings, and field workers' shifts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Role
from app.accounts.principal import Principal
from app.core.config import Settings
from app.core.errors import Forbidden, NotFound
from app.core.subject import SubjectRef
from app.presence import service as presence_service
from app.rules import repository
from app.rules.models import NotificationPreference
from app.rules.schemas import PreferencesUpdate, ShiftWindow
from app.rules.windows import Prefs, effective_prefs, on_shift


async def _row_for(
    session: AsyncSession, settings: Settings, who: SubjectRef, create: bool
) -> NotificationPreference | None:
    row = (await repository.preferences_of(session, [who.id])).get(who.id)
    if row is None and create:
        d = effective_prefs(settings, who.kind, None)
        row = NotificationPreference(
            organisation_id=who.organisation_id,
            device_id=who.device_id,
            staff_user_id=who.staff_user_id,
            time_zone=d.time_zone,
            quiet_start=d.quiet_start,
            quiet_end=d.quiet_end,
            opted_out_categories=[],
            max_per_day=d.max_per_day,
        )
        await repository.add(session, row)
    return row


async def read_preferences(
    session: AsyncSession, settings: Settings, principal: Principal, now: datetime | None = None
) -> dict[str, Any]:
    row = await _row_for(session, settings, principal, False)
    p = effective_prefs(settings, principal.kind, row)
    background = (
        await presence_service.background_location_enabled(session, principal.id)
        if principal.kind == "device"
        else None
    )
    worker = principal.role is Role.field_worker
    shift = _shift_read(p)
    return {
        "time_zone": p.time_zone,
        "quiet_hours": (
            {"start": f"{p.quiet_start:%H:%M}", "end": f"{p.quiet_end:%H:%M}"}
            if p.quiet_start is not None and p.quiet_end is not None
            else None
        ),
        "categories_opted_out": sorted(p.opted_out),
        "max_per_day": p.max_per_day,
        "background_location": background,
        "on_shift": shift,
        "on_shift_now": on_shift(p, now or datetime.now(UTC)) if worker else None,
    }


def _shift_read(p: Prefs) -> dict[str, Any] | None:
    if p.shift_start is None or p.shift_end is None:
        return None
    return {
        "start": f"{p.shift_start:%H:%M}",
        "end": f"{p.shift_end:%H:%M}",
        "days": list(p.shift_days) if p.shift_days else None,
        "time_zone": p.time_zone,
    }


def _apply_shift(row: NotificationPreference, shift: ShiftWindow | None) -> None:
    row.shift_start = shift.start if shift else None
    row.shift_end = shift.end if shift else None
    row.shift_days = shift.days if shift else None
    if shift is not None and shift.time_zone is not None:
        row.time_zone = shift.time_zone


async def update_preferences(
    session: AsyncSession, settings: Settings, principal: Principal, body: PreferencesUpdate
) -> dict[str, Any]:
    fields = body.model_fields_set
    if "on_shift" in fields and principal.role is not Role.field_worker:
        raise Forbidden("Only field workers have a shift.")
    if "background_location" in fields and principal.kind != "device":
        raise Forbidden("Background location is a resident device setting.")
    row = await _row_for(session, settings, principal, True)
    assert row is not None
    if "time_zone" in fields and body.time_zone is not None:
        row.time_zone = body.time_zone
    if "quiet_hours" in fields:
        row.quiet_start = body.quiet_hours.start if body.quiet_hours else None
        row.quiet_end = body.quiet_hours.end if body.quiet_hours else None
    if "categories_opted_out" in fields:
        row.opted_out_categories = body.categories_opted_out or []
    if "max_per_day" in fields:
        row.max_per_day = body.max_per_day
    if "on_shift" in fields:
        _apply_shift(row, body.on_shift)
    row.updated_at = datetime.now(UTC)
    await session.flush()
    if "background_location" in fields and body.background_location is not None:
        await presence_service.set_background_location(
            session, principal.id, body.background_location
        )
    return await read_preferences(session, settings, principal)


async def set_shift(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    staff_id: uuid.UUID,
    shift: ShiftWindow | None,
) -> dict[str, Any]:
    """A field worker sets their own shift; admins and editors anyone's in their organisation."""
    target = await repository.staff_in_org(session, principal.organisation_id, staff_id)
    if target is None:
        raise NotFound("No such staff user.")
    manager = principal.role in (Role.admin, Role.editor)
    if not manager and staff_id != principal.id:
        raise Forbidden("Field workers set only their own shift.")
    if target.role != Role.field_worker.value:
        raise NotFound("No such field worker.")
    staff = SubjectRef("staff", staff_id, principal.organisation_id)
    row = await _row_for(session, settings, staff, True)
    assert row is not None
    _apply_shift(row, shift)
    row.updated_at = datetime.now(UTC)
    await session.flush()
    p = effective_prefs(settings, "staff", row)
    return {
        "staff_user_id": staff_id,
        "on_shift": _shift_read(p),
        "time_zone": row.time_zone,
        "on_shift_now": on_shift(p, datetime.now(UTC)),
    }
