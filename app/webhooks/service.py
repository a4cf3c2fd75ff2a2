"""Webhook endpoints, the event fan-out into their outbox, replays and the circuit breaker."""

from __future__ import annotations

import ipaddress
import json
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.principal import Principal
from app.core.config import Settings, get_settings
from app.events import service as events_service
from app.events.types import Event
from app.notifications import service as notifications_service
from app.notifications.endpoints import (
    LOOPBACK_HOSTS,
    AddressGuard,
    EndpointRejected,
    address_allowed,
)
from app.notifications.models import Channel
from app.notifications.schemas import NotificationPayload, Recipient
from app.webhooks import repository, secretbox, signing
from app.webhooks.errors import (
    EndpointNotFound,
    EndpointRefused,
    MessageNotFound,
    SecretKeyMissing,
    TooManyEndpoints,
)
from app.webhooks.models import EndpointStatus, MessageStatus, WebhookEndpoint, WebhookMessage
from app.webhooks.predicates import matches
from app.webhooks.schemas import EndpointCreate, EndpointUpdate, ReplayRequest

PAYLOAD_VERSION = 1
TEST_TYPE = "webhook.test"
MAX_REPLAY = 1000


# --- SSRF: which URLs may be registered ----------------------------------------------------------


def _check_url_shape(url: str, allow_loopback: bool) -> tuple[str, int]:
    """(host, port) of a URL that may be stored, else `EndpointRefused` naming why."""
    if not url.isascii() or any(c.isspace() or c == "\\" for c in url):
        raise EndpointRefused("The URL must be a plain ASCII URL.", extra={"field": "url"})
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise EndpointRefused("The URL is not valid.", extra={"field": "url"}) from exc
    host = (parts.hostname or "").lower()
    if not host:
        raise EndpointRefused("The URL has no host.", extra={"field": "url"})
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise EndpointRefused("The URL must not contain user information.", extra={"field": "url"})
    if parts.fragment:
        raise EndpointRefused("The URL must not contain a fragment.", extra={"field": "url"})
    if "%" in parts.netloc:
        raise EndpointRefused("The host must not be percent-encoded.", extra={"field": "url"})
    loopback = allow_loopback and host in LOOPBACK_HOSTS
    if parts.scheme != "https" and not (loopback and parts.scheme == "http"):
        raise EndpointRefused("The URL must use https.", extra={"field": "url"})
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None and not address_allowed(str(ip), allow_loopback):
        raise EndpointRefused(
            "The URL points to a private, loopback or link-local address.", extra={"field": "url"}
        )
    return host, port or (443 if parts.scheme == "https" else 80)


async def check_url(url: str, settings: Settings, guard: AddressGuard | None = None) -> None:
    """Refuse URLs that are not https or that resolve to any non-global address."""
    host, port = _check_url_shape(url, settings.webhook_allow_loopback)
    guard = guard or AddressGuard(allow_loopback=settings.webhook_allow_loopback, ttl_s=0)
    try:
        await guard.check(host, port)
    except EndpointRejected as exc:
        raise EndpointRefused(
            f"The URL's host is refused: {str(exc).replace('push service ', '')}.",
            extra={"field": "url"},
        ) from exc


# --- endpoints -----------------------------------------------------------------------------------


