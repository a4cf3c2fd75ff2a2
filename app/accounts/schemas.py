from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from app.accounts.models import Role


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Token(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class DeviceCreate(StrictModel):
    organisation: str | None = Field(
        default=None,
        max_length=64,
        description="Organisation slug; defaults to the deployment's only/default organisation.",
    )
    platform: Literal["web", "android", "ios", "other"] | None = None


class DeviceRegistered(BaseModel):
    device_id: uuid.UUID
    organisation_id: uuid.UUID
    token: str = Field(description="Opaque bearer token; shown once, stored only as a hash.")


class OrganisationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    slug: str
    name: str


class UserCreate(StrictModel):
    email: EmailStr
    full_name: str = Field(min_length=1, max_length=200)
    password: str | None = Field(
        default=None,
        min_length=10,
        max_length=256,
        description="Omit to invite: a temporary password is generated and returned once.",
    )
    role: Role


class UserUpdate(StrictModel):
    """Admin: any of these; a role change or deactivation ends the user's sessions at once."""

    full_name: str | None = Field(default=None, min_length=1, max_length=200)
    role: Role | None = None
    is_active: bool | None = None


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    organisation_id: uuid.UUID
    email: str
    full_name: str
    role: Role
    is_active: bool
    erased: bool = Field(default=False, description="Erased: a pseudonym kept for past work.")
    created_at: datetime
    last_login_at: datetime | None = None


class UserCreated(UserRead):
    temporary_password: str | None = Field(
        default=None, description="Only when invited without a password: pass it on once."
    )


class UserUpdated(UserRead):
    sessions_ended: bool = Field(description="The user's tokens were revoked by this change.")


class PasswordReset(BaseModel):
    temporary_password: str = Field(description="Shown once: pass it on to the user.")


class Me(BaseModel):
    kind: Literal["staff", "device"]
    id: uuid.UUID
    organisation: OrganisationRead
    role: Role | None = None
    email: str | None = None
    full_name: str | None = None
