"""`POST /v1/pings` answered without FastAPI's per-request machinery (the common cases).

What most phones send is one fix, answered 202 once it is stored (`router.post_pings`). The
HTTP side of that request cost ~4× the baseline's whole request in the bench profile
(docs/benchmarks.md): route matching, dependency solving (rate limits, session, settings, two
security schemes, the principal), the body parsed with `json` and validated, the answer model
built, dumped and re-encoded. This ASGI middleware answers the same request directly, and only
when nothing about it is unusual:

- `POST /v1/pings` with no query string, a JSON content type and one `Authorization: Bearer
  hd_…` header whose token the in-process token cache already knows (app/accounts/tokens.py:
  it answers only while LISTEN/NOTIFY is healthy, so an erased device's token is refused here
  exactly when it is refused by the route);
- a body that parses (orjson) and passes the route's own rules (`PingBatchIn`, the same as
  `PingBatchCreate`, into plain dicts), of at most `ping_max_batch` fixes: answered 202 when it
  asks for the asynchronous mode (one fix, or `Prefer: respond-async`), else evaluated now by
  the route's `PingGroups` and answered 200 with the route's own answer model (a 100-fix batch
  spent about a third of its API CPU in FastAPI's dependency solving, its second JSON parse and
  its model instances, docs/benchmarks.md);
- rate limits that would let it through (the same buckets and keys as `rate_limited("ingest")`).

Anything else — a missing or unknown token, a staff caller, a validation error,
`?mode=…`, a limit reached — goes on to the route unchanged, which answers it as it always
has (its problem+json, its 401/403/409/413/422/429). Errors raised while storing (background
location off, the database unavailable) are answered by the app's own exception handlers. The
answer is the route's to the byte: same status, headers and JSON. The access log and the
metrics (ObservabilityMiddleware, outside this one) see the route template `/v1/pings` as before.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson
from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.config import Settings
from app.core.metrics import PING_FAST_PATH
from app.core.ratelimit import take_if_free
from app.core.security import DEVICE_TOKEN_PREFIX, hash_token
from app.presence import service
from app.presence.acks import AckGroups
from app.presence.groups import PingGroups
from app.presence.models import SubjectKind
from app.presence.schemas import EventRead, PingBatchIn, PingBatchRead, PingIssue

# the route's body model as plain dicts: the same rules (and so the same values accepted),
# without a model instance per fix
_BODY: TypeAdapter[PingBatchIn] = TypeAdapter(PingBatchIn)
_ANSWER: TypeAdapter[PingBatchRead] = TypeAdapter(PingBatchRead)

PATH = "/v1/pings"
_JSON = b"application/json"
_HEADERS_202 = [(b"preference-applied", b"respond-async")]


class _Route(NamedTuple):
    """What ObservabilityMiddleware reads from `scope["route"]` (the route template)."""

    path: str


_ROUTE = _Route(PATH)


def prefers_async(prefer: str | None) -> bool:
    """RFC 7240: `Prefer: respond-async` (among other preferences, any case)."""
    return any(
        part.split(";")[0].strip().lower() == "respond-async" for part in (prefer or "").split(",")
    )


def _replay(body: bytes, upstream: Receive) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await upstream()

    return receive


class PingFastPath:
    """The 202 path of `POST /v1/pings` in plain ASGI; everything else goes to the app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != PATH
            or scope["method"] != "POST"
            or scope.get("query_string")
        ):
            await self.app(scope, receive, send)
            return
        auth: bytes | None = None
        content_type: bytes | None = None
        prefer: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                if auth is not None:  # two: let the route decide
                    await self.app(scope, receive, send)
                    return
                auth = value
            elif name == b"content-type" and content_type is None:
                content_type = value
            elif name == b"prefer" and prefer is None:  # the route reads the first one too
                prefer = value
        identity = self._identity(scope, auth)
        if (
            identity is None
            # dependency overrides (tests' sessions) are honoured by the route only
            or scope["app"].dependency_overrides
            or content_type is None
            or content_type.split(b";", 1)[0].strip().lower() != _JSON
        ):
            await self.app(scope, receive, send)
            return
        # the body (NulByteMiddleware, outside, hands it over in one message)
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, receive, send)  # the client went away: the route's case
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        app: Any = scope["app"]
        settings: Settings = app.state.settings
        request = self._request(body, settings, prefer)
        if request is None or not take_if_free(
            settings, app.state.rate_limiter, "ingest", scope, auth
        ):
            await self.app(scope, _replay(body, receive), send)
            return
        device_id, organisation_id = identity
        subject = service.Subject(SubjectKind.device, device_id, organisation_id)
        pings, wants_async = request
        batch = service.BatchRequest(subject, pings, True)
        scope["route"] = _ROUTE
        PING_FAST_PATH.inc()
        try:
            if wants_async:
                acks: AckGroups = app.state.ack_groups
                ack = await acks.enqueue(None, batch, sessions=app.state.sessionmaker)
            else:
                result = await _ingest(app, batch)
        except Exception as exc:
            if not await _handled(app, scope, receive, send, exc):
                raise
            return
        if wants_async:
            status, headers = 202, _HEADERS_202
            answer = orjson.dumps(
                {
                    "status": "queued",
                    "accepted": len(ack.accepted),
                    "accepted_ids": ack.accepted,
                    "duplicates": len(ack.duplicates),
                    "duplicate_ids": ack.duplicates,
                    "rejected": ack.rejected,
                    "flagged": ack.flagged,
                }
            )
        else:
            status, headers = 200, []
            answer = _batch_answer(result)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    *headers,
                    (b"content-length", str(len(answer)).encode()),
                    (b"content-type", _JSON),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    @staticmethod
    def _identity(scope: Scope, auth: bytes | None) -> tuple[Any, Any] | None:
        """(device id, organisation id) from the token cache; None: the route decides."""
        if auth is None:
            return None
        scheme, _, param = auth.decode("latin-1").partition(" ")
        token = param.strip()
        if scheme.lower() != "bearer" or not token.startswith(DEVICE_TOKEN_PREFIX):
            return None
        cache = getattr(scope["app"].state, "device_tokens", None)
        if cache is None:
            return None
        return cache.get(hash_token(token))  # type: ignore[no-any-return]

    @staticmethod
    def _request(
        body: bytes, settings: Settings, prefer: bytes | None
    ) -> tuple[list[service.PingInput], bool] | None:
        """The fixes of a request the route would accept, and whether it asks for the 202.

        None: the route decides (a body it would refuse, or too many fixes)."""
        try:
            parsed = _BODY.validate_python(orjson.loads(body))
        except (orjson.JSONDecodeError, ValidationError):
            return None
        pings = parsed["pings"]
        if len(pings) > settings.ping_max_batch:
            return None
        wants_async = len(pings) == 1 or prefers_async(
            prefer.decode("latin-1") if prefer is not None else None
        )
        in_utc = service.in_utc
        return [
            service.PingInput(
                p["id"],
                p["lon"],
                p["lat"],
                in_utc(p["recorded_at"]),
                p.get("accuracy_m"),
                p.get("speed_mps"),
                p.get("heading"),
            )
            for p in pings
        ], wants_async


