"""Credential primitives: argon2 password hashes, staff JWTs, opaque device tokens (hashed)."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from app.core.config import Settings

DEVICE_TOKEN_PREFIX = "hd_"
_hasher = PasswordHasher()
# Verifying against this when the user does not exist keeps login timing uniform.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def new_device_token() -> str:
    return DEVICE_TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Opaque tokens are high-entropy, so a fast hash is enough (and keeps lookups indexable)."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class StaffClaims:
    user_id: uuid.UUID
    organisation_id: uuid.UUID
    role: str
    token_version: int = 0


def issue_staff_token(settings: Settings, claims: StaffClaims, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    payload: dict[str, Any] = {
        "sub": str(claims.user_id),
        "org": str(claims.organisation_id),
        "role": claims.role,
        "tv": claims.token_version,
        "typ": "staff",
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=settings.access_token_ttl_s)).timestamp()),
        "jti": secrets.token_hex(8),
    }
    return jwt.encode(payload, settings.jwt_secret, algorithm=settings.jwt_algorithm)


class InvalidToken(Exception):
    pass


def decode_staff_token(settings: Settings, token: str) -> StaffClaims:
    """Accept tokens signed with the current secret or any previous one (key rotation)."""
    last_error: Exception | None = None
    for secret in [settings.jwt_secret, *settings.jwt_previous_secrets]:
        try:
            payload = jwt.decode(
                token,
                secret,
                algorithms=[settings.jwt_algorithm],
                options={"require": ["exp", "iat", "sub"]},
            )
        except jwt.InvalidSignatureError as exc:
            last_error = exc
            continue
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc
        if payload.get("typ") != "staff":
            raise InvalidToken("not a staff token")
        try:
            return StaffClaims(
                user_id=uuid.UUID(payload["sub"]),
                organisation_id=uuid.UUID(payload["org"]),
                role=str(payload["role"]),
                token_version=int(payload.get("tv", 0)),
            )
        except (KeyError, ValueError) as exc:
            raise InvalidToken("malformed claims") from exc
    raise InvalidToken(str(last_error or "invalid signature"))
