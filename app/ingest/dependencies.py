"""Who is sending: a device token, a field worker's token or an ingest key, however the app
can send it (Bearer, HTTP Basic password, or Traccar's `id`)."""

from __future__ import annotations

import base64
import binascii

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.dependencies import get_principal
from app.accounts.models import Role
from app.core.config import Settings
from app.core.errors import Forbidden
from app.ingest import service
from app.ingest.errors import InvalidIngestCredentials
from app.ingest.keycache import IngestKeyCache
from app.presence.models import SubjectKind
from app.presence.service import Subject


def key_cache(request: Request) -> IngestKeyCache | None:
    """This process's ingest key cache (None when the device token cache is off)."""
    cache: IngestKeyCache | None = getattr(request.app.state, "ingest_keys", None)
    return cache


def credential_from_header(request: Request) -> str | None:
    """The token in `Authorization: Bearer <token>` or the password of `Basic user:password`."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _user, sep, password = decoded.partition(":")
        return password if sep and password else None
    return None


async def subject_for(
    request: Request,
    session: AsyncSession,
    settings: Settings,
    credential: str | None,
    *,
    basic: bool = False,
) -> Subject:
    """Resolve a credential to the subject its pings are about, as `POST /v1/pings` would.

    Ingest keys (`hik_…`), resident device tokens and field workers' staff tokens are accepted;
    other staff are refused (403) like on `/v1/pings`.
    """
    challenge = {"WWW-Authenticate": 'Basic realm="hereabouts"' if basic else "Bearer"}
    if not credential:
        raise InvalidIngestCredentials("Credentials are required.", headers=challenge)
    if credential.startswith(service.INGEST_KEY_PREFIX):
        subject = await service.subject_for_key(session, credential, key_cache(request))
        if subject is None:
            raise InvalidIngestCredentials("The ingest key is not valid.", headers=challenge)
        return subject
    principal = await get_principal(request, session, settings, credential, None)
    if principal.is_staff and principal.role is not Role.field_worker:
        raise Forbidden("Only field workers and resident devices send location pings.")
    kind = SubjectKind.staff if principal.is_staff else SubjectKind.device
    return Subject(kind, principal.id, principal.organisation_id)
