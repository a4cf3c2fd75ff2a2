"""Who is calling: `CurrentPrincipal`, `CurrentStaff`, `CurrentDevice` and role checks.

The organisation-scoping rule: every repository query that reads or writes organisation data takes
the caller's ``organisation_id`` and filters on it, so another organisation's rows are simply not
found (404), never "forbidden" (which would confirm they exist).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, OAuth2PasswordBearer

from app.accounts import service
from app.accounts.models import Role
from app.accounts.principal import (
    Principal as Principal,  # re-exported for callers of the dependencies
)
from app.core.db import Session
from app.core.deps import AppSettings
from app.core.errors import Forbidden, Unauthorized
from app.core.security import DEVICE_TOKEN_PREFIX, InvalidToken, decode_staff_token

oauth2_scheme = OAuth2PasswordBearer(
    tokenUrl="/v1/auth/token",
    auto_error=False,
    scheme_name="StaffLogin",
    description="Staff: log in with email and password.",
)
bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="DeviceToken",
    description="Residents: the token returned by POST /v1/devices.",
)


async def get_principal(
    request: Request,
    session: Session,
    settings: AppSettings,
    oauth_token: Annotated[str | None, Depends(oauth2_scheme)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    token = oauth_token or (bearer.credentials if bearer else None)
    if not token:
        raise Unauthorized("A bearer token is required.")
    if token.startswith(DEVICE_TOKEN_PREFIX):
        # id + organisation only (no ORM entity): nothing reads `Principal.device` on the hot
        # paths, and the lighter lookup is measurable on single pings (docs/benchmarks.md)
        identity = await service.device_identity_for_token(
            session, token, getattr(request.app.state, "device_tokens", None)
        )
        if identity is None:
            raise Unauthorized("The device token is not valid.")
        return Principal("device", identity[0], identity[1], None)
    try:
        claims = decode_staff_token(settings, token)
    except InvalidToken as exc:
        raise Unauthorized("The access token is not valid or has expired.") from exc
    user = await service.get_user(session, claims.user_id)
    if user is None or not user.is_active or user.organisation_id != claims.organisation_id:
        raise Unauthorized("The account is no longer active.")
    if claims.token_version != user.token_version:
        raise Unauthorized("This session was ended by an administrator: sign in again.")
    return Principal("staff", user.id, user.organisation_id, user.role, staff=user)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def forget_device_token(request: Request, device_id: uuid.UUID) -> None:
    """A device is being erased: stop answering its token from this process's cache now."""
    cache = getattr(request.app.state, "device_tokens", None)
    if cache is not None:
        cache.invalidate_device(device_id)


async def get_staff(principal: CurrentPrincipal) -> Principal:
    if not principal.is_staff:
        raise Forbidden("This endpoint is for council staff.")
    return principal


async def get_device(principal: CurrentPrincipal) -> Principal:
    if principal.kind != "device":
        raise Forbidden("This endpoint is for resident devices.")
    return principal


CurrentStaff = Annotated[Principal, Depends(get_staff)]
CurrentDevice = Annotated[Principal, Depends(get_device)]


def require_roles(*roles: Role) -> Callable[[Principal], Awaitable[Principal]]:
    allowed = set(roles)

    async def check(principal: CurrentStaff) -> Principal:
        if principal.role not in allowed:
            names = ", ".join(sorted(r.value for r in allowed))
            raise Forbidden(f"This action needs one of the roles: {names}.")
        return principal

    return check


AdminUser = Annotated[Principal, Depends(require_roles(Role.admin))]
EditorUser = Annotated[Principal, Depends(require_roles(Role.admin, Role.editor))]
FieldWorker = Annotated[Principal, Depends(require_roles(Role.field_worker))]
