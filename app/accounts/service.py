"""Account rules. Services flush, never commit: the request's session commits once."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts import repository
from app.accounts.errors import (
    AccountErased,
    CannotChangeSelf,
    EmailUnavailable,
    InvalidCredentials,
    UnknownOrganisation,
    UserNotFound,
)
from app.accounts.models import ERASED_PASSWORD_HASH, Device, Organisation, Role, StaffUser
from app.accounts.principal import Principal
from app.accounts.tokens import DeviceTokenCache
from app.core.config import Settings
from app.core.errors import Unprocessable
from app.core.localtime import known_zone
from app.core.pagination import PageParams, trim_page
from app.core.security import (
    StaffClaims,
    hash_password,
    hash_token,
    issue_staff_token,
    new_device_token,
    verify_password,
)


async def create_organisation(session: AsyncSession, slug: str, name: str) -> Organisation:
    org = Organisation(slug=slug, name=name)
    await repository.add(session, org)
    return org


async def get_or_create_organisation(session: AsyncSession, slug: str, name: str) -> Organisation:
    existing = await repository.get_organisation_by_slug(session, slug)
    return existing or await create_organisation(session, slug, name)


async def get_organisation(session: AsyncSession, organisation_id: uuid.UUID) -> Organisation:
    org = await repository.get_organisation(session, organisation_id)
    if org is None:
        raise UnknownOrganisation()
    return org


async def local_zone(
    session: AsyncSession, settings: Settings, organisation_id: uuid.UUID
) -> ZoneInfo:
    """The zone of times written for the organisation's people: its own, else the setting."""
    org = await repository.get_organisation(session, organisation_id)
    if org is not None and org.time_zone and known_zone(org.time_zone):
        return ZoneInfo(org.time_zone)
    return ZoneInfo(settings.time_zone)


async def get_organisation_by_slug(session: AsyncSession, slug: str) -> Organisation:
    org = await repository.get_organisation_by_slug(session, slug)
    if org is None:
        raise UnknownOrganisation(f"No organisation {slug!r}.")
    return org


async def set_time_zone(session: AsyncSession, slug: str, zone: str | None) -> Organisation:
    """Set (or with None clear) an organisation's own time zone (operators: the CLI)."""
    if zone is not None and not known_zone(zone):
        raise Unprocessable(
            f"{zone!r} is not an IANA time zone (e.g. Europe/London).", extra={"field": "zone"}
        )
    org = await get_organisation_by_slug(session, slug)
    org.time_zone = zone
    await session.flush()
    return org


async def create_user(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    *,
    email: str,
    full_name: str,
    password: str,
    role: Role,
) -> StaffUser:
    # Emails are login names, unique across the deployment. Whether the address is used here or
    # in another organisation, the answer is the same and says neither (docs/security.md).
    if await repository.get_user_by_email(session, email) is not None:
        raise EmailUnavailable()
    user = StaffUser(
        organisation_id=organisation_id,
        email=email.lower(),
        full_name=full_name,
        password_hash=hash_password(password),
        role=role,
    )
    await repository.add(session, user)
    return user


async def authenticate(
    session: AsyncSession, settings: Settings, email: str, password: str
) -> tuple[str, StaffUser]:
    user = await repository.get_user_by_email(session, email)
    ok = verify_password(user.password_hash if user else None, password)
    if user is None or not ok or not user.is_active:
        raise InvalidCredentials("Email or password is wrong.")
    await repository.touch_login(session, user.id, datetime.now(UTC))
    token = issue_staff_token(
        settings,
        StaffClaims(
            user_id=user.id,
            organisation_id=user.organisation_id,
            role=user.role,
            token_version=user.token_version,
        ),
    )
    return token, user


async def get_user_in_org(
    session: AsyncSession, organisation_id: uuid.UUID, user_id: uuid.UUID
) -> StaffUser:
    user = await repository.get_user_in_org(session, organisation_id, user_id)
    if user is None:
        raise UserNotFound()
    return user


async def names_in_org(
    session: AsyncSession, organisation_id: uuid.UUID, user_ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[str, Role]]:
    """Staff members' names and roles by id (only those of the organisation)."""
    if not user_ids:
        return {}
    return await repository.names_in_org(session, organisation_id, user_ids)


async def list_users(
    session: AsyncSession, organisation_id: uuid.UUID, page: PageParams, role: Role | None = None
) -> tuple[list[StaffUser], str | None]:
    rows = await repository.list_users(session, organisation_id, page, role)
    return trim_page(rows, page)


