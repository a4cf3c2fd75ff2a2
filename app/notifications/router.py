"""HTTP endpoints: VAPID key, push subscriptions, the inbox and the delivery log."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status

from app.accounts.dependencies import CurrentPrincipal, EditorUser
from app.core.db import Session
from app.core.deps import AppSettings
from app.core.pagination import Page, Pagination, trim_page
from app.core.ratelimit import rate_limited
from app.notifications import service
from app.notifications.models import DeliveryStatus
from app.notifications.schemas import (
    DeliveryRead,
    NotificationRead,
    SubscriptionCreate,
    SubscriptionRead,
    VapidPublicKey,
)
from app.notifications.vapid import VapidSigner

router = APIRouter(prefix="/v1", tags=["notifications"])


@router.get("/push/vapid-public-key", response_model=VapidPublicKey)
async def vapid_public_key(request: Request, settings: AppSettings) -> VapidPublicKey:
    """The applicationServerKey to pass to `pushManager.subscribe`."""
    signer: VapidSigner | None = getattr(request.app.state, "vapid_signer", None)
    if signer is None:
        signer = VapidSigner.from_settings(settings)
        request.app.state.vapid_signer = signer
    return VapidPublicKey(public_key=signer.public_key)


@router.post(
    "/push/subscriptions",
    response_model=SubscriptionRead,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"description": "An existing subscription (same endpoint) was updated"}},
    dependencies=[Depends(rate_limited("subscriptions"))],
)
async def subscribe(
    session: Session,
    settings: AppSettings,
    principal: CurrentPrincipal,
    body: SubscriptionCreate,
    response: Response,
    user_agent: Annotated[str | None, Header()] = None,
) -> SubscriptionRead:
    """Store the browser's PushSubscription for the caller (upsert by endpoint)."""
    row, created = await service.subscribe(
        session, settings, service.recipient_of(principal), body, user_agent
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return SubscriptionRead.model_validate(row)


@router.get("/push/subscriptions", response_model=list[SubscriptionRead])
async def list_subscriptions(
    session: Session, principal: CurrentPrincipal
) -> list[SubscriptionRead]:
    """The caller's own push subscriptions."""
    rows = await service.list_subscriptions(session, service.recipient_of(principal))
    return [SubscriptionRead.model_validate(r) for r in rows]


@router.delete("/push/subscriptions/{subscription_id}", status_code=status.HTTP_204_NO_CONTENT)
async def unsubscribe(
    session: Session, principal: CurrentPrincipal, subscription_id: uuid.UUID
) -> Response:
    """Delete one of the caller's own push subscriptions."""
    await service.unsubscribe(session, service.recipient_of(principal), subscription_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me/notifications", response_model=Page[NotificationRead])
async def my_notifications(
    session: Session, principal: CurrentPrincipal, page: Pagination
) -> Page[NotificationRead]:
    """The caller's inbox, newest first: everything sent (or suppressed) for them."""
    rows = await service.inbox(session, service.recipient_of(principal), page)
    rows, next_cursor = trim_page(rows, page)
    return Page(items=[NotificationRead.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.post("/me/notifications/{notification_id}/opened", response_model=NotificationRead)
async def notification_opened(
    session: Session, principal: CurrentPrincipal, notification_id: uuid.UUID
) -> NotificationRead:
    """Mark one of the caller's notifications as opened (idempotent)."""
    row = await service.mark_opened(session, service.recipient_of(principal), notification_id)
    return NotificationRead.model_validate(row)


@router.get("/deliveries", response_model=Page[DeliveryRead])
async def deliveries(
    session: Session,
    staff: EditorUser,
    page: Pagination,
    status_: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
    notification_id: uuid.UUID | None = None,
) -> Page[DeliveryRead]:
    """Editors/admins: the organisation's delivery log, one entry per attempt, newest first."""
    rows = await service.deliveries(
        session,
        staff.organisation_id,
        page,
        status_.value if status_ else None,
        notification_id,
    )
    rows, next_cursor = trim_page(rows, page, "attempted_at")
    return Page(items=[DeliveryRead.model_validate(r) for r in rows], next_cursor=next_cursor)
