"""`record(...)` is called by every router that changes organisation data on a staff request.

The audit log sits below the other domains: it imports none of them. Its reader, the admin's
`GET /v1/audit`, is served by `app.accounts.router` with the other admin endpoints.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import repository
from app.audit.models import AuditEntry
from app.core.pagination import PageParams, trim_page


class Actor(Protocol):
    """Who made a change (`app.accounts.principal.Principal` is one)."""

    @property
    def organisation_id(self) -> uuid.UUID: ...
    @property
    def id(self) -> uuid.UUID: ...
    @property
    def email(self) -> str | None: ...


async def record(
    session: AsyncSession,
    principal: Actor,
    action: str,
    entity_type: str,
    entity_id: uuid.UUID | None,
    details: dict[str, Any] | None = None,
) -> None:
    """Add an audit entry in the caller's transaction (so it exists iff the change committed)."""
    await repository.add(
        session,
        AuditEntry(
            organisation_id=principal.organisation_id,
            actor_id=principal.id,
            actor_email=principal.email,
            action=action,
            entity_type=entity_type,
            entity_id=entity_id,
            details=details or {},
            at=datetime.now(UTC),
        ),
    )


async def record_system(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    action: str,
    entity_type: str,
    entity_id: uuid.UUID | None,
    details: dict[str, Any] | None = None,
) -> None:
    """An entry for something the server did by itself (a scheduled job): no actor."""
    await repository.add(
        session,
        AuditEntry(
            organisation_id=organisation_id,
            actor_id=None,
            actor_email=None,
            action=action,
            entity_type=entity_type,
            entity_id=entity_id,
            details=details or {},
            at=datetime.now(UTC),
        ),
    )


async def list_entries(
    session: AsyncSession, organisation_id: uuid.UUID, page: PageParams, **filters: Any
) -> tuple[list[AuditEntry], str | None]:
    rows = await repository.list_entries(session, organisation_id, page, **filters)
    return trim_page(rows, page, "at")
