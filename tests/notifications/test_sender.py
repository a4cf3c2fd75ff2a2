"""The sender against a real (fake) push service: headers, VAPID, encryption, answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from app.core.config import Settings
from app.notifications.sender import MAX_PLAINTEXT_BYTES, Outcome, PushMessage, PushSender
from app.notifications.vapid import VapidSigner
from tests.notifications.fake_push import FakePushService, FakeSubscription


@pytest.fixture
async def sender(push_settings: Settings, signer: VapidSigner) -> AsyncIterator[PushSender]:
    s = PushSender(push_settings.model_copy(update={"push_timeout_s": 1.0}), signer)
    yield s
    await s.aclose()


def message(sub: FakeSubscription, payload: bytes = b'{"title":"hi"}', **kw: object) -> PushMessage:
    fields: dict[str, object] = {
        "endpoint": sub.endpoint,
        "p256dh": sub.p256dh,
        "auth": sub.auth_b64,
        "payload": payload,
        "ttl_s": 3600,
        "urgency": "high",
        "topic": "Library42",
    }
    fields.update(kw)
    return PushMessage(**fields)  # type: ignore[arg-type]


async def test_delivered_message_is_decryptable_and_correctly_signed(
    sender: PushSender, fake_push: FakePushService
) -> None:
    sub = fake_push.subscribe()
    result = await sender.send(message(sub))
    assert result.outcome is Outcome.delivered
    assert result.http_status == 201
    assert fake_push.violations == []
    [got] = fake_push.received
    assert got.plaintext == b'{"title":"hi"}'
    assert got.headers["TTL"] == "3600"
    assert got.headers["Urgency"] == "high"
    assert got.headers["Topic"] == "Library42"
    assert got.headers["Content-Encoding"] == "aes128gcm"
    assert got.claims["aud"] == fake_push.origin
    assert got.claims["sub"] == "mailto:push-tests@council.example"


async def test_one_jwt_is_reused_for_every_message_to_one_origin(
    sender: PushSender, fake_push: FakePushService, other_fake_push: FakePushService
) -> None:
    subs = [fake_push.subscribe() for _ in range(3)]
    other = other_fake_push.subscribe()
    for sub in subs:
        await sender.send(message(sub))
    await sender.send(message(other))
    tokens = {r.headers["Authorization"] for r in fake_push.received}
    assert len(tokens) == 1
    assert other_fake_push.received[0].headers["Authorization"] not in tokens
    assert other_fake_push.received[0].claims["aud"] == other_fake_push.origin


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        (404, Outcome.gone),
        (410, Outcome.gone),
        (400, Outcome.failed),
        (401, Outcome.failed),
        (403, Outcome.failed),
        (413, Outcome.failed),
        (500, Outcome.retry),
        (503, Outcome.retry),
    ],
)
async def test_push_service_answers_are_classified(
    sender: PushSender, fake_push: FakePushService, answer: int, outcome: Outcome
) -> None:
    sub = fake_push.subscribe()
    fake_push.script(sub, answer)
    result = await sender.send(message(sub))
    assert (result.outcome, result.http_status) == (outcome, answer)
    assert fake_push.violations == []


async def test_429_retry_after_in_seconds_and_as_http_date(
    sender: PushSender, fake_push: FakePushService
) -> None:
    sub = fake_push.subscribe()
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    fake_push.script(sub, (429, "30"), (429, when))
    first = await sender.send(message(sub))
    second = await sender.send(message(sub))
    assert first.outcome is Outcome.retry
    assert first.retry_after_s == 30.0
    assert second.outcome is Outcome.retry
    assert second.retry_after_s is not None
    assert 100 <= second.retry_after_s <= 120


async def test_a_hanging_push_service_times_out_as_retryable(
    sender: PushSender, fake_push: FakePushService
) -> None:
    sub = fake_push.subscribe()
    fake_push.script(sub, "hang")
    result = await sender.send(message(sub))
    assert result.outcome is Outcome.retry
    assert result.error is not None
    assert result.error.startswith("timeout")


async def test_redirects_are_not_followed(sender: PushSender, fake_push: FakePushService) -> None:
    sub = fake_push.subscribe()
    fake_push.script(sub, 307)
    result = await sender.send(message(sub))
    assert result.outcome is Outcome.failed
    assert fake_push.requests == 1


async def test_oversized_payload_is_refused_before_sending(
    sender: PushSender, fake_push: FakePushService
) -> None:
    sub = fake_push.subscribe()
    result = await sender.send(message(sub, payload=b"x" * (MAX_PLAINTEXT_BYTES + 1)))
    assert result.outcome is Outcome.failed
    assert fake_push.requests == 0
    fitting = await sender.send(message(sub, payload=b"x" * MAX_PLAINTEXT_BYTES))
    assert fitting.outcome is Outcome.delivered


async def test_loopback_is_refused_at_send_time_without_the_test_setting(
    push_settings: Settings, signer: VapidSigner, fake_push: FakePushService
) -> None:
    strict = PushSender(push_settings.model_copy(update={"push_allow_loopback": False}), signer)
    try:
        sub = fake_push.subscribe()
        result = await strict.send(
            message(sub, endpoint=sub.endpoint.replace("127.0.0.1", "localhost"))
        )
    finally:
        await strict.aclose()
    assert result.outcome is Outcome.failed
    assert result.error is not None
    assert "non-global" in result.error
    assert fake_push.requests == 0


async def test_per_origin_concurrency_is_capped(
    push_settings: Settings, signer: VapidSigner, fake_push: FakePushService
) -> None:
    capped = PushSender(push_settings.model_copy(update={"push_per_origin_concurrency": 2}), signer)
    subs = [fake_push.subscribe() for _ in range(5)]
    for sub in subs:
        fake_push.script(sub, "hang")
    tasks = [asyncio.create_task(capped.send(message(sub))) for sub in subs]
    try:
        for _ in range(200):
            if fake_push.hanging == 2:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        assert fake_push.hanging == 2
        fake_push.release.set()
        results = await asyncio.gather(*tasks)
    finally:
        await capped.aclose()
    assert all(r.outcome is Outcome.delivered for r in results)
