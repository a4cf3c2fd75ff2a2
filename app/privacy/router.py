"""Subject rights: a resident's export and erasure, and the same for staff on request."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from app.accounts.dependencies import AdminUser, CurrentDevice, CurrentStaff, forget_device_token
from app.audit import service as audit_service
from app.core.db import Session
from app.core.deps import AppSettings
from app.privacy import repository, service
from app.privacy.dependencies import ManagedDevice
from app.privacy.errors import DeviceNotFound
from app.privacy.schemas import StaffExport, SubjectExport

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


@router.get("/me/staff-export", response_model=StaffExport)
async def export_my_work(
    session: Session, settings: AppSettings, staff: CurrentStaff
) -> StaffExport:
    """Staff: everything held about you at work, with your shifts, pauses and location history."""
    return await service.export_staff(session, settings, staff.id)


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