async def create_endpoint(
    session: AsyncSession, settings: Settings, principal: Principal, body: EndpointCreate
) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint; returns it and its secret (shown to the admin only this once)."""
    org = principal.organisation_id
    await check_url(body.url, settings)
    cap = settings.webhook_max_endpoints_per_organisation
    if await repository.count_endpoints(session, org) >= cap:
        raise TooManyEndpoints(
            f"An organisation has at most {settings.webhook_max_endpoints_per_organisation} "
            "webhook endpoints."
        )
    secret = signing.new_secret()
    sealed = _seal(settings, secret)
    endpoint = WebhookEndpoint(
        id=uuid.uuid4(),
        organisation_id=org,
        url=body.url,
        description=body.description,
        event_types=body.event_types,
        geofence_ids=body.geofence_ids,
        categories=body.categories,
        include_person_ids=body.include_person_ids,
        secret=sealed,
        pseudonym_key=secrets.token_hex(32),
        status=EndpointStatus.enabled.value,
        created_by=principal.staff_user_id,
    )
    await repository.add(session, endpoint)
    return endpoint, secret


def _seal(settings: Settings, secret: str) -> str:
    """The stored form of a secret; a missing or unusable key is a 503 naming the setting."""
    try:
        return secretbox.seal(settings, secret)
    except secretbox.SecretKeyError as exc:
        raise SecretKeyMissing(str(exc)) from exc


async def list_endpoints(session: AsyncSession, org: uuid.UUID) -> Sequence[WebhookEndpoint]:
    return await repository.list_endpoints(session, org)


async def get_endpoint(
    session: AsyncSession, org: uuid.UUID, endpoint_id: uuid.UUID, lock: bool = False
) -> WebhookEndpoint:
    endpoint = await repository.get_endpoint(session, org, endpoint_id, lock=lock)
    if endpoint is None:
        raise EndpointNotFound()
    return endpoint


async def update_endpoint(
    session: AsyncSession, org: uuid.UUID, endpoint_id: uuid.UUID, body: EndpointUpdate
) -> WebhookEndpoint:
    endpoint = await get_endpoint(session, org, endpoint_id, lock=True)
    fields = body.model_dump(exclude_unset=True)
    for name in ("description", "event_types", "geofence_ids", "categories"):
        if name in fields:
            setattr(endpoint, name, fields[name])
    if fields.get("include_person_ids") is not None:
        endpoint.include_person_ids = fields["include_person_ids"]
    if fields.get("enabled") is True:
        endpoint.status = EndpointStatus.enabled.value
        endpoint.disabled_reason = None
        endpoint.disabled_at = None
        endpoint.failing_since = None
    elif fields.get("enabled") is False:
        endpoint.status = EndpointStatus.disabled.value
        endpoint.disabled_reason = "disabled by an admin"
        endpoint.disabled_at = datetime.now(UTC)
    await session.flush()
    return endpoint


async def delete_endpoint(session: AsyncSession, org: uuid.UUID, endpoint_id: uuid.UUID) -> None:
    await repository.delete_endpoint(session, await get_endpoint(session, org, endpoint_id))


async def rotate_secret(
    session: AsyncSession, settings: Settings, org: uuid.UUID, endpoint_id: uuid.UUID
) -> tuple[str, datetime]:
    """A new secret; the old one keeps signing (next to it) for `webhook_secret_overlap_s`.
    Both are stored sealed (`secretbox`), the old one re-sealed with the current key."""
    endpoint = await get_endpoint(session, org, endpoint_id, lock=True)
    secret = signing.new_secret()
    until = datetime.now(UTC) + timedelta(seconds=settings.webhook_secret_overlap_s)
    try:
        previous = secretbox.open_sealed(settings, endpoint.secret)
    except secretbox.SecretKeyError as exc:
        raise SecretKeyMissing(str(exc)) from exc
    endpoint.previous_secret = _seal(settings, previous)
    endpoint.previous_secret_until = until
    endpoint.secret = _seal(settings, secret)
    await session.flush()
    return secret, until


def signing_secrets(
    secret: str, previous: str | None, previous_until: datetime | None, now: datetime
) -> list[str]:
    if previous is not None and previous_until is not None and previous_until > now:
        return [secret, previous]
    return [secret]


# --- payloads and the fan-out --------------------------------------------------------------------


def new_msg_id() -> str:
    return "msg_" + uuid.uuid4().hex


def payload_for(
    event: Event, endpoint: WebhookEndpoint, place: repository.PlaceRef | None
) -> dict[str, Any]:
    """The versioned JSON body (docs/webhooks.md): a place reference, the explanation and the
    person only as the endpoint's scope allows (a per-endpoint pseudonym by default)."""
    person: dict[str, Any] | None = None
    if event.subject is not None:
        pid = str(event.subject.id)
        person = {
            "kind": event.subject.kind,
            "id": pid
            if endpoint.include_person_ids
            else signing.pseudonym(endpoint.pseudonym_key, pid),
        }
    return {
        "type": event.type.value,
        "timestamp": event.occurred_at.astimezone(UTC).isoformat(),
        "version": PAYLOAD_VERSION,
        "data": {
            "event_id": str(event.id),
            "source": event.source.value,
            "occurred_at": event.occurred_at.astimezone(UTC).isoformat(),
            "place": None
            if place is None
            else {"id": str(place.id), "name": place.name, "category": place.category},
            "person": person,
            "explanation": dict(event.explanation),
            **dict(event.data),
        },
    }


def _wants(endpoint: WebhookEndpoint, event: Event, place: repository.PlaceRef | None) -> bool:
    if not matches(endpoint.event_types, event.type.value):
        return False
    if endpoint.geofence_ids is not None and event.geofence_id not in endpoint.geofence_ids:
        return False
    return endpoint.categories is None or (
        place is not None and place.category in endpoint.categories
    )


