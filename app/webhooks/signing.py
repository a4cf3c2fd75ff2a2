"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

Headers: `webhook-id` (the message id, the same on every retry and replay), `webhook-timestamp`
(Unix seconds of this attempt) and `webhook-signature`: space-separated `v1,<base64>` where each
is HMAC-SHA256 over `{id}.{timestamp}.{body}` keyed with the bytes of a `whsec_<base64>` secret.
While a rotated secret is still valid, each message carries both signatures.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

PREFIX = "whsec_"


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    if not secret.startswith(PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    return base64.b64decode(secret[len(PREFIX) :])


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature."""
    content = b"%s.%d.%s" % (msg_id.encode(), timestamp, body)
    mac = hmac.new(_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def signature_header(secrets_: list[str], msg_id: str, timestamp: int, body: bytes) -> str:
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets_)


def pseudonym(key: str, person_id: str) -> str:
    """A stable per-endpoint pseudonym for a person: `psn_` + 24 hex digits of an HMAC."""
    mac = hmac.new(bytes.fromhex(key), person_id.encode(), hashlib.sha256).hexdigest()
    return "psn_" + mac[:24]
