"""The push HTTP client on the wire: keep-alive reuse, stale connections, odd answers, limits.

A raw asyncio server on loopback plays the push service so each test controls the bytes and the
connections exactly (the aiohttp fake in fake_push.py hides both).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from app.core.config import Settings
from app.notifications.endpoints import AddressGuard
from app.notifications.http import HttpTransportError, PushHttpClient
from app.notifications.sender import Outcome, PushMessage, PushSender
from app.notifications.vapid import VapidSigner
from tests.notifications.fake_push import FakePushService

CREATED = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"

Answer = Callable[[int], bytes | None]  # request number -> bytes to send (None: say nothing)


@dataclass
class WireServer:
    answer: Answer
    close_after_answer: bool = False
    connections: int = 0
    requests: int = 0
    port: int = 0
    server: asyncio.Server | None = None
    transports: list[asyncio.Transport] = field(default_factory=list)

    async def start(self) -> WireServer:
        self.server = await asyncio.get_running_loop().create_server(
            lambda: _WireProtocol(self), "127.0.0.1", 0
        )
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/push/abc"

    async def stop(self) -> None:
        assert self.server is not None
        for t in self.transports:
            t.abort()
        self.server.close()


class _WireProtocol(asyncio.Protocol):
    def __init__(self, wire: WireServer) -> None:
        self.wire = wire
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.wire.connections += 1
        self.wire.transports.append(transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, rest = self.buffer.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(rest) < length:
                return
            self.buffer = rest[length:]
            self.wire.requests += 1
            out = self.wire.answer(self.wire.requests)
            if out is not None:
                self.transport.write(out)  # type: ignore[attr-defined]
                if self.wire.close_after_answer:
                    self.transport.close()


@pytest.fixture
async def sender(push_settings: Settings, signer: VapidSigner) -> AsyncIterator[PushSender]:
    s = PushSender(push_settings.model_copy(update={"push_timeout_s": 1.0}), signer)
    yield s
    await s.aclose()


def message(endpoint: str, fake: FakePushService | None = None) -> PushMessage:
    sub = (fake or FakePushService(vapid_public_key="x")).subscribe()
    return PushMessage(endpoint, sub.p256dh, sub.auth_b64, b'{"t":1}', 60, "normal", "T1")


async def test_sequential_messages_share_one_keep_alive_connection(sender: PushSender) -> None:
    wire = await WireServer(lambda _n: CREATED).start()
    try:
        results = [await sender.send(message(wire.endpoint)) for _ in range(5)]
    finally:
        await wire.stop()
    assert [r.outcome for r in results] == [Outcome.delivered] * 5
    assert (wire.requests, wire.connections) == (5, 1)


async def test_a_connection_the_service_closed_while_idle_is_replaced_not_failed(
    sender: PushSender,
) -> None:
    # the service answers without `Connection: close` and then drops the connection
    wire = await WireServer(lambda _n: CREATED, close_after_answer=True).start()
    try:
        first = await sender.send(message(wire.endpoint))
        second = await sender.send(message(wire.endpoint))
    finally:
        await wire.stop()
    assert (first.outcome, second.outcome) == (Outcome.delivered, Outcome.delivered)
    assert wire.requests == 2  # each message reached the service once
    assert wire.connections == 2


async def test_connection_close_answers_are_not_reused(sender: PushSender) -> None:
    answer = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    wire = await WireServer(lambda _n: answer).start()
    try:
        for _ in range(3):
            assert (await sender.send(message(wire.endpoint))).outcome is Outcome.delivered
    finally:
        await wire.stop()
    assert (wire.requests, wire.connections) == (3, 3)


async def test_chunked_error_answer_gives_status_retry_after_and_a_short_detail(
    sender: PushSender,
) -> None:
    body = b"x" * 5000
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    answer = (
        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 17\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunked
    )
    wire = await WireServer(lambda n: answer if n == 1 else CREATED).start()
    try:
        first = await sender.send(message(wire.endpoint))
        second = await sender.send(message(wire.endpoint))
    finally:
        await wire.stop()
    assert (first.outcome, first.http_status, first.retry_after_s) == (Outcome.retry, 429, 17.0)
    assert first.error is not None
    assert len(first.error) < 320  # "HTTP 429: " + at most 300 bytes of the body
    assert second.outcome is Outcome.delivered
    assert wire.connections == 1  # the whole chunked body was consumed: connection reusable


async def test_an_oversized_answer_body_closes_the_connection(sender: PushSender) -> None:
    big = b"y" * (200 * 1024)
    answer = b"HTTP/1.1 500 Oops\r\nContent-Length: %d\r\n\r\n%s" % (len(big), big)
    wire = await WireServer(lambda n: answer if n == 1 else CREATED).start()
    try:
        first = await sender.send(message(wire.endpoint))
        second = await sender.send(message(wire.endpoint))
    finally:
        await wire.stop()
    assert (first.outcome, first.http_status) == (Outcome.retry, 500)
    assert second.outcome is Outcome.delivered
    assert wire.connections == 2


async def test_a_request_that_timed_out_never_reuses_its_connection(sender: PushSender) -> None:
    wire = await WireServer(lambda n: None if n == 1 else CREATED).start()
    try:
        first = await sender.send(message(wire.endpoint))
        second = await sender.send(message(wire.endpoint))
    finally:
        await wire.stop()
    assert first.outcome is Outcome.retry
    assert first.error is not None
    assert first.error.startswith("timeout")
    assert second.outcome is Outcome.delivered
    assert wire.connections == 2  # a late answer to the first can never be read as the second's


async def test_garbage_answers_are_retryable_transport_errors(sender: PushSender) -> None:
    wire = await WireServer(lambda _n: b"SMTP ready\r\n\r\n").start()
    try:
        result = await sender.send(message(wire.endpoint))
    finally:
        await wire.stop()
    assert result.outcome is Outcome.retry
    assert result.error is not None
    assert result.error.startswith("transport")


async def test_a_refused_connection_is_retryable(sender: PushSender) -> None:
    wire = await WireServer(lambda _n: CREATED).start()
    endpoint = wire.endpoint
    await wire.stop()
    result = await sender.send(message(endpoint))
    assert result.outcome is Outcome.retry


async def test_header_values_cannot_inject_lines(sender: PushSender) -> None:
    wire = await WireServer(lambda _n: CREATED).start()
    try:
        bad_urgency = message(wire.endpoint)
        bad_urgency = PushMessage(**{**bad_urgency.__dict__, "urgency": "high\r\nX-Evil: 1"})
        result = await sender.send(bad_urgency)
        client = PushHttpClient(
            AddressGuard(allow_loopback=True), connect_timeout_s=1, total_timeout_s=1
        )
        with pytest.raises(ValueError, match="request line"):
            await client.post("http", "127.0.0.1", wire.port, "/a b\r\nX: y", b"", b"")
        await client.aclose()
    finally:
        await wire.stop()
    assert result.outcome is Outcome.failed
    assert wire.requests == 0


def _self_signed(host: str) -> tuple[bytes, bytes]:
    """A throwaway certificate and key for `host` (PEM)."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return (
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


async def test_https_verifies_the_certificate_against_the_host_name(tmp_path: Path) -> None:
    cert_pem, key_pem = _self_signed("localhost")
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    wire = WireServer(lambda _n: CREATED)
    wire.server = await asyncio.get_running_loop().create_server(
        lambda: _WireProtocol(wire), "127.0.0.1", 0, ssl=server_ctx
    )
    wire.port = wire.server.sockets[0].getsockname()[1]
    guard = AddressGuard(allow_loopback=True)
    trusting = ssl.create_default_context(cadata=cert_pem.decode())
    try:
        client = PushHttpClient(guard, connect_timeout_s=2, total_timeout_s=2, ssl_context=trusting)
        answer = await client.post("https", "localhost", wire.port, "/push/a", b"", b"{}")
        await client.aclose()
        # the system trust store does not know this certificate: no connection
        strict = PushHttpClient(guard, connect_timeout_s=2, total_timeout_s=2)
        with pytest.raises((HttpTransportError, ssl.SSLError)):
            await strict.post("https", "localhost", wire.port, "/push/a", b"", b"{}")
        await strict.aclose()
    finally:
        await wire.stop()
    assert answer.status == 201
    assert wire.requests == 1