def _encode(body: dict[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"), default=str, ensure_ascii=False)


async def fan_out(session: AsyncSession, events: list[Event], _settings: Any = None) -> int:
    """The event hook: one outbox row per (event, endpoint that wants it); returns how many.

    One read of the organisations' enabled endpoints; nothing more when there are none.
    """
    # a source that already knows no endpoint wants its event says so (the check-in context)
    events = [e for e in events if e.hints.get("webhooks", True)]
    if not events:
        return 0
    orgs = sorted({e.organisation_id for e in events})
    endpoints = await repository.enabled_endpoints_of(session, orgs)
    if not endpoints:
        return 0
    by_org: dict[uuid.UUID, list[WebhookEndpoint]] = {}
    for ep in endpoints:
        by_org.setdefault(ep.organisation_id, []).append(ep)
    events = [e for e in events if e.organisation_id in by_org]
    places = await repository.places(
        session, sorted({e.geofence_id for e in events if e.geofence_id is not None})
    )
    rows = []
    for event in events:
        place = places.get(event.geofence_id) if event.geofence_id is not None else None
        for ep in by_org[event.organisation_id]:
            if _wants(ep, event, place):
                rows.append(
                    {
                        "id": uuid.uuid4(),
                        "channel": Channel.webhook.value,
                        "organisation_id": event.organisation_id,
                        "endpoint_id": ep.id,
                        "subject_id": None if event.subject is None else event.subject.id,
                        "msg_id": new_msg_id(),
                        "event_id": event.id,
                        "event_type": event.type.value,
                        "occurred_at": event.occurred_at,
                        "payload": _encode(payload_for(event, ep, place)),
                        "status": MessageStatus.pending.value,
                    }
                )
    if rows:
        await repository.insert_messages(session, rows)
        await repository.notify_workers(session)
    return len(rows)


def register() -> None:
    """Hook the fan-out into every recorded event (idempotent)."""
    events_service.register_hook("webhooks", fan_out)


def unregister() -> None:
    events_service.unregister_hook("webhooks")


# --- test messages, replays, logs ----------------------------------------------------------------


async def send_test(
    session: AsyncSession, org: uuid.UUID, endpoint_id: uuid.UUID
) -> WebhookMessage:
    endpoint = await get_endpoint(session, org, endpoint_id)
    now = datetime.now(UTC)
    msg = WebhookMessage(
        id=uuid.uuid4(),
        organisation_id=org,
        endpoint_id=endpoint.id,
        msg_id=new_msg_id(),
        event_type=TEST_TYPE,
        occurred_at=now,
        payload=_encode(
            {
                "type": TEST_TYPE,
                "timestamp": now.isoformat(),
                "version": PAYLOAD_VERSION,
                "data": {"endpoint_id": str(endpoint.id), "message": "A test from Hereabouts."},
            }
        ),
        status=MessageStatus.pending.value,
    )
    session.add(msg)
    await session.flush()
    await repository.notify_workers(session)
    return msg


async def replay(
    session: AsyncSession, org: uuid.UUID, endpoint_id: uuid.UUID, body: ReplayRequest
) -> list[WebhookMessage]:
    """Send messages again as new outbox rows with the same `msg_id` (the same `webhook-id`)."""
    endpoint = await get_endpoint(session, org, endpoint_id)
    if body.message_id is not None:
        original = await repository.get_message(session, endpoint.id, body.message_id)
        if original is None:
            raise MessageNotFound()
        originals: Sequence[WebhookMessage] = [original]
    else:
        assert body.since is not None
        assert body.until is not None
        originals = await repository.messages_between(
            session, endpoint.id, body.since, body.until, MAX_REPLAY
        )
    copies = [
        WebhookMessage(
            id=uuid.uuid4(),
            organisation_id=org,
            endpoint_id=endpoint.id,
            msg_id=m.msg_id,
            event_id=m.event_id,
            event_type=m.event_type,
            occurred_at=m.occurred_at,
            payload=m.payload,
            status=MessageStatus.pending.value,
            replay_of=m.replay_of or m.id,
            subject_id=m.subject_id,
        )
        for m in originals
    ]
    session.add_all(copies)
    await session.flush()
    if copies:
        await repository.notify_workers(session)
    return copies


async def messages(
    session: AsyncSession,
    org: uuid.UUID,
    endpoint_id: uuid.UUID,
    limit: int,
    before: datetime | None,
) -> Sequence[WebhookMessage]:
    endpoint = await get_endpoint(session, org, endpoint_id)
    return await repository.list_messages(session, endpoint.id, limit, before)


async def attempts(
    session: AsyncSession,
    org: uuid.UUID,
    endpoint_id: uuid.UUID,
    limit: int,
    before: datetime | None,
) -> Sequence[Any]:
    endpoint = await get_endpoint(session, org, endpoint_id)
    return await repository.list_attempts(session, endpoint.id, limit, before)


async def export_subject(session: AsyncSession, subject_id: uuid.UUID) -> list[dict[str, Any]]:
    """The data export's part: every message about this person (pending or sent) — which
    endpoint it went to, the exact body, its status — with its attempt log, oldest first."""
    rows = await repository.messages_about(session, subject_id)
    log: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for a in await repository.attempts_of(session, [m.id for m, _ in rows]):
        log.setdefault(a.message_id, []).append(
            {
                "attempt": a.attempt,
                "attempted_at": a.attempted_at.isoformat(),
                "status": a.status,
                "http_status": a.http_status,
                "latency_ms": a.latency_ms,
                "error": a.error,
            }
        )
    return [
        {
            "id": str(m.id),
            "endpoint": {"id": str(e.id), "url": e.url, "description": e.description},
            "msg_id": m.msg_id,
            "event_type": m.event_type,
            "occurred_at": m.occurred_at.isoformat(),
            "created_at": m.created_at.isoformat(),
            "status": m.status,
            "finished_at": m.finished_at.isoformat() if m.finished_at else None,
            "replay_of": str(m.replay_of) if m.replay_of else None,
            "payload": json.loads(m.payload),
            "attempts": log.get(m.id, []),
        }
        for m, e in rows
    ]


async def erase_subject(session: AsyncSession, subject_id: uuid.UUID) -> int:
    """Erasure: every message about this person (device or staff user), pending or sent, goes
    with its attempt log; returns how many messages."""
    return await repository.erase_subject(session, subject_id)


# --- operators: re-encrypting every secret under the current key ---------------------------------


@dataclass
class RekeyReport:
    endpoints: int = 0
    resealed: int = 0  # secrets (current or previous) written again under the current key
    current: int = 0  # secrets already sealed with the current key (left as they are)
    unreadable: list[uuid.UUID] = field(default_factory=list)  # endpoints no key opens


async def rekey_secrets(session: AsyncSession, settings: Settings, batch: int = 500) -> RekeyReport:
    """Seal every endpoint's signing secrets (and a rotated-out previous one) with the current
    key, so the previous keys can be dropped from the settings. Idempotent: a secret the current
    key already opens is not written. If any endpoint's secret opens with no configured key,
    nothing is written (the caller rolls back) and those endpoints are listed."""
    secretbox.box(settings)  # a missing or malformed key is the caller's error, not a row's
    report = RekeyReport()
    writes: list[tuple[uuid.UUID, dict[str, str]]] = []
    after: uuid.UUID | None = None
    while True:
        rows = await repository.sealed_secrets(session, after, batch)
        for endpoint_id, secret, previous in rows:
            report.endpoints += 1
            values: dict[str, str] = {}
            try:
                for column, stored in (("secret", secret), ("previous_secret", previous)):
                    if stored is None:
                        continue
                    sealed = secretbox.reseal(settings, stored)
                    if sealed is None:
                        report.current += 1
                    else:
                        values[column] = sealed
            except secretbox.SecretKeyError:
                report.unreadable.append(endpoint_id)
                continue
            if values:
                report.resealed += len(values)
                writes.append((endpoint_id, values))
        if len(rows) < batch:
            break
        after = rows[-1][0]
    if not report.unreadable:
        for endpoint_id, values in writes:
            await repository.store_sealed(session, endpoint_id, values)
    return report


# --- the circuit breaker (workers) ---------------------------------------------------------------


async def disable(
    session: AsyncSession, endpoint_id: uuid.UUID, reason: str, settings: Settings | None = None
) -> bool:
    """Disable an endpoint and tell its organisation's admins (inbox; the console shows a banner
    for every disabled endpoint). False when it was already disabled or is gone."""
    endpoint = await repository.endpoint_by_id(session, endpoint_id)
    if endpoint is None or endpoint.status == EndpointStatus.disabled.value:
        return False
    endpoint.status = EndpointStatus.disabled.value
    endpoint.disabled_reason = reason[:300]
    endpoint.disabled_at = datetime.now(UTC)
    await session.flush()
    admins = await repository.admin_ids(session, endpoint.organisation_id)
    await notifications_service.enqueue_many(
        session,
        [
            notifications_service.Outgoing(
                recipient=Recipient("staff", admin, endpoint.organisation_id),
                payload=NotificationPayload(
                    title="A webhook endpoint was disabled",
                    body=f"{endpoint.url}: {reason}. Fix the receiver, then enable it again in "
                    "the console's Webhooks tab.",
                    kind="webhook",
                    tag=f"webhook-{endpoint.id.hex[:20]}",
                    url="/console#webhooks",
                    data={"webhook_endpoint_id": str(endpoint.id)},
                ),
                related={"webhook_endpoint_id": str(endpoint.id)},
            )
            for admin in admins
        ],
        settings or get_settings(),
    )
    return True