async def _ingest(app: Any, batch: service.BatchRequest) -> service.BatchResult:
    """The synchronous mode: evaluated (with other requests' batches) and committed, as the
    route does with its request's session."""
    groups: PingGroups = app.state.ping_groups
    async with app.state.sessionmaker() as session:
        try:
            result = await groups.ingest(session, batch)
        except BaseException:
            await session.rollback()
            raise
        if session.in_transaction():
            await session.commit()
        return result


def _batch_answer(result: service.BatchResult) -> bytes:
    """The route's 200 body to the byte: its answer model, written by pydantic as FastAPI
    writes a route's `response_model` (`dump_json`, by alias)."""
    answer = PingBatchRead(
        accepted=result.accepted,
        duplicates=result.duplicates,
        rejected=[PingIssue(**r) for r in result.rejected],
        events=[EventRead.from_row(e) for e in result.events],
        flagged=[PingIssue(**r) for r in result.flagged],
    )
    return _ANSWER.dump_json(answer, by_alias=True)


async def _handled(app: Any, scope: Scope, receive: Receive, send: Send, exc: Exception) -> bool:
    """Answer `exc` with the app's own handler for its class, as ExceptionMiddleware would.

    False when only the catch-all (`Exception`) would take it: the caller re-raises, so the
    server error middleware answers it exactly as it answers the route's."""
    handlers = app.exception_handlers
    for cls in type(exc).__mro__:
        if cls is Exception:
            return False
        handler = handlers.get(cls)
        if handler is not None:
            response = await handler(Request(scope, receive), exc)
            await response(scope, receive, send)
            return True
    return False
