"""Rules for push subscriptions, the notification outbox and the inbox. Flushes, never commits.

Other domains create notifications only through `enqueue(...)`, inside their own transaction: the
notification exists (inbox row + one outbox row per subscription) if and only if their change
commits. See docs/notifications.md.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.principal import Principal
from app.core.config import Settings
from app.core.errors import Conflict, NotFound, Unprocessable
from app.core.pagination import PageParams
from app.notifications import repository as repo
from app.notifications.endpoints import EndpointRejected, origin_of, validate_endpoint
from app.notifications.models import (
    Channel,
    Delivery,
    Notification,
    OutboxStatus,
    PushSubscription,
    Urgency,
)
from app.notifications.schemas import NotificationPayload, Recipient, SubscriptionCreate
from app.notifications.sender import MAX_PLAINTEXT_BYTES, TOPIC_RE

MAX_TTL_S = 28 * 24 * 3600


class SubscriptionTaken(Conflict):
    code, title = "subscription-taken", "Push endpoint already registered"

    def __init__(self) -> None:
        super().__init__(
            "This push endpoint is registered to someone else. Unsubscribe in the browser and "
            "subscribe again to get a new endpoint.",
            extra={"field": "endpoint"},
        )


def recipient_of(principal: Principal) -> Recipient:
    """The caller as a plain `SubjectRef` (without the role and loaded rows of a Principal)."""
    return Recipient(principal.kind, principal.id, principal.organisation_id)


# --- subscriptions ---------------------------------------------------------------------------


async def subscribe(
    session: AsyncSession,
    settings: Settings,
    who: Recipient,
    body: SubscriptionCreate,
    user_agent: str | None = None,
) -> tuple[PushSubscription, bool]:
    """Store the browser's subscription (upsert by endpoint). Returns (row, created)."""
    try:
        endpoint = validate_endpoint(
            body.endpoint, settings.push_allowed_hosts, settings.push_allow_loopback
        )
    except EndpointRejected as exc:
        raise Unprocessable(str(exc), extra={"field": "endpoint"}) from exc
    expiration = (
        datetime.fromtimestamp(body.expirationTime / 1000, UTC)
        if body.expirationTime is not None
        else None
    )
    if expiration is not None and expiration <= datetime.now(UTC):
        raise Unprocessable(
            "The subscription has already expired.", extra={"field": "expirationTime"}
        )
    owner = {
        "organisation_id": who.organisation_id,
        **who.owner_columns(),
    }
    existing = await repo.subscription_by_endpoint(session, endpoint)
    if existing is not None and not all(getattr(existing, k) == v for k, v in owner.items()):
        # An endpoint belongs to whoever registered it first until they delete it (or their
        # device / account goes): re-owning it would silently cut the owner off their pushes,
        # across organisations too. The answer says nothing about who holds it.
        raise SubscriptionTaken()
    if existing is None:
        limit = settings.push_max_subscriptions_per_person
        if await repo.count_subscriptions(session, who) >= limit:
            raise Conflict(
                f"At most {limit} push subscriptions per person; delete an old one first.",
                extra={"field": "endpoint", "limit": limit},
            )
    values: dict[str, Any] = {
        **owner,
        "p256dh": body.keys.p256dh,
        "auth": body.keys.auth,
        "expiration_time": expiration,
        "user_agent": (user_agent or "")[:300] or None,
    }
    if existing is not None:
        # The same owner registering again (keys rotated): refresh the row.
        for key, value in values.items():
            setattr(existing, key, value)
        existing.updated_at = datetime.now(UTC)
        await session.flush()
        return existing, False
    row = PushSubscription(endpoint=endpoint, origin=origin_of(endpoint), **values)
    session.add(row)
    await session.flush()
    await session.refresh(row)
    return row, True


async def list_subscriptions(session: AsyncSession, who: Recipient) -> Sequence[PushSubscription]:
    return await repo.list_subscriptions(session, who)


async def unsubscribe(session: AsyncSession, who: Recipient, subscription_id: uuid.UUID) -> None:
    row = await repo.own_subscription(session, who, subscription_id)
    if row is None:
        raise NotFound("No such push subscription.")
    await repo.delete_subscription(session, row.id)


# --- outbox ----------------------------------------------------------------------------------


