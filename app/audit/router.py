from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from app.accounts.dependencies import AdminUser
from app.audit import service
from app.audit.schemas import AuditEntryRead
from app.core.db import Session
from app.core.pagination import Page, Pagination
from app.core.types import BoundedDatetime

router = APIRouter(prefix="/v1", tags=["audit"])


@router.get("/audit", response_model=Page[AuditEntryRead])
async def list_audit(
    session: Session,
    admin: AdminUser,
    page: Pagination,
    entity_type: Annotated[str | None, Query(max_length=32)] = None,
    entity_id: Annotated[uuid.UUID | None, Query()] = None,
    actor_id: Annotated[uuid.UUID | None, Query()] = None,
    since: Annotated[BoundedDatetime | None, Query()] = None,
) -> Page[AuditEntryRead]:
    """Admin: who changed what in this organisation, newest first."""
    rows, next_cursor = await service.list_entries(
        session,
        admin.organisation_id,
        page,
        entity_type=entity_type,
        entity_id=entity_id,
        actor_id=actor_id,
        since=since,
    )
    return Page[AuditEntryRead](
        items=[AuditEntryRead.model_validate(r) for r in rows], next_cursor=next_cursor
    )
