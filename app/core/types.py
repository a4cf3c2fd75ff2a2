"""Shared, bounded input types: every request model uses these instead of the bare types.

- `BoundedDatetime` / `BoundedAwareDatetime`: any datetime a caller sends. Converting
  `9999-12-31T23:59:59-14:00` to UTC overflows Python's `datetime` (and `0001-01-01T00:00+14:00`
  underflows it); such values, and anything outside [1900, 3000) UTC, are a 422 here instead of a
  500 somewhere later (a query, an SSE stream that has already sent its headers).
- `BoundedEpochMillis`: the same bound for a datetime sent as epoch milliseconds.
- `JsonObject` / `GeoJsonObject` / `FeatureCollectionObject`: free-form JSON (metadata, GeoJSON
  geometry, an import): bounded depth and size, finite numbers, no U+0000 (JSONB refuses it).
- `SafeUrl`: a URL that is stored and later shown or pushed: `https://` only (`http://` to a
  loopback host outside production), no credentials, no whitespace or control characters, so
  `javascript:`, `data:` and friends never reach a browser.
- `Flag`: a request-body boolean that is a JSON `true`/`false` and nothing else (`0`, `"yes"`).

NUL characters in any string input are refused before parsing by `NulByteMiddleware`
(app/core/middleware.py).
"""

from __future__ import annotations

import ipaddress
import math
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, AwareDatetime, Field, StrictBool

from app.core.config import Environment, Settings
from app.core.errors import Unprocessable

MIN_DATETIME = datetime(1900, 1, 1, tzinfo=UTC)
MAX_DATETIME = datetime(3000, 1, 1, tzinfo=UTC)

JSON_MAX_DEPTH = 16
JSON_MAX_BYTES = 32_768
GEOJSON_MAX_DEPTH = 8
GEOJSON_MAX_BYTES = 4 * 1_048_576
# a FeatureCollection to import: collection → features → feature → properties → metadata (16)
FEATURE_COLLECTION_MAX_DEPTH = 4 + JSON_MAX_DEPTH
URL_MAX_LENGTH = 2048

# Set by `install(settings)` from `create_app`; strict until then.
_allow_http_loopback = False


def install(settings: Settings) -> None:
    """Outside production, `http://` URLs to loopback hosts are accepted (local development)."""
    global _allow_http_loopback
    _allow_http_loopback = settings.environment is not Environment.production


# --------------------------------------------------------------------------- datetimes


def require_offset(name: str, value: datetime | None) -> datetime | None:
    """A query parameter's datetime, refused (422) without a time zone offset."""
    if value is not None and value.utcoffset() is None:
        raise Unprocessable(f"`{name}` needs a time zone offset.", extra={"field": name})
    return value


def check_datetime(value: datetime) -> datetime:
    """In [1900-01-01, 3000-01-01) UTC; a naive value is read as UTC. The value is kept as given."""
    if 1900 < value.year < 2999:
        # inside whatever its offset (less than a day), without comparing: a comparison asks
        # the value's tzinfo for its offset, and pydantic's own tzinfo answers ~40x slower
        # than `datetime.timezone` (2.7 us of this function's 2.8 for a ping's `recorded_at`)
        return value
    try:
        # aware values compare in UTC without a conversion (a ping batch checks hundreds)
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        inside = MIN_DATETIME <= aware < MAX_DATETIME
    except (OverflowError, ValueError) as exc:
        raise ValueError("datetime out of range (years 1900-2999 UTC)") from exc
    if not inside:
        raise ValueError("datetime out of range (years 1900-2999 UTC)")
    return value


BoundedDatetime = Annotated[datetime, AfterValidator(check_datetime)]
BoundedAwareDatetime = Annotated[AwareDatetime, AfterValidator(check_datetime)]
# a datetime as epoch milliseconds (the browser's PushSubscription.expirationTime)
MAX_EPOCH_MS = int(MAX_DATETIME.timestamp() * 1000)
BoundedEpochMillis = Annotated[int, Field(ge=0, lt=MAX_EPOCH_MS)]


# --------------------------------------------------------------------------- free-form JSON


def check_json(
    value: Any,
    *,
    max_depth: int = JSON_MAX_DEPTH,
    max_bytes: int = JSON_MAX_BYTES,
    check_numbers: bool = True,
) -> Any:
    """Bounded depth and (approximate, serialised) size, no NUL, and — unless `check_numbers` is
    off because a more specific parser reports them (GeoJSON) — finite, 64-bit numbers.

    Iterative, never recursive, so inspecting any depth is safe.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    size = 0
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > max_depth:
                raise ValueError(f"JSON nested deeper than {max_depth} levels")
            size += 2 + len(node)
            if isinstance(node, dict):
                for key, item in node.items():
                    if not isinstance(key, str) or "\x00" in key:
                        raise ValueError("JSON keys must be strings without NUL characters")
                    size += len(key) + 3
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in node)
        elif isinstance(node, str):
            if "\x00" in node:
                raise ValueError("JSON must not contain NUL characters")
            size += len(node) + 2
        elif isinstance(node, bool) or node is None:
            size += 5
        elif isinstance(node, float):
            if check_numbers and not math.isfinite(node):
                raise ValueError("JSON must not contain NaN or Infinity")
            size += 12
        elif isinstance(node, int):
            if check_numbers and abs(node) >= 2**63:
                raise ValueError("JSON integers must fit in 64 bits")
            size += 12
        if size > max_bytes:
            raise ValueError(f"JSON larger than {max_bytes} bytes")
    return value


def _json_object(value: dict[str, Any]) -> dict[str, Any]:
    check_json(value)
    return value


def _geojson_object(value: dict[str, Any]) -> dict[str, Any]:
    check_json(value, max_depth=GEOJSON_MAX_DEPTH, max_bytes=GEOJSON_MAX_BYTES, check_numbers=False)
    return value


def _feature_collection(value: dict[str, Any]) -> dict[str, Any]:
    check_json(
        value,
        max_depth=FEATURE_COLLECTION_MAX_DEPTH,
        max_bytes=GEOJSON_MAX_BYTES,
        check_numbers=False,
    )
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_json_object)]
GeoJsonObject = Annotated[dict[str, Any], AfterValidator(_geojson_object)]
FeatureCollectionObject = Annotated[dict[str, Any], AfterValidator(_feature_collection)]


# --------------------------------------------------------------------------- URLs


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(value: str) -> str:
    """Absolute `https://` URL with a host; `http://` only to loopback outside production."""
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError("a URL must not contain whitespace or control characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise ValueError("not a valid URL") from exc
    scheme = parts.scheme.lower()
    host = parts.hostname
    if not host or value[len(parts.scheme) : len(parts.scheme) + 3] != "://":
        raise ValueError("must be an absolute https:// URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not contain credentials")
    if scheme == "https":
        return value
    if scheme == "http" and _allow_http_loopback and _is_loopback(host):
        return value
    raise ValueError("must be an absolute https:// URL")


SafeUrl = Annotated[str, Field(max_length=URL_MAX_LENGTH), AfterValidator(check_url)]


# --------------------------------------------------------------------------- booleans

Flag = StrictBool