def topic_for(kind: str, tag: str | None, related: dict[str, Any]) -> str:
    """A stable `Topic` ([A-Za-z0-9]{1,32}): the same kind+tag (or kind+related ids) gives the
    same topic, so a newer notification replaces an undelivered older one at the push service."""
    if tag and TOPIC_RE.match(tag):
        return tag
    key = tag if tag else orjson.dumps(related, option=orjson.OPT_SORT_KEYS).decode()
    return hashlib.sha256(f"{kind}\x00{key}".encode()).hexdigest()[:32]


def build_payload(notification_id: uuid.UUID, payload: NotificationPayload, topic: str) -> str:
    doc: dict[str, Any] = {
        "id": str(notification_id),
        "kind": payload.kind,
        "title": payload.title,
        "body": payload.body,
        "tag": payload.tag or topic,
    }
    if payload.url:
        doc["url"] = payload.url
    if payload.data:
        doc["data"] = payload.data
    return orjson.dumps(doc).decode()


async def enqueue(
    session: AsyncSession,
    *,
    recipient: Recipient,
    payload: NotificationPayload,
    related: dict[str, Any] | None = None,
    decision: str = "send",
    urgency: Urgency = Urgency.normal,
    ttl_s: int | None = None,
    settings: Settings | None = None,
) -> Notification:
    """Record a notification for `recipient` in the caller's transaction.

    Always writes the inbox row. When `decision == "send"` it also writes one outbox row per push
    subscription the person has and wakes the workers (NOTIFY, delivered at commit). Any other
    decision (e.g. "suppressed:quiet_hours") is stored for the inbox and nothing is pushed.
    Raises `Unprocessable` if the push payload would not fit the 4,096-byte limit.
    """
    if not payload.title or len(payload.title) > 200:
        raise Unprocessable("A notification title is 1-200 characters.", extra={"field": "title"})
    default_ttl = settings.push_default_ttl_s if settings else 86_400
    ttl = ttl_s if ttl_s is not None else default_ttl
    if not 1 <= ttl <= MAX_TTL_S:
        raise Unprocessable(f"ttl_s must be between 1 and {MAX_TTL_S}.", extra={"field": "ttl_s"})
    related_json = {k: str(v) for k, v in (related or {}).items()}
    topic = topic_for(payload.kind, payload.tag, related_json)
    notification_id = uuid.uuid4()
    body = build_payload(notification_id, payload, topic)
    if len(body.encode()) > MAX_PLAINTEXT_BYTES:
        raise Unprocessable(
            f"The push payload is {len(body.encode())} bytes; at most {MAX_PLAINTEXT_BYTES} fit.",
            extra={"field": "payload"},
        )
    row = Notification(
        id=notification_id,
        organisation_id=recipient.organisation_id,
        device_id=recipient.device_id,
        staff_user_id=recipient.staff_user_id,
        kind=payload.kind,
        title=payload.title,
        body=payload.body,
        url=payload.url,
        tag=payload.tag,
        topic=topic,
        urgency=urgency.value,
        ttl_s=ttl,
        related=related_json,
        decision=decision,
        payload=body,
        # Wall-clock time (not the transaction's): two notifications in one transaction keep order.
        created_at=datetime.now(UTC),
    )
    session.add(row)
    await session.flush()
    if decision == "send":
        targets = await repo.subscription_targets(session, recipient)
        expires = datetime.now(UTC) + timedelta(seconds=ttl)
        await repo.insert_outbox(
            session,
            [
                {
                    "id": uuid.uuid4(),
                    "channel": Channel.webpush.value,
                    "notification_id": notification_id,
                    "subscription_id": t.id,
                    "organisation_id": recipient.organisation_id,
                    "origin": t.origin,
                    "status": OutboxStatus.pending.value,
                    "expires_at": expires,
                }
                for t in targets
            ],
        )
        if targets:
            await repo.notify_workers(session)
    return row


@dataclass(frozen=True)
class Outgoing:
    """One notification for `enqueue_many`; `not_before` defers the push (e.g. quiet hours)."""

    recipient: Recipient
    payload: NotificationPayload
    related: dict[str, Any] = field(default_factory=dict)
    decision: str = "send"
    urgency: Urgency = Urgency.normal
    ttl_s: int | None = None
    not_before: datetime | None = None


