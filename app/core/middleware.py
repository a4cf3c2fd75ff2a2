"""Pure-ASGI middleware: body size limit, request metrics/logging, security headers.

Written against raw ASGI rather than `BaseHTTPMiddleware` because they sit on the ping hot path.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import PROBLEM_BASE
from app.core.metrics import REQUEST_COUNT, REQUEST_LATENCY

logger = logging.getLogger("hereabouts.access")


def _problem_bytes(
    status: int, title: str, detail: str, code: str = "payload-too-large", **extra: Any
) -> bytes:
    import orjson

    return orjson.dumps(
        {
            "type": PROBLEM_BASE + code,
            "title": title,
            "status": status,
            "detail": detail,
            **extra,
        }
    )


def _replay(messages: list[Message]) -> Receive:
    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    return receive


def _replay_body(body: bytes, upstream: Receive) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await upstream()

    return receive


class BodyLimitMiddleware:
    """Refuse bodies above `max_bytes` with 413 before the app parses them.

    `larger` lets a few routes take more (a task's completion photo): (method, path regex, bytes).
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        larger: tuple[tuple[str, str, int], ...] = (),
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = tuple((m, re.compile(p), n) for m, p, n in larger)

    def _limit(self, scope: Scope) -> int:
        for method, pattern, limit in self.larger:
            if scope.get("method") == method and pattern.fullmatch(scope.get("path", "")):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope)
        content_length: bytes | None = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                content_length = value
                break
        if content_length is not None or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            try:
                length = int(content_length or b"0")
            except ValueError:
                length = -1
            if length > limit or length < 0:
                await self._reject(send, limit)
                return
            # uvicorn/h11 never deliver more than Content-Length bytes
            await self.app(scope, receive, send)
            return
        # No Content-Length (chunked): read up to the limit before the app sees anything, so the
        # answer is a 413 rather than a body-parsing error halfway through.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message]), send)
                return
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                await self._reject(send, limit)
                return
            chunks.append(body)
            more = message.get("more_body", False)
        await self.app(scope, _replay_body(b"".join(chunks), receive), send)

    async def _reject(self, send: Send, limit: int) -> None:
        body = _problem_bytes(413, "Payload too large", f"The request body exceeds {limit} bytes.")
        await _send_problem(send, 413, body, close=True)


_JSON_NUL = b"\\u0000"


def _json_has_nul_escape(body: bytes) -> bool:
    """A `\\u0000` escape that is not itself an escaped backslash followed by "u0000"."""
    start = body.find(_JSON_NUL)
    while start != -1:
        backslashes = 0
        i = start - 1
        while i >= 0 and body[i] == 0x5C:  # "\\"
            backslashes += 1
            i -= 1
        if backslashes % 2 == 0:
            return True
        start = body.find(_JSON_NUL, start + 1)
    return False


def body_has_nul(body: bytes, content_type: bytes) -> bool:
    """NUL in a request body: a raw byte, `%00` in a form, or a `\\u0000` escape in JSON text."""
    if b"\x00" in body:
        return True
    if content_type.startswith(b"application/x-www-form-urlencoded"):
        return b"\x00" in unquote_to_bytes(body.replace(b"+", b" "))
    # JSON bodies, and JSON files inside multipart uploads (the geofence import)
    return _json_has_nul_escape(body)


class NulByteMiddleware:
    """Refuse U+0000 in any string input — path, query string, JSON or form body — with one 422.

    PostgreSQL text and JSONB cannot hold NUL, so without this each text field needed its own
    check and a forgotten one was a 500. Here is the one place: nothing with a NUL reaches routing
    (bodies are read for POST, PUT and PATCH, the methods the routes take one with).
    `binary` names routes whose body is not text (a photo: (method, path regex)); their URL is
    still checked.
    """

    def __init__(self, app: ASGIApp, binary: tuple[tuple[str, str], ...] = ()) -> None:
        self.app = app
        self.binary = tuple((m, re.compile(p)) for m, p in binary)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_path: bytes = scope.get("raw_path") or b""
        if (
            "\x00" in scope.get("path", "")
            or b"\x00" in unquote_to_bytes(raw_path)
            or b"\x00" in unquote_to_bytes(scope.get("query_string", b""))
        ):
            await self._reject(send, "the URL")
            return
        # Only the methods routes take a body with: any other (TRACE, or DELETE, whose routes
        # read no body) goes on to routing unread, which answers 405 where it is not declared.
        if scope.get("method") not in ("POST", "PUT", "PATCH") or any(
            scope.get("method") == m and p.fullmatch(scope.get("path", "")) for m, p in self.binary
        ):
            await self.app(scope, receive, send)
            return
        # Read the body (BodyLimitMiddleware, outside this one, has capped its size), check it
        # and hand it on in one message.
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message]), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        content_type = b""
        for name, value in scope.get("headers", ()):
            if name == b"content-type":
                content_type = value.lower()
                break
        if body and body_has_nul(body, content_type):
            await self._reject(send, "the request body")
            return
        await self.app(scope, _replay_body(body, receive), send)

    async def _reject(self, send: Send, where: str) -> None:
        body = _problem_bytes(
            422,
            "Validation failed",
            f"NUL characters (U+0000) are not allowed in {where}.",
            code="validation",
            errors=[{"loc": [where], "field": "", "msg": "contains NUL", "type": "nul_character"}],
        )
        await _send_problem(send, 422, body)


async def _send_problem(send: Send, status: int, body: bytes, *, close: bool = False) -> None:
    """A problem+json answer straight from the middleware (the app never sees the request)."""
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _route_template(scope: Scope) -> str:
    route: Any = scope.get("route")
    path: str | None = getattr(route, "path", None)
    return path or "unmatched"


class ObservabilityMiddleware:
    """Prometheus counters/histograms by route template, and an access log without query strings.

    Query strings and bodies can carry coordinates and tokens, so only the route *template*
    (``/v1/geofences/{geofence_id}``) is logged, never the concrete URL.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.extend(SECURITY_HEADERS)
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            route = _route_template(scope)
            method = scope.get("method", "")
            REQUEST_COUNT.labels(method, route, str(status)).inc()
            REQUEST_LATENCY.labels(method, route).observe(elapsed)
            if route != "/metrics":
                logger.info(
                    "request",
                    extra={
                        "method": method,
                        "route": route,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                    },
                )


SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
