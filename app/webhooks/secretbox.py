"""Endpoints' signing secrets, encrypted at rest (Fernet: AES-128-CBC + HMAC-SHA256).

The database holds only `fernet:<token>`; the key lives outside it, provisioned like the VAPID
key: `webhook_secret_key`, else `webhook_secret_key_file`, else (not in production) a key
generated once into `<data_dir>/webhook_secret_key` (mode 0600) and reused on every later start.
Keys listed in `webhook_previous_secret_keys` still decrypt, so the key can be rotated: set the
new key and keep the old one listed while secrets sealed with it remain (a secret written after
the change — a new endpoint, a rotation — is sealed with the new key; `hereabouts webhooks
rekey` re-seals the others with it: `reseal`; docs/operations.md).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from app.core.config import Environment, Settings

DEFAULT_KEY_FILE = "webhook_secret_key"
PREFIX = "fernet:"


class SecretKeyError(RuntimeError):
    """The key cannot be read, is missing in production, or does not open a stored secret."""


def _write_key_file(path: Path) -> None:
    """Atomically and never over an existing key (as the VAPID and JWT keys are written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(Fernet.generate_key() + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process created it first: use theirs
    finally:
        tmp.unlink(missing_ok=True)


def current_key(settings: Settings) -> str:
    if settings.webhook_secret_key:
        return settings.webhook_secret_key.strip()
    if settings.webhook_secret_key_file:
        try:
            return settings.webhook_secret_key_file.read_text().strip()
        except OSError as exc:
            raise SecretKeyError(f"cannot read {settings.webhook_secret_key_file}: {exc}") from exc
    if settings.environment is Environment.production:
        raise SecretKeyError(
            "set HEREABOUTS_WEBHOOK_SECRET_KEY_FILE to a file holding a Fernet key "
            "(e.g. `openssl rand -base64 32 | tr '+/' '-_'`)"
        )
    path = settings.data_dir / DEFAULT_KEY_FILE
    if not path.exists():
        _write_key_file(path)
    return path.read_text().strip()


@lru_cache(maxsize=8)
def _box(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    except (ValueError, TypeError) as exc:
        raise SecretKeyError(
            "a webhook secret key is not a Fernet key (32 bytes, URL-safe base64)"
        ) from exc


def box(settings: Settings) -> MultiFernet:
    """The current key first (it encrypts), then the previous ones (they only decrypt)."""
    return _box((current_key(settings), *settings.webhook_previous_secret_keys))


def seal(settings: Settings, secret: str) -> str:
    """What the database stores for `secret`."""
    return PREFIX + box(settings).encrypt(secret.encode()).decode("ascii")


def open_sealed(settings: Settings, stored: str) -> str:
    """The secret `seal` stored; `SecretKeyError` if no configured key opens it."""
    if not stored.startswith(PREFIX):
        raise SecretKeyError("a stored webhook secret is not encrypted (run the migrations)")
    try:
        return box(settings).decrypt(stored[len(PREFIX) :].encode("ascii")).decode()
    except InvalidToken as exc:
        raise SecretKeyError(
            "no configured webhook secret key opens a stored secret "
            "(HEREABOUTS_WEBHOOK_PREVIOUS_SECRET_KEYS must hold the key it was sealed with)"
        ) from exc


def reseal(settings: Settings, stored: str) -> str | None:
    """`stored` sealed under the current key, or None when it already is (nothing to write).

    `SecretKeyError` when it is not encrypted or no configured key opens it."""
    if not stored.startswith(PREFIX):
        raise SecretKeyError("a stored webhook secret is not encrypted (run the migrations)")
    token = stored[len(PREFIX) :].encode("ascii")
    try:
        _box((current_key(settings),)).decrypt(token)
        return None  # the current key opens it: already sealed with it
    except InvalidToken:
        pass
    try:
        return PREFIX + box(settings).rotate(token).decode("ascii")
    except InvalidToken as exc:
        raise SecretKeyError("no configured webhook secret key opens a stored secret") from exc