async def enqueue_many(
    session: AsyncSession, items: list[Outgoing], settings: Settings | None = None
) -> list[uuid.UUID]:
    """`enqueue` for many notifications in a constant number of statements; returns their ids.

    Same rules as `enqueue` (inbox row always, outbox rows only for "send"); a `not_before`
    time becomes the outbox rows' first attempt time, and the TTL counts from then.
    """
    if not items:
        return []
    default_ttl = settings.push_default_ttl_s if settings else 86_400
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for n, item in enumerate(items):
        payload = item.payload
        if not payload.title or len(payload.title) > 200:
            raise Unprocessable(
                "A notification title is 1-200 characters.", extra={"field": "title"}
            )
        ttl = item.ttl_s if item.ttl_s is not None else default_ttl
        if not 1 <= ttl <= MAX_TTL_S:
            raise Unprocessable(
                f"ttl_s must be between 1 and {MAX_TTL_S}.", extra={"field": "ttl_s"}
            )
        related_json = {k: str(v) for k, v in item.related.items()}
        topic = topic_for(payload.kind, payload.tag, related_json)
        notification_id = uuid.uuid4()
        body = build_payload(notification_id, payload, topic)
        if len(body.encode()) > MAX_PLAINTEXT_BYTES:
            raise Unprocessable(
                f"The push payload is {len(body.encode())} bytes; at most "
                f"{MAX_PLAINTEXT_BYTES} fit.",
                extra={"field": "payload"},
            )
        who = item.recipient
        rows.append(
            {
                "id": notification_id,
                "organisation_id": who.organisation_id,
                **who.owner_columns(),
                "kind": payload.kind,
                "title": payload.title,
                "body": payload.body,
                "url": payload.url,
                "tag": payload.tag,
                "topic": topic,
                "urgency": item.urgency.value,
                "ttl_s": ttl,
                "related": related_json,
                "decision": item.decision,
                "payload": body,
                # microsecond steps keep the inbox order = the order given
                "created_at": now + timedelta(microseconds=n),
                "opened_at": None,
            }
        )
    await repo.insert_notifications(session, rows)
    sending = [
        (item, row) for item, row in zip(items, rows, strict=True) if item.decision == "send"
    ]
    if sending:
        # one statement whatever the number of people and organisations (the ping path enqueues
        # for many devices' batches at once)
        targets = await repo.subscription_targets_of(
            session, [item.recipient for item, _ in sending]
        )
        outbox = []
        for item, row in sending:
            start = max(item.not_before or now, now)
            for t in targets.get(item.recipient.id, []):
                outbox.append(
                    {
                        "id": uuid.uuid4(),
                        "channel": Channel.webpush.value,
                        "notification_id": row["id"],
                        "subscription_id": t.id,
                        "organisation_id": item.recipient.organisation_id,
                        "origin": t.origin,
                        "status": OutboxStatus.pending.value,
                        "next_attempt_at": start,
                        "expires_at": start + timedelta(seconds=row["ttl_s"]),
                    }
                )
        await repo.insert_outbox(session, outbox)
        if outbox:
            await repo.notify_workers(session)
    return [row["id"] for row in rows]


async def offer_counts(
    session: AsyncSession, organisation_id: uuid.UUID, offer_id: uuid.UUID
) -> tuple[int, int]:
    """(sent, opened) notifications about an offer, for the offer statistics."""
    return await repo.offer_notification_counts(session, organisation_id, offer_id)


# --- inbox and delivery log ------------------------------------------------------------------


async def inbox(session: AsyncSession, who: Recipient, page: PageParams) -> Sequence[Notification]:
    return await repo.list_notifications(session, who, page)


async def mark_opened(
    session: AsyncSession, who: Recipient, notification_id: uuid.UUID
) -> Notification:
    row = await repo.own_notification(session, who, notification_id)
    if row is None:
        raise NotFound("No such notification.")
    await repo.mark_opened(session, row.id)
    await session.refresh(row)
    return row


async def deliveries(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    page: PageParams,
    status: str | None = None,
    notification_id: uuid.UUID | None = None,
) -> Sequence[Delivery]:
    return await repo.list_deliveries(session, organisation_id, page, status, notification_id)


async def erase_person(session: AsyncSession, who: Recipient) -> None:
    """For `DELETE /v1/me`: subscriptions, inbox, outbox and delivery log of one person."""
    await repo.erase_person(session, who)
