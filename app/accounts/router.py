from __future__ import annotations

import math
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.security import OAuth2PasswordRequestForm

from app.accounts import service
from app.accounts.dependencies import AdminUser, CurrentPrincipal, EditorUser
from app.accounts.errors import InvalidCredentials
from app.accounts.models import Role
from app.accounts.schemas import (
    DeviceCreate,
    DeviceRegistered,
    Me,
    OrganisationRead,
    PasswordReset,
    Token,
    UserCreate,
    UserCreated,
    UserRead,
    UserUpdate,
    UserUpdated,
)
from app.audit import service as audit_service
from app.audit.schemas import AuditEntryRead
from app.core.db import Session
from app.core.deps import AppSettings
from app.core.errors import Forbidden, TooManyRequests
from app.core.pagination import Page, Pagination
from app.core.ratelimit import RateLimiter, Rule, client_ip, login_throttle_key, rate_limited
from app.core.types import BoundedDatetime

router = APIRouter(prefix="/v1", tags=["accounts"])
# an IP that logged in to an account successfully within this time is exempt from that
# account's global failed-login limit (not from the per-IP one)
KNOWN_LOGIN_IP_S = 30 * 24 * 3600


@router.post(
    "/auth/token",
    response_model=Token,
    dependencies=[Depends(rate_limited("auth"))],
    responses={401: {"description": "Wrong email or password"}, 429: {"description": "Throttled"}},
)
async def login(
    request: Request,
    session: Session,
    settings: AppSettings,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
) -> Token:
    """Staff login (OAuth2 password flow): email as `username`, returns a short-lived bearer JWT."""
    limiter: RateLimiter = request.app.state.rate_limiter
    # Failed logins are throttled per (account, client IP) pair, so whoever fails from one place
    # cannot lock the owner out from theirs; and, more slowly, per account, against guessing from
    # many IPs, except from IPs that logged in to this account successfully before.
    pair_rule = Rule(
        settings.login_failures_per_account_ip_per_hour / 60,
        settings.login_failures_per_account_ip_per_hour,
    )
    account_rule = Rule(
        settings.login_failures_per_account_per_hour / 60,
        settings.login_failures_per_account_per_hour,
    )
    account = login_throttle_key(form.username)
    pair = f"{account}:{client_ip(request)}"
    known = limiter.marked_within("login-known", pair, KNOWN_LOGIN_IP_S)
    waits = [limiter.peek("login-failures-pair", pair, pair_rule)]
    if not known:
        waits.append(limiter.peek("login-failures-account", account, account_rule))
    wait = max(waits)
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise TooManyRequests(
            "Too many failed logins for this account; try again later.",
            headers={"Retry-After": str(seconds)},
            extra={"retry_after_s": seconds},
        )
    try:
        token, _user = await service.authenticate(session, settings, form.username, form.password)
    except InvalidCredentials:
        limiter.hit("login-failures-pair", pair, pair_rule)
        limiter.hit("login-failures-account", account, account_rule)
        raise
    limiter.mark("login-known", pair)
    return Token(access_token=token, expires_in=settings.access_token_ttl_s)


@router.post(
    "/devices",
    response_model=DeviceRegistered,
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(rate_limited("devices"))],
)
async def register_device(session: Session, body: DeviceCreate | None = None) -> DeviceRegistered:
    """Register a resident device anonymously; no personal data is needed."""
    body = body or DeviceCreate()
    device, token = await service.register_device(session, body.organisation, body.platform)
    return DeviceRegistered(
        device_id=device.id, organisation_id=device.organisation_id, token=token
    )


@router.get("/me", response_model=Me)
async def me(session: Session, principal: CurrentPrincipal) -> Me:
    """Who the bearer is: a staff user (with role) or a resident device."""
    org = await service.get_organisation(session, principal.organisation_id)
    staff = principal.staff
    return Me(
        kind=principal.kind,
        id=principal.id,
        organisation=OrganisationRead.model_validate(org),
        role=principal.role,
        email=staff.email if staff else None,
        full_name=staff.full_name if staff else None,
    )