async def register_device(
    session: AsyncSession, organisation_slug: str | None, platform: str | None
) -> tuple[Device, str]:
    if organisation_slug:
        org = await repository.get_organisation_by_slug(session, organisation_slug)
        if org is None:
            raise UnknownOrganisation(f"No organisation {organisation_slug!r}.")
    else:
        orgs = await repository.list_organisations(session, limit=2)
        if len(orgs) != 1:
            raise UnknownOrganisation(
                "This deployment hosts several organisations; say which one with `organisation`."
                if orgs
                else "No organisation exists yet."
            )
        org = orgs[0]
    token = new_device_token()
    device = Device(organisation_id=org.id, token_hash=hash_token(token), platform=platform)
    await repository.add(session, device)
    return device, token


async def device_for_token(session: AsyncSession, token: str) -> Device | None:
    return await repository.get_device_by_token_hash(session, hash_token(token))


async def device_identity_for_token(
    session: AsyncSession, token: str, cache: DeviceTokenCache | None = None
) -> tuple[uuid.UUID, uuid.UUID] | None:
    """(device id, organisation id) of a valid device token: the per-request auth lookup.

    From `cache` when it can answer (app.accounts.tokens), else from the database.
    """
    token_hash = hash_token(token)
    if cache is None:
        return await repository.device_identity_by_token_hash(session, token_hash)
    identity = cache.get(token_hash)
    if identity is None:
        generation = cache.generation
        identity = await repository.device_identity_by_token_hash(session, token_hash)
        if identity is not None:
            cache.put(token_hash, identity, generation)
    return identity


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> StaffUser | None:
    return await repository.get_user(session, user_id)


async def erase_device(session: AsyncSession, device_id: uuid.UUID) -> None:
    await repository.delete_device(session, device_id)


def temporary_password() -> str:
    """A password for an invitation or a reset, shown once to the admin to pass on."""
    return secrets.token_urlsafe(12)


def revoke_tokens(user: StaffUser) -> None:
    """Every access token issued to the user so far stops working at its next request."""
    user.token_version = (user.token_version or 0) + 1


ERASED_NAME = "Erased staff member"


def _refuse_if_erased(user: StaffUser) -> None:
    """An erased account stays as a pseudonym for past work: it is never signed in again."""
    if user.erased:
        raise AccountErased(
            "This account was erased; invite the person again if they come back.",
            extra={"field": "is_active"},
        )


async def anonymise_user(
    session: AsyncSession, organisation_id: uuid.UUID, user_id: uuid.UUID
) -> StaffUser:
    """Erasure of a staff member: the account stays (tasks, transitions and the audit log point
    to it) but names nobody: no name, no email, no password; its sessions end now."""
    user = await get_user_in_org(session, organisation_id, user_id)
    user.email = f"erased-{user.id.hex}@erased.example"
    user.full_name = ERASED_NAME
    user.password_hash = ERASED_PASSWORD_HASH
    user.is_active = False
    user.last_login_at = None
    revoke_tokens(user)
    await session.flush()
    return user


async def update_user(
    session: AsyncSession,
    admin: Principal,
    user_id: uuid.UUID,
    *,
    full_name: str | None = None,
    role: Role | None = None,
    is_active: bool | None = None,
) -> tuple[StaffUser, bool]:
    """Admin: rename, change the role of, (de)activate a staff account; returns (user, revoked).

    A role change or a deactivation ends the user's sessions at once (their tokens stop working).
    An admin cannot demote or deactivate themselves, so an organisation keeps an admin.
    """
    user = await get_user_in_org(session, admin.organisation_id, user_id)
    if user.id == admin.id and (
        (role is not None and role is not Role.admin) or is_active is False
    ):
        raise CannotChangeSelf(
            "You cannot remove your own admin role or deactivate yourself; ask another admin.",
            extra={"field": "role" if role is not None else "is_active"},
        )
    if user.erased and (is_active or role is not None):
        _refuse_if_erased(user)
    revoke = (role is not None and role != user.role) or (
        is_active is not None and is_active != user.is_active
    )
    if full_name is not None:
        user.full_name = full_name
    if role is not None:
        user.role = role
    if is_active is not None:
        user.is_active = is_active
    if revoke:
        revoke_tokens(user)
    user.updated_at = datetime.now(UTC)
    await session.flush()
    return user, revoke


async def reset_password(session: AsyncSession, admin: Principal, user_id: uuid.UUID) -> str:
    """Admin: give the user a new temporary password (returned once); their sessions end."""
    user = await get_user_in_org(session, admin.organisation_id, user_id)
    _refuse_if_erased(user)
    password = temporary_password()
    user.password_hash = hash_password(password)
    revoke_tokens(user)
    user.updated_at = datetime.now(UTC)
    await session.flush()
    return password
