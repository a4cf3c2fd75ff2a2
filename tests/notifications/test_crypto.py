"""RFC 8291 encryption, RFC 8292 VAPID tokens and the answer classification rules."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from app.notifications.sender import (
    Outcome,
    backoff_s,
    classify,
    encrypt,
    parse_retry_after,
)
from app.notifications.service import topic_for
from app.notifications.vapid import (
    VapidKeyError,
    VapidSigner,
    b64url,
    b64url_decode,
    generate_private_key,
    parse_private_key,
    private_key_pem,
)

# RFC 8291 Appendix A, verbatim.
RFC_PLAINTEXT = b"When I grow up, I want to be a watermelon"
RFC_AS_PRIVATE = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"
RFC_UA_PUBLIC = (
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
)
RFC_UA_PRIVATE = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"
RFC_SALT = "DGv6ra1nlYgDCS1FRnbzlw"
RFC_AUTH = "BTBZMqHH6r4Tts7J_aSIgg"
RFC_BODY = (
    "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27ml"
    "mlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPT"
    "pK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
)


def _key(raw_b64: str) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int.from_bytes(b64url_decode(raw_b64), "big"), ec.SECP256R1())


def test_rfc8291_appendix_a_vector_is_reproduced_byte_for_byte() -> None:
    body = encrypt(
        RFC_PLAINTEXT,
        b64url_decode(RFC_UA_PUBLIC),
        b64url_decode(RFC_AUTH),
        salt=b64url_decode(RFC_SALT),
        sender_key=_key(RFC_AS_PRIVATE),
    )
    assert b64url(body) == RFC_BODY


def test_rfc8291_vector_decrypts_with_the_user_agent_key() -> None:
    import http_ece

    plaintext = http_ece.decrypt(
        b64url_decode(RFC_BODY),
        private_key=_key(RFC_UA_PRIVATE),
        auth_secret=b64url_decode(RFC_AUTH),
        version="aes128gcm",
    )
    assert plaintext == RFC_PLAINTEXT


def test_each_message_uses_a_fresh_salt_and_ephemeral_key() -> None:
    ua = generate_private_key()
    from app.notifications.vapid import public_key_raw

    first = encrypt(b"x", public_key_raw(ua.public_key()), b"a" * 16)
    second = encrypt(b"x", public_key_raw(ua.public_key()), b"a" * 16)
    assert first[:16] != second[:16]
    assert first[21:86] != second[21:86]


def test_vapid_token_is_cached_per_origin_and_signed_for_that_origin() -> None:
    key = generate_private_key()
    signer = VapidSigner(key, "mailto:ops@council.example", ttl_s=12 * 3600)
    now = 1_800_000_000.0
    a1 = signer.authorization("https://fcm.googleapis.com", now)
    a2 = signer.authorization("https://fcm.googleapis.com", now + 3600)
    b = signer.authorization("https://updates.push.services.mozilla.com", now)
    assert a1 == a2
    assert a1 != b
    token = a1.split("t=")[1].split(",")[0]
    claims = jwt.decode(
        token,
        key.public_key(),
        algorithms=["ES256"],
        audience="https://fcm.googleapis.com",
        options={"verify_exp": False},
    )
    assert claims == {
        "aud": "https://fcm.googleapis.com",
        "exp": int(now) + 12 * 3600,
        "sub": "mailto:ops@council.example",
    }
    assert a1.endswith(f"k={signer.public_key}")


def test_vapid_token_is_refreshed_before_it_expires() -> None:
    signer = VapidSigner(generate_private_key(), "mailto:a@b.example", ttl_s=3600)
    now = 1_800_000_000.0
    first = signer.authorization("https://fcm.googleapis.com", now)
    late = signer.authorization("https://fcm.googleapis.com", now + 3600 - 60)
    assert first != late


def test_vapid_expiry_never_exceeds_24_hours() -> None:
    signer = VapidSigner(generate_private_key(), "mailto:a@b.example", ttl_s=7 * 24 * 3600)
    assert signer.ttl_s == 24 * 3600


def test_vapid_subject_must_be_mailto_or_https() -> None:
    with pytest.raises(VapidKeyError):
        VapidSigner(generate_private_key(), "http://council.example")


def test_vapid_private_key_reads_pem_and_raw_forms() -> None:
    key = generate_private_key()
    raw = b64url(key.private_numbers().private_value.to_bytes(32, "big"))
    assert parse_private_key(private_key_pem(key)).private_numbers() == key.private_numbers()
    assert parse_private_key(raw).private_numbers() == key.private_numbers()
    with pytest.raises(VapidKeyError):
        parse_private_key("not a key")


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.delivered),
        (201, Outcome.delivered),
        (202, Outcome.delivered),
        (404, Outcome.gone),
        (410, Outcome.gone),
        (429, Outcome.retry),
        (500, Outcome.retry),
        (502, Outcome.retry),
        (503, Outcome.retry),
        (408, Outcome.retry),
        (400, Outcome.failed),
        (401, Outcome.failed),
        (403, Outcome.failed),
        (413, Outcome.failed),
        (301, Outcome.failed),
    ],
)
def test_answers_are_classified(status: int, outcome: Outcome) -> None:
    assert classify(status)[0] is outcome


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    assert parse_retry_after("120") == 120.0
    date = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(date, now.timestamp()) == pytest.approx(90.0)
    assert parse_retry_after("garbage") is None
    assert parse_retry_after(None) is None
    past = format_datetime(now - timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(past, now.timestamp()) == 0.0


def test_backoff_is_capped_exponential_with_full_jitter() -> None:
    rng = random.Random(7)
    samples = [backoff_s(attempt, 2.0, 60.0, rng) for attempt in range(1, 12) for _ in range(50)]
    assert all(0 <= s <= 60.0 for s in samples)
    early = [backoff_s(1, 2.0, 60.0, rng) for _ in range(200)]
    assert max(early) <= 2.0
    late = [backoff_s(10, 2.0, 60.0, rng) for _ in range(200)]
    assert max(late) > 30.0  # jitter spans the whole capped range


def test_topic_is_stable_and_within_the_allowed_alphabet() -> None:
    import re

    a = topic_for("offer", "library-opening-hours", {})
    assert a == topic_for("offer", "library-opening-hours", {"x": "y"})
    assert re.fullmatch(r"[A-Za-z0-9]{1,32}", a)
    assert topic_for("offer", "Library42", {}) == "Library42"
    assert topic_for("task", None, {"task_id": "1"}) != topic_for("task", None, {"task_id": "2"})
