"""VAPID (RFC 8292): the server's P-256 key pair and one cached ES256 JWT per push origin."""

from __future__ import annotations

import base64
import os
import time
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from app.core.config import Environment, Settings

MAX_JWT_TTL_S = 24 * 3600
DEFAULT_KEY_FILE = "vapid_private_key.pem"


class VapidKeyError(RuntimeError):
    """The configured VAPID private key is missing or unusable."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def b64url_decode(value: str) -> bytes:
    """Decode base64url with or without padding (browsers send it unpadded)."""
    value = value.strip()
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def generate_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_key_raw(key: ec.EllipticCurvePublicKey) -> bytes:
    """The uncompressed point (65 bytes): the browser's `applicationServerKey`."""
    return key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def parse_private_key(value: str | bytes) -> ec.EllipticCurvePrivateKey:
    """A PEM (PKCS#8 or SEC1) key, or the raw 32-byte scalar as base64url (py-vapid's format)."""
    raw = value.encode() if isinstance(value, str) else value
    try:
        if b"-----BEGIN" in raw:
            key = serialization.load_pem_private_key(raw, password=None)
        else:
            scalar = b64url_decode(raw.decode("ascii"))
            if len(scalar) != 32:
                raise ValueError("a raw VAPID private key is 32 bytes")
            key = ec.derive_private_key(int.from_bytes(scalar, "big"), ec.SECP256R1())
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise VapidKeyError(f"the VAPID private key cannot be read: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise VapidKeyError("the VAPID private key must be an EC P-256 key")
    return key


def write_key_file(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """Write atomically and never over an existing key (`FileExistsError` if one appeared):
    several processes starting at once must all end up with the same, complete key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(private_key_pem(key))
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_private_key(settings: Settings) -> ec.EllipticCurvePrivateKey:
    """From `vapid_private_key`, else `vapid_private_key_file`, else (not in production) a key
    generated once under `data_dir` and reused on every later start."""
    if settings.vapid_private_key:
        return parse_private_key(settings.vapid_private_key)
    if settings.vapid_private_key_file:
        try:
            return parse_private_key(settings.vapid_private_key_file.read_bytes())
        except OSError as exc:
            raise VapidKeyError(f"cannot read {settings.vapid_private_key_file}: {exc}") from exc
    if settings.environment is Environment.production:
        raise VapidKeyError(
            "set HEREABOUTS_VAPID_PRIVATE_KEY_FILE (create one with `hereabouts vapid generate`)"
        )
    path = settings.data_dir / DEFAULT_KEY_FILE
    if not path.exists():
        try:
            write_key_file(path, generate_private_key())
        except FileExistsError:
            pass  # another process created it first: use theirs
    return parse_private_key(path.read_bytes())


@dataclass
class _CachedToken:
    header: str
    expires_at: float


class VapidSigner:
    """Signs the VAPID JWT. One token per push-service origin, reused until shortly before it
    expires (push services verify a signature per request; re-signing per message is waste)."""

    def __init__(
        self,
        private_key: ec.EllipticCurvePrivateKey,
        subject: str,
        ttl_s: int = 12 * 3600,
        refresh_margin_s: int = 600,
    ) -> None:
        if not (subject.startswith("mailto:") or subject.startswith("https://")):
            raise VapidKeyError("the VAPID subject must be a mailto: or https: URL")
        self._key = private_key
        self.subject = subject
        self.ttl_s = min(ttl_s, MAX_JWT_TTL_S)
        self.refresh_margin_s = min(refresh_margin_s, self.ttl_s // 2)
        self.public_key = b64url(public_key_raw(private_key.public_key()))
        self._cache: dict[str, _CachedToken] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> VapidSigner:
        return cls(load_private_key(settings), settings.vapid_subject, settings.push_jwt_ttl_s)

    def authorization(self, origin: str, now: float | None = None) -> str:
        """The `Authorization: vapid t=..., k=...` header value for `origin`."""
        now = time.time() if now is None else now
        cached = self._cache.get(origin)
        if cached is not None and cached.expires_at - self.refresh_margin_s > now:
            return cached.header
        exp = int(now) + self.ttl_s
        # A fresh claims dict per token: nothing shared is mutated between origins.
        claims = {"aud": origin, "exp": exp, "sub": self.subject}
        token = jwt.encode(claims, self._key, algorithm="ES256")
        header = f"vapid t={token}, k={self.public_key}"
        self._cache[origin] = _CachedToken(header, exp)
        return header
