"""Webhook endpoints for organisation admins: register, test, read the log, replay."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from app.accounts.dependencies import AdminUser
from app.audit import service as audit_service
from app.core.db import Session
from app.core.deps import AppSettings
from app.core.types import BoundedAwareDatetime
from app.webhooks import service
from app.webhooks.schemas import (
    AttemptRead,
    EndpointCreate,
    EndpointCreated,
    EndpointRead,
    EndpointUpdate,
    MessageRead,
    Replayed,
    ReplayRequest,
    SecretRotated,
)

router = APIRouter(prefix="/v1/webhooks/endpoints", tags=["webhooks"])
Limit = Annotated[int, Query(ge=1, le=200)]
Before = Annotated[BoundedAwareDatetime | None, Query(description="older than this")]


@router.post("", response_model=EndpointCreated, status_code=status.HTTP_201_CREATED)
async def create_endpoint(
    session: Session, settings: AppSettings, admin: AdminUser, body: EndpointCreate
) -> EndpointCreated:
    """Admin: register an endpoint; the answer holds its signing secret, shown only this once."""
    endpoint, secret = await service.create_endpoint(session, settings, admin, body)
    await audit_service.record(
        session, admin, "webhook.create", "webhook_endpoint", endpoint.id, {"url": endpoint.url}
    )
    read = EndpointRead.model_validate(endpoint)
    return EndpointCreated(**read.model_dump(), secret=secret)


@router.get("", response_model=list[EndpointRead])
async def list_endpoints(session: Session, admin: AdminUser) -> list[EndpointRead]:
    """Admin: the organisation's endpoints (disabled ones carry `disabled_reason`)."""
    rows = await service.list_endpoints(session, admin.organisation_id)
    return [EndpointRead.model_validate(r) for r in rows]


@router.get("/{endpoint_id}", response_model=EndpointRead)
async def get_endpoint(session: Session, admin: AdminUser, endpoint_id: uuid.UUID) -> EndpointRead:
    """Admin: one endpoint."""
    return EndpointRead.model_validate(
        await service.get_endpoint(session, admin.organisation_id, endpoint_id)
    )


@router.patch("/{endpoint_id}", response_model=EndpointRead)
async def update_endpoint(
    session: Session, admin: AdminUser, endpoint_id: uuid.UUID, body: EndpointUpdate
) -> EndpointRead:
    """Admin: change types or filters; `enabled: true` re-enables a disabled endpoint."""
    endpoint = await service.update_endpoint(session, admin.organisation_id, endpoint_id, body)
    await audit_service.record(
        session,
        admin,
        "webhook.update",
        "webhook_endpoint",
        endpoint.id,
        body.model_dump(mode="json", exclude_unset=True),
    )
    return EndpointRead.model_validate(endpoint)


@router.delete("/{endpoint_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_endpoint(session: Session, admin: AdminUser, endpoint_id: uuid.UUID) -> Response:
    """Admin: delete an endpoint, its pending messages and its log."""
    await service.delete_endpoint(session, admin.organisation_id, endpoint_id)
    await audit_service.record(session, admin, "webhook.delete", "webhook_endpoint", endpoint_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{endpoint_id}/rotate-secret", response_model=SecretRotated)
async def rotate_secret(
    session: Session, settings: AppSettings, admin: AdminUser, endpoint_id: uuid.UUID
) -> SecretRotated:
    """Admin: a new secret (shown once); the old one stays valid next to it for 24 h."""
    secret, until = await service.rotate_secret(
        session, settings, admin.organisation_id, endpoint_id
    )
    await audit_service.record(
        session, admin, "webhook.rotate_secret", "webhook_endpoint", endpoint_id
    )
    return SecretRotated(secret=secret, previous_secret_valid_until=until)


@router.post(
    "/{endpoint_id}/test", response_model=MessageRead, status_code=status.HTTP_202_ACCEPTED
)
async def send_test(session: Session, admin: AdminUser, endpoint_id: uuid.UUID) -> MessageRead:
    """Admin: queue a `webhook.test` message to the endpoint."""
    msg = await service.send_test(session, admin.organisation_id, endpoint_id)
    return MessageRead.model_validate(msg)


@router.post("/{endpoint_id}/replay", response_model=Replayed, status_code=status.HTTP_202_ACCEPTED)
async def replay(
    session: Session, admin: AdminUser, endpoint_id: uuid.UUID, body: ReplayRequest
) -> Replayed:
    """Admin: send one message, or those of events in a time range, again (same webhook-id)."""
    copies = await service.replay(session, admin.organisation_id, endpoint_id, body)
    await audit_service.record(
        session,
        admin,
        "webhook.replay",
        "webhook_endpoint",
        endpoint_id,
        {"messages": len(copies)},
    )
    return Replayed(replayed=len(copies), message_ids=[c.id for c in copies])


@router.get("/{endpoint_id}/messages", response_model=list[MessageRead])
async def list_messages(
    session: Session,
    admin: AdminUser,
    endpoint_id: uuid.UUID,
    limit: Limit = 50,
    before: Before = None,
) -> list[MessageRead]:
    """Admin: the endpoint's messages, newest first."""
    rows = await service.messages(session, admin.organisation_id, endpoint_id, limit, before)
    return [MessageRead.model_validate(r) for r in rows]


@router.get("/{endpoint_id}/deliveries", response_model=list[AttemptRead])
async def list_attempts(
    session: Session,
    admin: AdminUser,
    endpoint_id: uuid.UUID,
    limit: Limit = 50,
    before: Before = None,
) -> list[AttemptRead]:
    """Admin: the delivery log, one entry per attempt (status, latency, response code)."""
    rows = await service.attempts(session, admin.organisation_id, endpoint_id, limit, before)
    return [AttemptRead.model_validate(r) for r in rows]
