"""SSRF guards: which endpoints may be stored and which addresses may be dialled."""

from __future__ import annotations

import pytest

from app.core.config import DEFAULT_PUSH_HOSTS
from app.notifications.endpoints import (
    AddressGuard,
    EndpointRejected,
    address_allowed,
    validate_endpoint,
)

ALLOWED = [
    "https://fcm.googleapis.com/fcm/send/abc:def",
    "https://updates.push.services.mozilla.com/wpush/v2/gAAAA",
    "https://jp.push.services.mozilla.com/wpush/v2/gAAAA",
    "https://web.push.apple.com/QGx",
    "https://wns2-by3p.notify.windows.com/w/?token=BQYAAA",
    "https://fcm.googleapis.com:443/fcm/send/x",
]

REJECTED = {
    "http": "http://fcm.googleapis.com/fcm/send/x",
    "other port": "https://fcm.googleapis.com:8443/fcm/send/x",
    "userinfo": "https://user:pw@fcm.googleapis.com/fcm/send/x",
    "userinfo trick": "https://fcm.googleapis.com@evil.example/x",
    "suffix look-alike": "https://fcm.googleapis.com.evil.example/x",
    "prefix look-alike": "https://evilfcm.googleapis.com/x",
    "dash look-alike": "https://fcm-googleapis.com/x",
    "wildcard apex only": "https://push.services.mozilla.com/x",
    "unicode homoglyph": "https://fcm.googleаpis.com/x",
    "punycode": "https://xn--fcm-googleapis-xyz.com/x",
    "trailing dot": "https://fcm.googleapis.com./x",
    "ipv4 literal": "https://10.0.0.1/x",
    "ipv6 literal": "https://[::1]/x",
    "metadata ip": "https://169.254.169.254/latest/meta-data",
    "decimal ip": "https://2130706433/x",
    "localhost": "https://localhost/x",
    "file scheme": "file:///etc/passwd",
    "no host": "https:///x",
    "backslash": "https://fcm.googleapis.com\\@evil.example/x",
    "percent host": "https://fcm%2egoogleapis.com/x",
    "whitespace": "https://fcm.googleapis.com /x",
    "fragment": "https://fcm.googleapis.com/x#y",
    "too long": "https://fcm.googleapis.com/" + "a" * 2100,
    "not a url": "fcm.googleapis.com/x",
}


@pytest.mark.parametrize("endpoint", ALLOWED)
def test_push_service_endpoints_are_accepted(endpoint: str) -> None:
    assert validate_endpoint(endpoint, DEFAULT_PUSH_HOSTS, allow_loopback=False) == endpoint


@pytest.mark.parametrize("endpoint", list(REJECTED.values()), ids=list(REJECTED))
def test_unsafe_endpoints_are_rejected(endpoint: str) -> None:
    with pytest.raises(EndpointRejected):
        validate_endpoint(endpoint, DEFAULT_PUSH_HOSTS, allow_loopback=False)


def test_loopback_is_accepted_only_with_the_explicit_setting() -> None:
    url = "http://127.0.0.1:8080/push/abc"
    with pytest.raises(EndpointRejected):
        validate_endpoint(url, DEFAULT_PUSH_HOSTS, allow_loopback=False)
    assert validate_endpoint(url, DEFAULT_PUSH_HOSTS, allow_loopback=True) == url
    # The loopback switch does not open private networks or unlisted hosts.
    for other in ("http://10.0.0.1:8080/x", "http://evil.example/x"):
        with pytest.raises(EndpointRejected):
            validate_endpoint(other, DEFAULT_PUSH_HOSTS, allow_loopback=True)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "::ffff:10.0.0.1",
        "::ffff:127.0.0.1",
        "64:ff9b::a00:1",
        "64:ff9b::7f00:1",
        "64:ff9b::a9fe:a9fe",
        "2002:a00:1::1",
        "2002:7f00:1::1",
        "2002:c0a8:101::1",
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",
        "not-an-ip",
    ],
)
def test_non_global_addresses_are_refused(address: str) -> None:
    assert not address_allowed(address)


@pytest.mark.parametrize(
    "address",
    ["142.250.74.106", "2a00:1450:4001:82b::200a", "::ffff:142.250.74.106", "64:ff9b::8efa:4a6a"],
)
def test_global_addresses_are_allowed(address: str) -> None:
    assert address_allowed(address)


def test_loopback_addresses_pass_only_when_allowed() -> None:
    assert address_allowed("127.0.0.1", allow_loopback=True)
    assert address_allowed("::1", allow_loopback=True)
    assert not address_allowed("10.0.0.1", allow_loopback=True)


async def test_send_time_resolution_refuses_a_name_that_points_inside() -> None:
    guard = AddressGuard(allow_loopback=False)
    with pytest.raises(EndpointRejected, match="non-global"):
        await guard.check("localhost", 443)
    await AddressGuard(allow_loopback=True).check("localhost", 443)