@router.post(
    "/users",
    response_model=UserCreated,
    status_code=status.HTTP_201_CREATED,
    # no password of any kind in the answer unless one was generated
    response_model_exclude_none=True,
)
async def create_user(session: Session, admin: AdminUser, body: UserCreate) -> UserCreated:
    """Admin: create (or, without a password, invite) a staff account in the organisation."""
    temporary = None if body.password else service.temporary_password()
    user = await service.create_user(
        session,
        admin.organisation_id,
        email=str(body.email),
        full_name=body.full_name,
        password=body.password or temporary or "",
        role=body.role,
    )
    await audit_service.record(
        session,
        admin,
        "user.invite" if temporary else "user.create",
        "user",
        user.id,
        {"email": user.email, "role": user.role},
    )
    return UserCreated(**UserRead.model_validate(user).model_dump(), temporary_password=temporary)


@router.patch("/users/{user_id}", response_model=UserUpdated)
async def update_user(
    session: Session, admin: AdminUser, user_id: uuid.UUID, body: UserUpdate
) -> UserUpdated:
    """Admin: rename, change role, deactivate or reactivate; role and activity end sessions."""
    fields = body.model_dump(exclude_unset=True)
    user, revoked = await service.update_user(session, admin, user_id, **fields)
    await audit_service.record(
        session,
        admin,
        "user.update",
        "user",
        user.id,
        {**{k: str(v) for k, v in fields.items()}, "sessions_ended": revoked},
    )
    return UserUpdated(**UserRead.model_validate(user).model_dump(), sessions_ended=revoked)


@router.post("/users/{user_id}/password-reset", response_model=PasswordReset)
async def reset_password(session: Session, admin: AdminUser, user_id: uuid.UUID) -> PasswordReset:
    """Admin: a new temporary password for the user (shown once); their sessions end."""
    password = await service.reset_password(session, admin, user_id)
    await audit_service.record(session, admin, "user.password_reset", "user", user_id, {})
    return PasswordReset(temporary_password=password)


@router.get("/users", response_model=Page[UserRead])
async def list_users(
    session: Session,
    staff: EditorUser,
    page: Pagination,
    role: Annotated[Role | None, Query()] = None,
) -> Page[UserRead]:
    """Admin: staff accounts of the organisation. Editors: its field workers (`role=field_worker`),
    so they can assign tasks."""
    if staff.role is not Role.admin and role is not Role.field_worker:
        raise Forbidden("Editors may list field workers only (role=field_worker).")
    rows, next_cursor = await service.list_users(session, staff.organisation_id, page, role)
    return Page[UserRead](items=[UserRead.model_validate(u) for u in rows], next_cursor=next_cursor)


@router.get("/users/{user_id}", response_model=UserRead)
async def get_user(session: Session, admin: AdminUser, user_id: uuid.UUID) -> UserRead:
    """Admin: one staff account of the admin's organisation (404 for any other)."""
    return UserRead.model_validate(
        await service.get_user_in_org(session, admin.organisation_id, user_id)
    )


# The audit log imports no domain; its admin reader is served here with the other admin routes.
@router.get("/audit", response_model=Page[AuditEntryRead], tags=["audit"])
async def list_audit(
    *,
    session: Session,
    admin: AdminUser,
    page: Pagination,
    entity_type: Annotated[str | None, Query(max_length=32)] = None,
    entity_id: Annotated[uuid.UUID | None, Query()] = None,
    actor_id: Annotated[uuid.UUID | None, Query()] = None,
    since: Annotated[BoundedDatetime | None, Query()] = None,
) -> Page[AuditEntryRead]:
    """Admin: who changed what in this organisation, newest first."""
    rows, next_cursor = await audit_service.list_entries(
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
