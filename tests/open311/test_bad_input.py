"""Bad input gets the spec's error list ({code, description}, code = HTTP status) in the
requested format, and stores nothing: no report, task, place or notification."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.notifications.fake_push import FakePushService
from tests.open311.helpers import Council, answer, errors
from tests.presence.helpers import at

TABLES = ("open311_requests", "tasks", "task_transitions", "geofences", "notifications")


async def _counts(council: Council) -> list[int]:
    return [await council.count(t) for t in TABLES]


def _good(key: str) -> dict[str, Any]:
    lon, lat = at(500, 500)
    return {
        "api_key": key,
        "service_code": "fly-tipping",
        "lat": lat,
        "long": lon,
        "attribute[size]": "bag",
    }


BAD_POSTS: list[tuple[str, dict[str, Any], int, str]] = [
    ("no api_key", {"api_key": None}, 403, "api_key"),
    ("unknown api_key", {"api_key": "o311_nope"}, 403, "api_key"),
    ("no service_code", {"service_code": None}, 400, "service_code"),
    ("unknown service", {"service_code": "graffiti"}, 400, "graffiti"),
    ("retired service", {"service_code": "retired"}, 400, "retired"),
    ("no location", {"lat": None, "long": None}, 400, "lat and long"),
    (
        "address only",
        {"lat": None, "long": None, "address_string": "1 High St"},
        400,
        "geocode",
    ),
    ("latitude out of range", {"lat": 95}, 400, "latitude"),
    ("longitude out of range", {"long": 200}, 400, "longitude"),
    ("not a number", {"lat": "north"}, 400, "numbers"),
    ("NaN", {"lat": "nan"}, 400, "lat/long"),
    ("infinity", {"long": "inf"}, 400, "lat/long"),
    ("null island", {"lat": 0, "long": 0}, 400, "(0, 0)"),
    ("oversized description", {"description": "x" * 4001}, 400, "4000"),
    ("unknown attribute", {"attribute[colour]": "red"}, 400, "colour"),
    ("missing required attribute", {"attribute[size]": None}, 400, "size"),
    ("value not in the list", {"attribute[size]": "lorry"}, 400, "lorry"),
    ("multi value not in the list", {"attribute[hazards][]": ["fire"]}, 400, "fire"),
    ("number attribute", {"attribute[bags]": "lots"}, 400, "number"),
    ("two values for one", {"attribute[size][]": ["bag", "van"]}, 400, "one value"),
    ("malformed attribute", {"attribute[size": "bag"}, 400, "Malformed"),
    ("media_url not http", {"media_url": "file:///etc/passwd"}, 400, "media_url"),
    ("media_url javascript", {"media_url": "javascript:alert(1)"}, 400, "media_url"),
    ("email", {"email": "not-an-address"}, 400, "email"),
    ("oversized phone", {"phone": "1" * 51}, 400, "phone"),
    ("lat twice", {"lat": ["53.8", "53.9"]}, 400, "more than once"),
    ("control character", {"description": "bell \x07 here"}, 400, "control characters"),
]


@pytest.mark.parametrize(("case", "change", "status", "says"), BAD_POSTS, ids=lambda v: v)
async def test_bad_report_is_refused_in_the_spec_format_and_nothing_is_stored(
    council: Council, case: str, change: dict[str, Any], status: int, says: str
) -> None:
    await council.service()
    await council.service(code="retired", name="Old", attributes=[], active=False)
    key = await council.api_key()
    before = await _counts(council)
    fields = {k: v for k, v in (_good(key) | change).items() if v is not None}
    for fmt in ("json", "xml"):
        r = await council.post(fmt, **fields)
        assert r.status_code == status, (case, r.text)
        (error,) = errors(fmt, r)
        assert says in error["description"], (case, error)
    assert await _counts(council) == before
    ok = await council.post("json", **_good(key))  # the same council takes a good one
    assert ok.status_code == 200, ok.text


async def test_a_revoked_key_and_another_councils_key_are_refused(council: Council) -> None:
    await council.service()
    key = await council.api_key()
    other = await Council(council.engine, council.settings, council.api, council.base_url).setup()
    await other.service()
    other_key = await other.api_key()
    before = await _counts(council)
    r = await council.post("json", **_good(other_key))  # council's jurisdiction_id
    assert r.status_code == 403
    assert "jurisdiction" in errors("json", r)[0]["description"]
    assert council.admin is not None
    keys = (await council.api.get("/v1/open311/keys", headers=council.admin.headers)).json()
    revoked = await council.api.delete(
        f"/v1/open311/keys/{keys[0]['id']}", headers=council.admin.headers
    )
    assert revoked.status_code == 204
    r = await council.post("xml", **_good(key))
    assert r.status_code == 403
    errors("xml", r)
    assert await _counts(council) == before


BAD_READS: list[tuple[str, dict[str, Any], int]] = [
    ("requests.json", {"status": "pending"}, 400),
    ("requests.xml", {"start_date": "yesterday"}, 400),
    ("requests.json", {"start_date": "2026-01-01T00:00:00"}, 400),  # no zone
    (
        "requests.json",
        {"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-06-01T00:00:00Z"},
        400,
    ),
    (
        "requests.json",
        {"start_date": "2026-02-01T00:00:00Z", "end_date": "2026-01-01T00:00:00Z"},
        400,
    ),
    ("requests/0b5bd9d2-7f5e-4c43-9d57-000000000000.json", {}, 404),
    ("requests/not-a-uuid.xml", {}, 404),
    ("tokens/nope.json", {}, 404),
    ("services/nope.xml", {}, 404),
    ("services.csv", {}, 404),
    ("services.json", {"jurisdiction_id": "no-such-council", "api_key": None}, 400),
    ("services.json", {"jurisdiction_id": "no-such-council"}, 403),  # not the key's council
]


@pytest.mark.parametrize(("path", "params", "status"), BAD_READS)
async def test_bad_reads_get_the_spec_error_list(
    council: Council, path: str, params: dict[str, Any], status: int
) -> None:
    await council.service()
    key = await council.api_key()
    params = {k: v for k, v in ({"api_key": key} | params).items() if v is not None}
    r = await council.get(path, **params)
    assert r.status_code == status, r.text
    errors("xml" if path.endswith(".xml") else "json", r)


async def test_reading_without_a_key_needs_the_councils_leave(council: Council) -> None:
    await council.service()
    key = await council.api_key()
    assert (await council.post("json", **_good(key))).status_code == 200
    r = await council.get("requests.json")
    assert r.status_code == 403
    assert "api_key" in errors("json", r)[0]["description"]
    assert (await council.get("requests.json", api_key=key)).status_code == 200
    await council.allow_public_read()
    listed = await council.get("requests.json")
    assert listed.status_code == 200
    assert len(listed.json()) == 1
    await council.allow_public_read(False)
    assert (await council.get("requests.xml")).status_code == 403
    # services and discovery are public either way
    assert (await council.get("services.json")).status_code == 200


async def test_each_key_has_its_own_rate_limit(council: Council) -> None:
    await council.service()
    slow = await council.api_key(rate_per_minute=2)
    fast = await council.api_key()
    for _ in range(2):
        assert (await council.get("requests.json", api_key=slow)).status_code == 200
    limited = await council.get("requests.xml", api_key=slow)
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    errors("xml", limited)
    before = await _counts(council)
    refused = await council.post("json", **_good(slow))
    assert refused.status_code == 429
    assert await _counts(council) == before
    assert (await council.get("requests.json", api_key=fast)).status_code == 200


async def test_media_url_is_stored_and_never_fetched(
    council: Council, fake_push: FakePushService
) -> None:
    hits: list[int] = []

    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hits.append(1)
        writer.close()

    server = await asyncio.start_server(count, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}/photos/mattress.jpg"
    try:
        await council.service()
        key = await council.api_key()
        worker = await council.worker(fake_push)
        await council.walk(worker.headers, [(490, 500), (495, 500), (500, 500)])
        r = await council.post("json", **_good(key), media_url=url)
        assert r.status_code == 200, r.text
        rid = answer("json", r)["service_request_id"]
        await council.deliver()  # a push went out: the worker did not fetch the photo either
        assert len(fake_push.received) == 1
        seen = await council.get(f"requests/{rid}.json", api_key=key)
        assert seen.json()[0]["media_url"] == url
        await asyncio.sleep(0.2)
        assert hits == []
    finally:
        server.close()
        await server.wait_closed()


async def test_requests_default_to_the_last_90_days(council: Council) -> None:
    await council.service()
    key = await council.api_key()
    rid = answer("json", await council.post("json", **_good(key)))["service_request_id"]
    await council.scalar(
        "UPDATE open311_requests SET requested_at = now() - interval '91 days' "
        "WHERE id = CAST(:id AS uuid) RETURNING 1",
        id=rid,
    )
    assert (await council.get("requests.json", api_key=key)).json() == []
    start = (datetime.now(UTC) - timedelta(days=95)).strftime("%Y-%m-%dT%H:%M:%SZ")
    old = await council.get("requests.json", api_key=key, start_date=start)
    assert [r["service_request_id"] for r in old.json()] == [rid]
