"""SSRF guards for push endpoints: which URLs may be stored and which addresses may be dialled.

Push subscription endpoints are URLs chosen by the client that the server later POSTs to, so they
are checked twice: when stored (scheme, port, host allowlist, no userinfo, no IP literals) and
when sent to (every resolved address must be globally routable, including the IPv4 addresses
embedded in IPv4-mapped, NAT64 and 6to4 IPv6 forms).
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import re
import socket
import time
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec

MAX_ENDPOINT_LENGTH = 2048
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")


class EndpointRejected(ValueError):
    """The endpoint (or its resolved address) is not one the server will send to."""


def origin_of(endpoint: str) -> str:
    """`scheme://host[:port]` — the VAPID `aud` and the unit of per-service limits."""
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    default = 443 if parts.scheme == "https" else 80
    port = f":{parts.port}" if parts.port and parts.port != default else ""
    return f"{parts.scheme}://{host}{port}"


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def host_allowed(host: str, allowed: list[str]) -> bool:
    """Exact match, or `*.suffix` matching one or more whole labels before `suffix`."""
    for pattern in allowed:
        pattern = pattern.strip().lower()
        if pattern.startswith("*."):
            suffix = pattern[1:]  # ".push.services.mozilla.com"
            if host.endswith(suffix) and len(host) > len(suffix):
                return True
        elif host == pattern:
            return True
    return False


def validate_endpoint(endpoint: str, allowed_hosts: list[str], allow_loopback: bool) -> str:
    """Return the endpoint unchanged if it may be stored, else raise `EndpointRejected`."""
    if len(endpoint) > MAX_ENDPOINT_LENGTH:
        raise EndpointRejected(f"the endpoint is longer than {MAX_ENDPOINT_LENGTH} characters")
    if not endpoint.isascii() or any(c.isspace() or c == "\\" for c in endpoint):
        raise EndpointRejected("the endpoint must be a plain ASCII URL")
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError as exc:
        raise EndpointRejected("the endpoint is not a valid URL") from exc
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise EndpointRejected("the endpoint must not contain user information")
    if parts.fragment:
        raise EndpointRejected("the endpoint must not contain a fragment")
    host = (parts.hostname or "").lower()
    if not host:
        raise EndpointRejected("the endpoint has no host")
    if "%" in parts.netloc:
        raise EndpointRejected("the endpoint host must not be percent-encoded")

    if allow_loopback and host in LOOPBACK_HOSTS:
        if parts.scheme not in ("http", "https"):
            raise EndpointRejected("the endpoint must use https")
        return endpoint

    if parts.scheme != "https":
        raise EndpointRejected("the endpoint must use https")
    if port not in (None, 443):
        raise EndpointRejected("the endpoint must use port 443")
    if _is_ip_literal(host) or host.startswith("["):
        raise EndpointRejected("the endpoint host must be a name, not an IP address")
    if host.endswith(".") or not all(_LABEL.match(label) for label in host.split(".")):
        raise EndpointRejected("the endpoint host is not a valid host name")
    if host.startswith("xn--") or ".xn--" in host:
        raise EndpointRejected("the endpoint host is not a known push service")
    if not host_allowed(host, allowed_hosts):
        raise EndpointRejected("the endpoint host is not a known push service")
    return endpoint


def validate_p256dh(value: str) -> bytes:
    """The subscription's public key: base64url of an uncompressed P-256 point on the curve."""
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError("p256dh is not base64url") from exc
    if len(raw) != 65 or raw[0] != 0x04:
        raise ValueError("p256dh must be an uncompressed P-256 point (65 bytes)")
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError as exc:
        raise ValueError("p256dh is not a point on the P-256 curve") from exc
    return raw


def validate_auth(value: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError("auth is not base64url") from exc
    if len(raw) != 16:
        raise ValueError("auth must be exactly 16 bytes")
    return raw


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address carried inside an IPv4-mapped, NAT64, 6to4 or Teredo IPv6 address."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64 or ip in _NAT64_LOCAL:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def address_allowed(address: str, allow_loopback: bool = False) -> bool:
    """True only for globally routable addresses (loopback too when explicitly allowed)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        inner = embedded_ipv4(ip)
        if inner is not None:
            if allow_loopback and inner.is_loopback and ip.ipv4_mapped is not None:
                return True
            return inner.is_global and not inner.is_multicast
    if allow_loopback and ip.is_loopback:
        return True
    return ip.is_global and not ip.is_multicast


class AddressGuard:
    """Resolves endpoint hosts and refuses non-global addresses; caches answers for `ttl_s`."""

    def __init__(self, allow_loopback: bool = False, ttl_s: float = 60.0) -> None:
        self.allow_loopback = allow_loopback
        self.ttl_s = ttl_s
        self._cache: dict[tuple[str, int], tuple[float, list[str] | str]] = {}

    async def check(self, host: str, port: int) -> None:
        """Raise `EndpointRejected` unless every address `host` resolves to is allowed."""
        await self.resolve(host, port)

    async def resolve(self, host: str, port: int) -> list[str]:
        """The addresses to dial for `host`, all allowed; `EndpointRejected` if ANY is not."""
        now = time.monotonic()
        cached = self._cache.get((host, port))
        if cached is not None and cached[0] > now:
            if isinstance(cached[1], str):
                raise EndpointRejected(cached[1])
            return cached[1]
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            raise EndpointRejected(f"the push service host does not resolve: {exc}") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        bad = sorted(a for a in addresses if not address_allowed(a, self.allow_loopback))
        answer: list[str] | str = addresses
        if not addresses:
            answer = "the push service host does not resolve"
        elif bad:
            answer = "the push service host resolves to a non-global address"
        self._cache[(host, port)] = (now + self.ttl_s, answer)
        if isinstance(answer, str):
            raise EndpointRejected(answer)
        return answer
