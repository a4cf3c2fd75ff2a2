"""Subject rights: a resident's export and erasure (also by admins on request), and a staff
member's: their own export, and export and erasure by an admin."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from app.accounts.dependencies import AdminUser, CurrentDevice, CurrentStaff, forget_device_token
from app.audit import service as audit_service
from app.core.db import Session
from app.core.deps import AppSettings
from app.privacy import repository, service
from app.privacy.dependencies import ManagedDevice, ManagedStaff
from app.privacy.errors import CannotEraseSelf, DeviceNotFound, StaffNotFound
from app.privacy.schemas import StaffErased, StaffExport, SubjectExport

router = APIRouter(prefix="/v1", tags=["privacy"])


@router.get("/me/export", response_model=SubjectExport)
async def export_me(
    session: Session, settings: AppSettings, device: CurrentDevice
) -> SubjectExport:
    """Everything held about the calling device (GeoJSON where spatial)."""
    found = await repository.device_in_org(session, device.organisation_id, device.id)
    if found is None:  # erased in a concurrent request
        raise DeviceNotFound()
    return await service.export_device(session, settings, found)


@router.delete("/me", status_code=status.HTTP_204_NO_CONTENT)
async def erase_me(request: Request, session: Session, device: CurrentDevice) -> Response:
    """Erase the calling device and everything about it; its token stops working."""
    forget_device_token(request, device.id)
    await service.erase_device(session, device.organisation_id, device.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/devices/{device_id}/export", response_model=SubjectExport)
async def export_device(
    session: Session, settings: AppSettings, admin: AdminUser, device: ManagedDevice
) -> SubjectExport:
    """Admin, on a resident's request: everything held about one device (audited)."""
    await audit_service.record(session, admin, "device.export", "device", device["id"])
    return await service.export_device(session, settings, device)


@router.delete("/devices/{device_id}", status_code=status.HTTP_204_NO_CONTENT)
async def erase_device(
    request: Request, session: Session, admin: AdminUser, device: ManagedDevice
) -> Response:
    """Admin, on a resident's request: erase one device everywhere (audited)."""
    forget_device_token(request, device["id"])
    await service.erase_device(session, admin.organisation_id, device["id"])
    await audit_service.record(session, admin, "device.erase", "device", device["id"])
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# Staff members (docs/privacy.md, "Staff members"). `/users/me/export` is declared before
# `/users/{user_id}/export` so "me" is never read as an id.
@router.get("/users/me/export", response_model=StaffExport)
async def export_my_staff_data(
    session: Session, settings: AppSettings, staff: CurrentStaff
) -> StaffExport:
    """Staff: everything held about the caller: shifts and pauses, location history, completion
    photos included."""
    found = await repository.staff_in_org(session, staff.organisation_id, staff.id)
    if found is None:
        raise StaffNotFound()
    return await service.export_staff(session, settings, found)


@router.get("/users/{user_id}/export", response_model=StaffExport)
async def export_staff(
    session: Session, settings: AppSettings, admin: AdminUser, staff: ManagedStaff
) -> StaffExport:
    """Admin, on a staff member's request: everything held about them (audited)."""
    await audit_service.record(session, admin, "user.export", "user", staff["id"])
    return await service.export_staff(session, settings, staff)


@router.post("/users/{user_id}/erase", response_model=StaffErased)
async def erase_staff(session: Session, admin: AdminUser, staff: ManagedStaff) -> StaffErased:
    """Admin: erase a staff member's personal data; their work stays under an anonymised,
    deactivated account whose sessions end at once (audited)."""
    if staff["id"] == admin.id:
        raise CannotEraseSelf("Another administrator must erase your account.")
    erased = await service.erase_staff(session, admin.organisation_id, staff["id"])
    await audit_service.record(
        session,
        admin,
        "user.erase",
        "user",
        staff["id"],
        {"checkins_aggregated": erased.checkins_aggregated, "photos": erased.photos_deleted},
    )
    return erased
